"""Firewall helpers: parse `ss` listeners, match them against the allow-list, find the unit behind a PID.

Used by library/popdb_listeners.py (role firewall). Pure functions; unit-tested in tests/security/.
"""

from __future__ import annotations

import ipaddress
import os
import re

PROC_RE = re.compile(r'\("(?P<name>[^"]+)",pid=(?P<pid>\d+),fd=\d+\)')
UNIT_SUFFIXES = (".service", ".socket", ".scope")


class ListenerParseError(ValueError):
    """A line of `ss` output that does not have the expected shape."""


def _split_addr(local: str) -> tuple[str, int]:
    """'0.0.0.0:22' / '[::]:22' / '*:22' / '127.0.0.53%lo:53' -> (address, port)."""
    addr, _, port = local.rpartition(":")
    if not addr or not port.isdigit():
        raise ListenerParseError(f"local address {local!r}: expected ADDRESS:PORT")
    addr = addr.strip("[]")
    if "%" in addr:
        addr = addr.split("%", 1)[0]
    if addr == "*":
        addr = "0.0.0.0"
    return addr, int(port)


def parse_ss(text: str) -> list[dict]:
    """Parse `ss -H -tulnp` output into listeners: proto, address, port, processes [{name, pid}]."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 5 or fields[0] not in ("tcp", "udp"):
            raise ListenerParseError(
                f"ss line {lineno} {line!r}: expected 'tcp|udp STATE RECVQ SENDQ LOCAL PEER [PROCESS]'"
            )
        proto, local = fields[0], fields[4]
        addr, port = _split_addr(local)
        procs = [{"name": m.group("name"), "pid": int(m.group("pid"))} for m in PROC_RE.finditer(line)]
        out.append({"proto": proto, "address": addr, "port": port, "processes": procs})
    return out


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def port_allowed(proto: str, port: int, rules: list[dict]) -> bool:
    """True when some rule opens proto/port (from any source)."""
    for rule in rules:
        if (
            str(rule.get("proto", "tcp")) == proto
            and rule.get("port") is not None
            and int(rule["port"]) == port
        ):
            return True
    return False


def source_allowed(address: str, proto: str, port: int, rules: list[dict]) -> bool:
    """True when a rule opens proto/port to `address` (a rule without sources opens it to everyone)."""
    ip = ipaddress.ip_address(address)
    for rule in rules:
        if str(rule.get("proto", "tcp")) != proto or rule.get("port") is None or int(rule["port"]) != port:
            continue
        sources = rule.get("sources") or []
        if not sources:
            return True
        for src in sources:
            net = ipaddress.ip_network(str(src), strict=False)
            if ip.version == net.version and ip in net:
                return True
    return False


def unit_of_pid(pid: int, proc_root: str = "/proc") -> str | None:
    """The systemd unit a process runs in, from /proc/PID/cgroup (None if not in a unit)."""
    try:
        with open(os.path.join(proc_root, str(pid), "cgroup"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if part.endswith(UNIT_SUFFIXES) and part != "init.scope":
                return part
    return None


def find_stray(listeners: list[dict], rules: list[dict], ignore_ports: list | None = None) -> list[dict]:
    """Listeners reachable from the network whose port no rule opens (loopback-only listeners are fine)."""
    ignore = {(str(i.get("proto", "tcp")), int(i["port"])) for i in (ignore_ports or [])}
    seen = set()
    stray = []
    for lst in listeners:
        if is_loopback(lst["address"]):
            continue
        key = (lst["proto"], lst["port"])
        if key in ignore or port_allowed(lst["proto"], lst["port"], rules) or key in seen:
            continue
        seen.add(key)
        stray.append(lst)
    return stray
