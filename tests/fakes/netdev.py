"""Stateful fake network gateways over real SSH (asyncssh) for Huawei VRP, H3C Comware and Cisco IOS.

Enough of each CLI for netmiko: login banner and prompt, paging-off commands, configuration mode with one
level of sub-views, ``undo``/``no``, single-valued keys that replace their old value, running and saved
configuration (``| include/exclude/begin/section``), ``save``/``write memory`` with their confirmations,
canned or computed exec outputs, lines the device rejects, secrets shown encrypted (like real devices),
and a command log for assertions. Many devices share one asyncio loop in a background thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from dataclasses import dataclass, field

import asyncssh


@dataclass(frozen=True)
class Dialect:
    name: str
    user_prompt: str
    sys_prompt: str
    view_prompt: str
    negate: str
    separator: str
    end_word: str
    enter_config: frozenset
    enter_msg: str
    to_exec: frozenset
    up: frozenset
    show_run: re.Pattern
    show_saved: str
    paging: dict
    save: dict  # command -> confirmation question (None: no question)
    save_ok: str
    error: str
    show_prefix: str
    views: tuple  # header regexes that open a sub-view
    single_valued: re.Pattern  # keys whose new value replaces the old one
    secret: re.Pattern  # group(1) kept, group(2) shown encrypted
    priv_prompt: str = ""


def _rx(*pats):
    return tuple(re.compile(p) for p in pats)


DIALECTS = {
    "huawei_vrp": Dialect(
        name="huawei_vrp",
        user_prompt="<{h}>",
        sys_prompt="[{h}]",
        view_prompt="[{h}-{v}]",
        negate="undo ",
        separator="#",
        end_word="return",
        enter_config=frozenset({"system-view", "system-view immediately"}),
        enter_msg="Enter system view, return user view with Ctrl+Z.",
        to_exec=frozenset({"return"}),
        up=frozenset({"quit"}),
        show_run=re.compile(r"display current-configuration"),
        show_saved="display saved-configuration",
        paging={
            "screen-length 0 temporary": "Info: The configuration takes effect on the current user terminal."
        },
        save={"save": "Warning: The current configuration will be written to the device. Continue? [Y/N]:"},
        save_ok=(
            "Now saving the current configuration to the slot 0.\nInfo: Save the configuration successfully."
        ),
        error="              ^\nError: Unrecognized command found at '^' position.",
        show_prefix="display ",
        views=_rx(
            r"interface \S+",
            r"ike proposal \d+",
            r"ike peer \S+",
            r"ipsec proposal \S+",
            r"ipsec policy \S+ \d+ isakmp",
            r"acl number \d+",
        ),
        single_valued=re.compile(
            r"^(description|ip address|pre-shared-key|remote-address|encryption-algorithm"
            r"|authentication-algorithm|esp encryption-algorithm|esp authentication-algorithm|dh|ike-proposal"
            r"|ike-peer|proposal|security acl|ipsec policy|sa duration \S+|rule \d+|sysname)\b"
        ),
        secret=re.compile(r"^(pre-shared-key cipher )(\S+)$"),
    ),
    "hp_comware": Dialect(
        name="hp_comware",
        user_prompt="<{h}>",
        sys_prompt="[{h}]",
        view_prompt="[{h}-{v}]",
        negate="undo ",
        separator="#",
        end_word="return",
        enter_config=frozenset({"system-view"}),
        enter_msg="System View: return to User View with Ctrl+Z.",
        to_exec=frozenset({"return"}),
        up=frozenset({"quit"}),
        show_run=re.compile(r"display current-configuration"),
        show_saved="display saved-configuration",
        paging={"screen-length disable": ""},
        save={
            "save force": None,
            "save": "The current configuration will be written to the device. Are you sure? [Y/N]:",
        },
        save_ok=(
            "Validating file. Please wait...\n"
            "Saved the current configuration to mainboard device successfully."
        ),
        error="      ^\n % Unrecognized command found at '^' position.",
        show_prefix="display ",
        views=_rx(
            r"interface \S+",
            r"ike proposal \d+",
            r"ike profile \S+",
            r"ike keychain \S+",
            r"ipsec transform-set \S+",
            r"ipsec policy \S+ \d+ isakmp",
            r"acl advanced \d+",
        ),
        single_valued=re.compile(
            r"^(description|ip address|pre-shared-key address \S+ \S+|remote-address|encryption-algorithm"
            r"|authentication-algorithm|esp encryption-algorithm|esp authentication-algorithm|dh|proposal"
            r"|security acl|local-address|transform-set|ike-profile|keychain|match remote identity address"
            r"|ipsec apply policy|remote-address|rule \d+|sysname)\b"
        ),
        secret=re.compile(r"^(pre-shared-key address \S+ \S+ key )simple (\S+)$"),
    ),
    "cisco_ios": Dialect(
        name="cisco_ios",
        user_prompt="{h}>",
        priv_prompt="{h}#",
        sys_prompt="{h}(config)#",
        view_prompt="{h}({v})#",
        negate="no ",
        separator="!",
        end_word="end",
        enter_config=frozenset({"configure terminal", "conf t", "config term"}),
        enter_msg="Enter configuration commands, one per line.  End with CNTL/Z.",
        to_exec=frozenset({"end"}),
        up=frozenset({"exit"}),
        show_run=re.compile(r"show run(ning-config)?"),
        show_saved="show startup-config",
        paging={"terminal length 0": "", "terminal width 511": "", "terminal width 512": ""},
        save={
            "write memory": None,
            "write mem": None,
            "copy running-config startup-config": "Destination filename [startup-config]? ",
        },
        save_ok="Building configuration...\n[OK]",
        error="                ^\n% Invalid input detected at '^' marker.",
        show_prefix="show ",
        views=_rx(
            r"interface \S+",
            r"crypto isakmp policy \d+",
            r"crypto keyring \S+",
            r"crypto isakmp profile \S+",
            r"crypto ipsec transform-set \S+ .*",
            r"crypto map \S+ \d+ ipsec-isakmp",
            r"ip access-list extended \S+",
        ),
        single_valued=re.compile(
            r"^(description|ip address|encr|hash|authentication|group|lifetime|set peer|set transform-set"
            r"|set isakmp-profile|match address|keyring|match identity address|hostname|crypto map"
            r"|pre-shared-key address \S+)\b"
        ),
        secret=re.compile(r"^(pre-shared-key address \S+ key )(\S+)$"),
    ),
}
CISCO_VIEW_NAMES = (
    ("interface", "config-if"),
    ("crypto isakmp policy", "config-isakmp"),
    ("crypto keyring", "conf-keyring"),
    ("crypto isakmp profile", "conf-isa-prof"),
    ("crypto ipsec transform-set", "cfg-crypto-trans"),
    ("crypto map", "config-crypto-map"),
    ("ip access-list", "config-ext-nacl"),
)


def _key(dialect: Dialect, line: str):
    m = dialect.single_valued.match(line)
    return m.group(1) if m else None


@dataclass
class FakeDevice:
    """One fake gateway; all SSH sessions to its port share this state."""

    name: str
    dialect_name: str
    username: str = "admin"
    password: str = "admin"
    enable_secret: str | None = None
    config: str = ""
    exec_outputs: dict = field(default_factory=dict)  # command -> text | callable(device, command)
    reject: list = field(default_factory=list)  # regexes: config lines the device refuses
    encrypt_secrets: bool = True

    def __post_init__(self):
        self.d = DIALECTS[self.dialect_name]
        self.reject = [re.compile(r) for r in self.reject]
        self.running = self.parse(self.config)  # [[header, [children]]]
        self.saved = self._copy(self.running)
        self.log: list[tuple[str, str]] = []  # (mode, line)
        self.saves = 0
        self.port: int | None = None

    @staticmethod
    def _copy(blocks):
        return [[h, list(c)] for h, c in blocks]

    # ---- configuration model ----------------------------------------------------------------------
    def parse(self, text: str):
        blocks, cur = [], None
        for raw in text.splitlines():
            s = raw.strip()
            if not s or s in (self.d.separator, self.d.end_word):
                cur = None
                continue
            if raw[0] == " " and cur is not None:
                cur[1].append(s)
            else:
                cur = [s, []]
                blocks.append(cur)
        return blocks

    def _show(self, line: str) -> str:
        m = self.d.secret.match(line)
        if not (m and self.encrypt_secrets):
            return line
        enc = hashlib.sha256(m.group(2).encode()).hexdigest()[:24]
        if self.dialect_name == "huawei_vrp":
            return f"{m.group(1)}%^%#{enc}%^%#"
        if self.dialect_name == "hp_comware":
            return f"{m.group(1)}cipher $c$3${enc}"
        return f"{m.group(1)}7 {enc.upper()}"

    def render(self, blocks=None) -> str:
        blocks = self.running if blocks is None else blocks
        d = self.d
        if self.dialect_name == "cisco_ios":
            out = [
                "Building configuration...",
                "",
                "Current configuration : 4242 bytes",
                "!",
                f"hostname {self.name}",
                "!",
            ]
            for h, ch in blocks:
                out += [self._show(h)] + [" " + self._show(c) for c in ch] + ["!"]
            return "\n".join(out + ["end"])
        out = ["#", f" sysname {self.name}"]
        for h, ch in blocks:
            if ch or any(v.fullmatch(h) for v in d.views):
                out += ["#", self._show(h)] + [" " + self._show(c) for c in ch]
            else:
                out.append(" " + self._show(h))
        return "\n".join(out + ["#", d.end_word])

    def block(self, header: str):
        return next((b for b in self.running if b[0] == header), None)

    def apply(self, view, line: str):
        """Apply one configuration line in ``view`` (None: global). Returns (new_view, error or None)."""
        d = self.d
        if any(r.search(line) for r in self.reject):
            return view, d.error
        if any(v.fullmatch(line) for v in d.views):
            blk = self.block(line)
            if blk is None:
                blk = [line, []]
                self.running.append(blk)
            return blk, None
        items = self.running if view is None else view[1]
        texts = [b[0] for b in items] if view is None else list(items)
        if line.startswith(d.negate):
            target = line[len(d.negate) :]
            hits = [i for i, t in enumerate(texts) if t == target or t.startswith(target + " ")]
            if not hits:
                return view, None
            for i in reversed(hits):
                del items[i]
            return view, None
        if line in texts:
            return view, None
        key = _key(d, line)
        new = [line, []] if view is None else line
        if key:
            for i, t in enumerate(texts):
                if _key(d, t) == key:
                    items[i] = new
                    return view, None
        items.append(new)
        return view, None


def pipe_filter(text: str, spec: str) -> str:
    m = re.fullmatch(r"\s*(include|exclude|begin|section)\s+(.+)", spec or "")
    if not m:
        return text
    op, rx, lines = m.group(1), re.compile(m.group(2).strip()), text.splitlines()
    if op == "include":
        return "\n".join(x for x in lines if rx.search(x))
    if op == "exclude":
        return "\n".join(x for x in lines if not rx.search(x))
    if op == "begin":
        i = next((i for i, x in enumerate(lines) if rx.search(x)), len(lines))
        return "\n".join(lines[i:])
    out, keep = [], False
    for x in lines:
        if not x.startswith(" "):
            keep = bool(rx.search(x))
        if keep:
            out.append(x)
    return "\n".join(out)


class _Session:
    def __init__(self, dev: FakeDevice, proc):
        self.dev, self.d, self.proc = dev, dev.d, proc
        self.priv = dev.dialect_name != "cisco_ios" or dev.enable_secret is None
        self.cfg, self.view = False, None
        self._buf, self._line, self._skip_lf = "", "", False

    def prompt(self) -> str:
        d, h = self.d, self.dev.name
        if not self.cfg:
            if d.priv_prompt and self.priv:
                return d.priv_prompt.format(h=h)
            return d.user_prompt.format(h=h)
        if self.view is None:
            return d.sys_prompt.format(h=h)
        hdr = self.view[0]
        if self.dev.dialect_name == "cisco_ios":
            v = next((n for p, n in CISCO_VIEW_NAMES if hdr.startswith(p)), "config-sub")
        else:
            v = hdr.split()[1] if hdr.startswith("interface ") else "-".join(hdr.split()[:3])
        return d.view_prompt.format(h=h, v=v)

    def write(self, text: str) -> None:
        self.proc.stdout.write(text.replace("\r\n", "\n").replace("\n", "\r\n"))

    async def readline(self, echo: bool = True):
        out = []
        try:
            while True:
                while self._buf:
                    ch, self._buf = self._buf[0], self._buf[1:]
                    if ch == "\n" and self._skip_lf:
                        self._skip_lf = False
                        continue
                    self._skip_lf = ch == "\r"
                    if ch in "\r\n":
                        line, self._line = self._line, ""
                        out.append("\n")
                        return line
                    if ch in "\x7f\x08":
                        if self._line:
                            self._line = self._line[:-1]
                            out.append("\b \b")
                    elif ch == "\x1a":
                        self._line = ""
                        return "\x1a"
                    else:
                        self._line += ch
                        out.append(ch)
                if echo and out:
                    self.write("".join(out))
                    out.clear()
                try:
                    data = await self.proc.stdin.read(4096)
                except (asyncssh.TerminalSizeChanged, asyncssh.BreakReceived):
                    continue
                if not data:
                    return None
                self._buf += data
        finally:
            if echo and out:
                self.write("".join(out))

    def exec_cmd(self, line: str):
        dev, d = self.dev, self.d
        cmd, _, spec = line.partition("|")
        cmd = cmd.strip()
        if cmd in d.paging:
            return d.paging[cmd]
        if d.show_run.fullmatch(cmd):
            return pipe_filter(dev.render(), spec)
        if cmd == d.show_saved:
            return pipe_filter(dev.render(dev.saved), spec)
        for k, v in dev.exec_outputs.items():
            if k == cmd:
                return pipe_filter(v(dev, cmd) if callable(v) else v, spec)
        if cmd == "show privilege" and dev.dialect_name == "cisco_ios":
            return f"Current privilege level is {15 if self.priv else 1}"
        if cmd == d.show_prefix + "version":
            return f"{dev.name} fake {dev.dialect_name}"
        return None

    async def run(self):
        self.write("\nInfo: The max number of VTY users is 10.\n" + self.prompt())
        while True:
            line = await self.readline()
            if line is None:
                break
            line = line.strip()
            self.dev.log.append(("cfg" if self.cfg else "exec", line))
            out = await self.handle(line)
            if out is False:
                break
            if out:
                self.write(out.rstrip("\n") + "\n")
            self.write(self.prompt())
        self.proc.exit(0)

    async def handle(self, line: str):
        dev, d = self.dev, self.d
        if not line:
            return ""
        if self.cfg:
            if line in d.to_exec or line == "\x1a":
                self.cfg, self.view = False, None
                return ""
            if line in d.up:
                if self.view is None:
                    self.cfg = False
                self.view = None
                return ""
            if dev.dialect_name == "hp_comware" and line in d.save:
                return await self.save(line)
            if line.startswith(d.show_prefix) or line.startswith("do "):
                out = self.exec_cmd(line[3:] if line.startswith("do ") else line)
                return d.error if out is None else out
            self.view, err = dev.apply(self.view, line)
            return err or ""
        if line in ("quit", "exit", "logout"):
            return False
        if dev.dialect_name == "cisco_ios" and not self.priv:
            if line in ("enable", "en"):
                self.write("Password: ")
                pw = await self.readline(echo=False)
                self.write("\n")
                if pw == dev.enable_secret:
                    self.priv = True
                    return ""
                return "% Bad secret"
            if line.startswith("terminal ") or line in ("show version", "show privilege"):
                return self.exec_cmd(line) or ""
            return d.error
        if line in ("enable", "en", "return"):
            return ""
        if line in d.enter_config:
            self.cfg = True
            return d.enter_msg
        if line in d.save:
            return await self.save(line)
        out = self.exec_cmd(line)
        return d.error if out is None else out

    async def save(self, line: str):
        dev, d = self.dev, self.d
        question = d.save[line]
        if question:
            self.write(question)
            ans = (await self.readline()).strip()
            if dev.dialect_name == "cisco_ios":
                if ans not in ("", "startup-config"):
                    return "%Error opening " + ans
            elif ans.lower() not in ("y", "yes"):
                return "Info: Aborted."
        dev.saved = dev._copy(dev.running)
        dev.saves += 1
        return d.save_ok


class _Server(asyncssh.SSHServer):
    def __init__(self, dev: FakeDevice):
        self.dev = dev

    def begin_auth(self, username):
        return True

    def password_auth_supported(self):
        return True

    def validate_password(self, username, password):
        return username == self.dev.username and password == self.dev.password


class FakeNetwork:
    """Serve many FakeDevices, one SSH port each on 127.0.0.1, from one background asyncio loop."""

    def __init__(self, devices, host: str = "127.0.0.1"):
        self.devices, self.host = list(devices), host
        self.loop = asyncio.new_event_loop()
        self._servers = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self):
        key = asyncssh.generate_private_key("ssh-ed25519")
        for dev in self.devices:

            async def handler(proc, dev=dev):
                await _Session(dev, proc).run()

            srv = await asyncssh.create_server(
                lambda dev=dev: _Server(dev),
                self.host,
                0,
                server_host_keys=[key],
                process_factory=handler,
                line_editor=False,
                encoding="utf-8",
            )
            dev.port = srv.sockets[0].getsockname()[1]
            self._servers.append(srv)

    def start(self) -> FakeNetwork:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def stop(self) -> None:
        async def _stop():
            for s in self._servers:
                s.close()
            await asyncio.gather(*(s.wait_closed() for s in self._servers))

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FakeNetwork:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def by_name(self, name: str) -> FakeDevice:
        return next(d for d in self.devices if d.name == name)


def serve_forever(devices) -> None:  # pragma: no cover - used by the benchmark's helper process
    net = FakeNetwork(devices).start()
    try:
        threading.Event().wait()
    finally:
        net.stop()
