"""Appliance VPN gateways over netmiko: render vendor configuration, diff with the running config, push.

Vendors: ``huawei_vrp`` (Huawei VRP), ``hp_comware`` (H3C Comware 7), ``cisco_ios``. The desired state
is a list of blocks (a header such as ``ike peer gw-prov`` and its child lines), rendered from the
gateway's connections (``popdb_vpn_topology.connections``). ``plan`` compares it with the running
configuration and returns only the missing or changed lines, wrapped in their headers. Devices show
pre-shared keys encrypted, so a key line is pushed when the block's fingerprint line
(``description popdb-psk-<hash>``) is missing; the key then replaces the old one.

Peers that left the topology are removed too, but only objects the module itself created: entries of
its own policy (``ipsec policy popdb <id> isakmp`` / ``crypto map popdb <id> ipsec-isakmp``), and the
per-peer objects of a peer whose fingerprint line marks it as managed (VRP ``ike peer <peer>``, Comware
``ike profile ip-<peer>`` + ``ike keychain kc-<peer>``, IOS ``crypto keyring kr-<peer>`` +
``crypto isakmp profile ip-<peer>`` + ``ip access-list extended popdb-<peer>``), plus the numbered ACL a
removed policy entry used. An object something else on the device still refers to is kept (``kept``).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field

from ansible.module_utils.popdb_vpn_topology import psk_fingerprint

MASK = "********"
TEXTFSM_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "files", "textfsm")


@dataclass
class Block:
    header: str
    children: list = field(default_factory=list)
    secrets: set = field(default_factory=set)  # child lines holding a key
    guard: tuple | None = None  # (header, line) proving the key is current; default: own description line


@dataclass(frozen=True)
class Vendor:
    name: str
    show_run: str
    exit_word: str
    negate: str
    error_pattern: str
    ike_sa_command: str
    enter_config: tuple  # (command, regex of the config-mode prompt)
    leave_config: tuple  # (command, regex of the exec prompt)
    negate_first: re.Pattern | None = None  # keys the device appends to instead of replacing
    key_of: re.Pattern | None = None  # single-valued keys (for diff display of replaced lines)
    # Removal of departed peers (only what the module creates):
    policy_entry: re.Pattern | None = None  # an entry of the module's own policy; group 1: its undo form
    managed_peer: re.Pattern | None = None  # header carrying the fingerprint line; group 1: peer name
    peer_objects: tuple = ()  # headers of one peer's objects, in removal order ({p}: peer name)
    policy_acl: tuple | None = None  # (regex on a policy entry's child giving the ACL, ACL header format)


VENDORS = {
    "huawei_vrp": Vendor(
        name="huawei_vrp",
        show_run="display current-configuration",
        exit_word="quit",
        negate="undo ",
        error_pattern=r"^\s*Error:.*$",
        ike_sa_command="display ike sa",
        enter_config=("system-view", r"\]\s*$"),
        leave_config=("return", r">\s*$"),
        key_of=re.compile(
            r"^(description|pre-shared-key|remote-address|rule \d+|security acl|ike-peer|proposal)\b"
        ),
        policy_entry=re.compile(r"^(ipsec policy popdb \d+) isakmp$"),
        managed_peer=re.compile(r"^ike peer (\S+)$"),
        peer_objects=("ike peer {p}",),
        policy_acl=(re.compile(r"^security acl (\d+)$"), "acl number {}"),
    ),
    "hp_comware": Vendor(
        name="hp_comware",
        show_run="display current-configuration",
        exit_word="quit",
        negate="undo ",
        error_pattern=r"^\s*%\s*(Unrecognized|Incomplete|Too many|Wrong).*$",
        ike_sa_command="display ike sa",
        enter_config=("system-view", r"\]\s*$"),
        leave_config=("return", r">\s*$"),
        key_of=re.compile(
            r"^(description|pre-shared-key address \S+ \S+|remote-address|rule \d+|security acl)\b"
        ),
        policy_entry=re.compile(r"^(ipsec policy popdb \d+) isakmp$"),
        managed_peer=re.compile(r"^ike profile ip-(\S+)$"),
        peer_objects=("ike profile ip-{p}", "ike keychain kc-{p}"),
        policy_acl=(re.compile(r"^security acl (\d+)$"), "acl advanced {}"),
    ),
    "cisco_ios": Vendor(
        name="cisco_ios",
        show_run="show running-config",
        exit_word="exit",
        negate="no ",
        error_pattern=r"^%\s*(Invalid|Incomplete|Ambiguous).*$",
        ike_sa_command="show crypto isakmp sa",
        enter_config=("configure terminal", r"\(config\)#\s*$"),
        leave_config=("end", r"#\s*$"),
        negate_first=re.compile(r"^(set peer)\b"),
        key_of=re.compile(r"^(description|set peer|match address)\b"),
        policy_entry=re.compile(r"^(crypto map popdb \d+) ipsec-isakmp$"),
        managed_peer=re.compile(r"^crypto keyring kr-(\S+)$"),
        peer_objects=(
            "crypto isakmp profile ip-{p}",
            "crypto keyring kr-{p}",
            "ip access-list extended popdb-{p}",
        ),
    ),
}
IKE_PROPOSAL = 10
POLICY = "popdb"


def _wild(net: str) -> tuple[str, str]:
    n = ipaddress.ip_network(net)
    return str(n.network_address), str(n.hostmask)


def _acl_pairs(conn):
    for lnet in conn["local_subnets"]:
        for rnet in conn["remote_subnets"]:
            yield _wild(lnet), _wild(rnet)


def render(vendor: str, gateway: dict, conns: list[dict]) -> list[Block]:
    """Desired configuration blocks of one appliance gateway for its connections (each with 'psk')."""
    if vendor not in VENDORS:
        raise ValueError(f"vendor {vendor!r} not one of {', '.join(VENDORS)}")
    wan_if = gateway["wan_interface"]
    blocks: list[Block] = []
    if vendor == "huawei_vrp":
        blocks.append(
            Block(
                f"ike proposal {IKE_PROPOSAL}",
                ["encryption-algorithm aes-256", "dh group14", "authentication-algorithm sha2-256"],
            )
        )
        blocks.append(
            Block(
                f"ipsec proposal {POLICY}",
                ["esp authentication-algorithm sha2-256", "esp encryption-algorithm aes-256"],
            )
        )
        for c in conns:
            acl = 3000 + c["peer_id"]
            rules = [
                f"rule {5 * (i + 1)} permit ip source {ls} {lw} destination {rs} {rw}"
                for i, ((ls, lw), (rs, rw)) in enumerate(_acl_pairs(c))
            ]
            blocks.append(Block(f"acl number {acl}", rules))
            key = f"pre-shared-key cipher {c['psk']}"
            blocks.append(
                Block(
                    f"ike peer {c['peer']}",
                    [
                        key,
                        f"description popdb-psk-{psk_fingerprint(c['psk'], c['peer'])}",
                        f"ike-proposal {IKE_PROPOSAL}",
                        f"remote-address {c['remote_wan']}",
                    ],
                    {key},
                )
            )
            blocks.append(
                Block(
                    f"ipsec policy {POLICY} {c['peer_id']} isakmp",
                    [f"security acl {acl}", f"ike-peer {c['peer']}", f"proposal {POLICY}"],
                )
            )
        blocks.append(Block(f"interface {wan_if}", [f"ipsec policy {POLICY}"]))
    elif vendor == "hp_comware":
        blocks.append(
            Block(
                f"ike proposal {IKE_PROPOSAL}",
                ["encryption-algorithm aes-cbc-256", "authentication-algorithm sha256", "dh group14"],
            )
        )
        blocks.append(
            Block(
                f"ipsec transform-set {POLICY}",
                ["esp encryption-algorithm aes-cbc-256", "esp authentication-algorithm sha256"],
            )
        )
        for c in conns:
            acl = 3000 + c["peer_id"]
            rules = [
                f"rule {5 * (i + 1)} permit ip source {ls} {lw} destination {rs} {rw}"
                for i, ((ls, lw), (rs, rw)) in enumerate(_acl_pairs(c))
            ]
            blocks.append(Block(f"acl advanced {acl}", rules))
            key = f"pre-shared-key address {c['remote_wan']} 255.255.255.255 key simple {c['psk']}"
            fp = f"description popdb-psk-{psk_fingerprint(c['psk'], c['peer'])}"
            blocks.append(
                Block(f"ike keychain kc-{c['peer']}", [key], {key}, (f"ike profile ip-{c['peer']}", fp))
            )
            blocks.append(
                Block(
                    f"ike profile ip-{c['peer']}",
                    [
                        fp,
                        f"keychain kc-{c['peer']}",
                        f"match remote identity address {c['remote_wan']} 255.255.255.255",
                        f"proposal {IKE_PROPOSAL}",
                    ],
                )
            )
            blocks.append(
                Block(
                    f"ipsec policy {POLICY} {c['peer_id']} isakmp",
                    [
                        f"security acl {acl}",
                        f"transform-set {POLICY}",
                        f"ike-profile ip-{c['peer']}",
                        f"remote-address {c['remote_wan']}",
                    ],
                )
            )
        blocks.append(Block(f"interface {wan_if}", [f"ipsec apply policy {POLICY}"]))
    else:
        blocks.append(
            Block(
                f"crypto isakmp policy {IKE_PROPOSAL}",
                ["encr aes 256", "hash sha256", "authentication pre-share", "group 14"],
            )
        )
        blocks.append(
            Block(f"crypto ipsec transform-set {POLICY} esp-aes 256 esp-sha256-hmac", ["mode tunnel"])
        )
        for c in conns:
            key = f"pre-shared-key address {c['remote_wan']} key {c['psk']}"
            blocks.append(
                Block(
                    f"crypto keyring kr-{c['peer']}",
                    [key, f"description popdb-psk-{psk_fingerprint(c['psk'], c['peer'])}"],
                    {key},
                )
            )
            blocks.append(
                Block(
                    f"crypto isakmp profile ip-{c['peer']}",
                    [f"keyring kr-{c['peer']}", f"match identity address {c['remote_wan']} 255.255.255.255"],
                )
            )
            rules = [f"permit ip {ls} {lw} {rs} {rw}" for (ls, lw), (rs, rw) in _acl_pairs(c)]
            blocks.append(Block(f"ip access-list extended {POLICY}-{c['peer']}", rules))
            blocks.append(
                Block(
                    f"crypto map {POLICY} {c['peer_id']} ipsec-isakmp",
                    [
                        f"set peer {c['remote_wan']}",
                        f"set transform-set {POLICY}",
                        f"set isakmp-profile ip-{c['peer']}",
                        f"match address {POLICY}-{c['peer']}",
                    ],
                )
            )
        blocks.append(Block(f"interface {wan_if}", [f"crypto map {POLICY}"]))
    return blocks


def parse_running(text: str) -> dict[str, list[str]]:
    """Running configuration -> {header: [child lines]} (top-level lines map to [])."""
    blocks: dict[str, list[str]] = {}
    cur = None
    for raw in text.splitlines():
        s = raw.strip()
        if (
            not s
            or s in ("#", "!", "return", "end")
            or raw.startswith(("Building configuration", "Current configuration"))
        ):
            cur = None
            continue
        if raw[0] == " " and cur is not None:
            blocks[cur].append(s)
        elif raw[0] != " ":
            cur = s
            blocks.setdefault(cur, [])
        else:  # indented global command between '#' separators (VRP/Comware)
            blocks.setdefault(s, [])
    return blocks


@dataclass
class Plan:
    lines: list  # to send, in order, secrets in clear
    display: list  # the same, keys masked
    removed: list  # running lines replaced or removed (for the diff), keys masked
    deleted: list = field(default_factory=list)  # headers of managed blocks removed (departed peers)
    kept: list = field(default_factory=list)  # managed blocks of departed peers kept: still referenced

    @property
    def changed(self) -> bool:
        return bool(self.lines)


FINGERPRINT = "description popdb-psk-"


def _mask_key(line: str) -> str:
    """A key line as read from the device (encrypted, but never shown)."""
    if line.startswith("pre-shared-key"):
        return " ".join(line.split()[:-1] + [MASK])
    return line


def _refers(line: str, name: str) -> bool:
    """Whether a configuration line refers to the object called ``name`` (``ike-peer X``, ``keyring X``)."""
    return not line.startswith("description ") and line.split()[-1:] == [name]


def stale(vendor: str, desired: list[Block], have: dict[str, list[str]]) -> tuple[list, list]:
    """Managed blocks of departed peers: ([(header, undo target)] in removal order, [kept headers]).

    Only the module's own objects are candidates: entries of its own policy that are no longer desired,
    the per-peer objects of a peer whose fingerprint line marks it as managed, and the numbered ACL a
    removed policy entry used. A candidate still referred to by anything that stays is kept.
    """
    v = VENDORS[vendor]
    if v.policy_entry is None:
        return [], []
    want = {b.header for b in desired}
    removing: dict[str, str] = {}
    for h in have:
        m = v.policy_entry.match(h)
        if m and h not in want:
            removing[h] = m.group(1)
    departed = sorted(
        m.group(1)
        for h, children in have.items()
        if (m := v.managed_peer.match(h))
        and h not in want
        and any(c.startswith(FINGERPRINT) for c in children)
    )
    for p in departed:
        for fmt in v.peer_objects:
            h = fmt.format(p=p)
            if h in have and h not in want:
                removing[h] = h
    if v.policy_acl:
        rx, fmt = v.policy_acl
        for h in [x for x in removing if v.policy_entry.match(x)]:
            for c in have[h]:
                m = rx.match(c)
                acl = fmt.format(m.group(1)) if m else None
                if acl and acl in have and acl not in want:
                    removing.setdefault(acl, acl)
    kept: list[str] = []
    again = True
    while again:  # keeping one object can keep what it refers to
        again = False
        users = [c for b in desired for c in b.children] + [
            c for h, children in have.items() if h not in removing for c in [h, *children]
        ]
        for h in list(removing):
            if v.policy_entry.match(h):
                continue
            if any(_refers(c, h.split()[-1]) for c in users):
                del removing[h]
                kept.append(h)
                again = True
                break
    return list(removing.items()), kept


def _mask(line: str, secrets: set) -> str:
    if line in secrets:
        parts = line.split()
        return " ".join(parts[:-1] + [MASK])
    return line


def plan(vendor: str, desired: list[Block], running_text: str) -> Plan:
    """Lines to push so that every desired line is in the running configuration."""
    v = VENDORS[vendor]
    have = parse_running(running_text)
    lines, display, removed = [], [], []
    for blk in desired:
        cur = have.get(blk.header)
        cur_set = set(cur or [])
        todo, shown = [], []
        if blk.guard:
            fingerprint_ok = blk.guard[1] in have.get(blk.guard[0], [])
        else:
            fingerprint_ok = all(c in cur_set for c in blk.children if c.startswith("description popdb-psk-"))
        for child in blk.children:
            if child in blk.secrets:
                if fingerprint_ok and cur is not None:
                    continue
            elif child in cur_set:
                continue
            key = v.key_of.match(child) if v.key_of else None
            if key and cur:
                for old in cur:
                    if old != child and old.startswith(key.group(1) + " "):
                        removed.append(_mask(old, {old} if old.startswith("pre-shared-key") else set()))
                        if v.negate_first and v.negate_first.match(child):
                            todo.append(v.negate + old)
                            shown.append(v.negate + old)
            todo.append(child)
            shown.append(_mask(child, blk.secrets))
        if cur is None or todo:
            lines += [blk.header] + todo + [v.exit_word]
            display += [blk.header] + [" " + s for s in shown] + [v.exit_word]
    gone, kept = stale(vendor, desired, have)
    for header, target in gone:  # after the additions: nothing wanted refers to them any more
        lines.append(v.negate + target)
        display.append(v.negate + target)
        removed += [header] + [" " + _mask_key(c) for c in have[header]]
    return Plan(lines, display, removed, [h for h, _ in gone], kept)


def diff_text(p: Plan) -> dict:
    before = "".join(f"{x}\n" for x in p.removed)
    after = "".join(f"{x}\n" for x in p.display if x.strip() not in ("quit", "exit"))
    return {
        "before": before,
        "after": after,
        "before_header": "running (replaced and removed lines)",
        "after_header": "pushed",
    }


class PushError(Exception):
    def __init__(self, failed_line: str, device_error: str, applied: list):
        self.failed_line, self.device_error, self.applied = failed_line, device_error, applied
        super().__init__(f"device rejected {failed_line!r}: {device_error}")


def connect(params: dict):
    """netmiko connection from module parameters (timing options passed through)."""
    from netmiko import ConnectHandler

    kwargs = {
        "device_type": params["vendor"],
        "host": params["host"],
        "port": params.get("port") or 22,
        "username": params["username"],
        "password": params.get("password"),
        "secret": params.get("enable_secret") or "",
        "conn_timeout": params.get("conn_timeout", 10),
        "auth_timeout": params.get("auth_timeout"),
        "banner_timeout": params.get("banner_timeout", 15),
        "read_timeout_override": params.get("read_timeout_override"),
        "global_delay_factor": params.get("global_delay_factor", 1.0),
        "fast_cli": params.get("fast_cli", True),
        # Comware drivers default to no echo check, which costs ~2 s per config line with an error pattern.
        "global_cmd_verify": (
            params.get("cmd_verify", True)
            if params.get("global_cmd_verify") is None
            else params["global_cmd_verify"]
        ),
        "session_timeout": params.get("session_timeout", 60),
    }
    if params.get("ssh_config_file"):
        kwargs["ssh_config_file"] = params["ssh_config_file"]
    conn = ConnectHandler(**{k: v for k, v in kwargs.items() if v is not None})
    if params["vendor"] == "cisco_ios" and params.get("enable_secret"):
        conn.enable()
    return conn


def read_running(conn, vendor: str, read_timeout: float = 60.0) -> str:
    return conn.send_command(VENDORS[vendor].show_run, read_timeout=read_timeout)


def _enter(conn, v: Vendor, netmiko_config_mode: bool, read_timeout: float) -> str:
    if netmiko_config_mode:
        return conn.config_mode()
    # netmiko's own check waits for ~2 s of silence twice on VRP; the prompt tells us the mode exactly.
    cmd, prompt = v.enter_config
    return conn.send_command(cmd, expect_string=prompt, read_timeout=read_timeout, strip_prompt=False)


def _leave(conn, v: Vendor, netmiko_config_mode: bool, read_timeout: float) -> str:
    if netmiko_config_mode:
        return conn.exit_config_mode()
    cmd, prompt = v.leave_config
    return conn.send_command(cmd, expect_string=prompt, read_timeout=read_timeout, strip_prompt=False)


def push(
    conn,
    vendor: str,
    lines: list,
    cmd_verify: bool = True,
    read_timeout: float = 30.0,
    netmiko_config_mode: bool = False,
) -> str:
    """Send lines in config mode; on a rejected line raise PushError with the lines applied before it."""
    from netmiko.exceptions import ConfigInvalidException

    v = VENDORS[vendor]
    sent = []
    output = _enter(conn, v, netmiko_config_mode, read_timeout)
    try:
        for line in lines:
            out = conn.send_config_set(
                [line],
                enter_config_mode=False,
                exit_config_mode=False,
                cmd_verify=cmd_verify,
                error_pattern=v.error_pattern,
                read_timeout=read_timeout,
            )
            output += out
            sent.append(line)
    except ConfigInvalidException as exc:
        m = re.search(r"matched error: (.*)$", str(exc), re.S)
        try:
            _leave(conn, v, netmiko_config_mode, read_timeout)
        except Exception:  # noqa: BLE001 - report the device error, not the cleanup failure
            pass
        raise PushError(line, (m.group(1) if m else str(exc)).strip(), sent) from exc
    output += _leave(conn, v, netmiko_config_mode, read_timeout)
    return output


def save(conn, vendor: str) -> str:
    if vendor == "huawei_vrp":
        return conn.save_config(cmd="save", confirm=True, confirm_response="y")
    if vendor == "hp_comware":
        return conn.save_config(cmd="save force")
    return conn.save_config(cmd="write memory")


# ---- IKE SA state (TextFSM) -----------------------------------------------------------------------
def parse_ike_sa(vendor: str, text: str, template_dir: str | None = None) -> list[dict]:
    """Parse `display ike sa` / `show crypto isakmp sa` with the project's templates (files/textfsm/)."""
    import textfsm

    name = {"cisco_ios": "cisco_ios_show_crypto_isakmp_sa"}.get(vendor, f"{vendor}_display_ike_sa")
    path = os.path.join(template_dir or TEXTFSM_DIR, name + ".textfsm")
    with open(path, encoding="utf-8") as fh:
        fsm = textfsm.TextFSM(fh)
    rows = fsm.ParseText(text)
    return [{k.lower(): v for k, v in zip(fsm.header, row, strict=True)} for row in rows]


def peer_up(vendor: str, rows: list[dict], peer_wan: str) -> bool:
    """True when an established phase-1 (or phase-2) SA to peer_wan exists."""
    for r in rows:
        peer = r.get("peer") or r.get("remote_address") or r.get("dst") or ""
        if peer.split(":")[0] != peer_wan:
            continue
        if vendor == "cisco_ios":
            if (r.get("state") or "").upper() in ("QM_IDLE", "ACTIVE"):
                return True
        elif vendor == "huawei_vrp":
            if "RD" in (r.get("flags") or "").split("|"):
                return True
        elif (r.get("flags") or "").upper().startswith("RD"):
            return True
    return False
