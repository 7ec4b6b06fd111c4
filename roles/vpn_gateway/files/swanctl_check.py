#!/usr/bin/env python3
"""Check a generated swanctl.conf snippet before it is installed (used as the template `validate` command).

strongSwan has no dry-run for `swanctl --load-all`, and a bad file loaded into charon can unload tunnels.
This parses the settings syntax (sections, key = value, comments, quoted strings) and checks what the
role relies on: every connection has local/remote addresses and children with valid traffic selectors,
every secret has a value, and - with --gateway-ip - the local traffic selector contains the gateway's own
address (the userspace backend needs a source address for its route). Exit 0 when fine, 1 with reasons.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys


class ConfError(ValueError):
    pass


def parse(text: str) -> dict:
    """Parse strongSwan settings syntax into nested dicts (values as strings)."""
    root: dict = {}
    stack = [root]
    lines = text.splitlines()
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0] if '"' not in raw else raw
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*\{\s*", s)
        if m:
            node: dict = {}
            if m.group(1) in stack[-1]:
                raise ConfError(f"line {lineno}: section {m.group(1)!r} defined twice")
            stack[-1][m.group(1)] = node
            stack.append(node)
            continue
        if s == "}":
            if len(stack) == 1:
                raise ConfError(f"line {lineno}: '}}' without an open section")
            stack.pop()
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*=\s*(.*?)\s*", s)
        if m:
            value = m.group(2)
            if value.startswith('"'):
                if not re.fullmatch(r'"(?:[^"\\]|\\.)*"', value):
                    raise ConfError(f"line {lineno}: unterminated or malformed quoted value")
                value = value[1:-1]
            stack[-1][m.group(1)] = value
            continue
        raise ConfError(f"line {lineno}: cannot parse {s!r}")
    if len(stack) != 1:
        raise ConfError("unbalanced braces: a section is not closed")
    return root


def _nets(value: str, where: str, errors: list) -> list:
    out = []
    for part in [p.strip() for p in value.split(",") if p.strip()]:
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            errors.append(f"{where}: {part!r} is not an address or subnet")
    return out


def check(conf: dict, gateway_ip: str | None = None) -> list[str]:
    errors: list[str] = []
    if not conf.get("connections") and not conf.get("secrets"):
        errors.append("no connections or secrets section")
    for name, c in (conf.get("connections") or {}).items():
        if not isinstance(c, dict):
            errors.append(f"connections.{name}: must be a section")
            continue
        for key in ("local_addrs", "remote_addrs"):
            if key not in c:
                errors.append(f"connections.{name}.{key}: missing")
            else:
                _nets(c[key], f"connections.{name}.{key}", errors)
        for side in ("local", "remote"):
            if not isinstance(c.get(side), dict) or "auth" not in c[side]:
                errors.append(f"connections.{name}.{side}.auth: missing")
        children = c.get("children")
        if not isinstance(children, dict) or not children:
            errors.append(f"connections.{name}.children: at least one child SA required")
            continue
        for cname, ch in children.items():
            where = f"connections.{name}.children.{cname}"
            if not isinstance(ch, dict):
                errors.append(f"{where}: must be a section")
                continue
            for key in ("local_ts", "remote_ts"):
                if key not in ch:
                    errors.append(f"{where}.{key}: missing")
            local = _nets(ch.get("local_ts", ""), f"{where}.local_ts", errors)
            _nets(ch.get("remote_ts", ""), f"{where}.remote_ts", errors)
            if gateway_ip and local and not any(ipaddress.ip_address(gateway_ip) in n for n in local):
                errors.append(f"{where}.local_ts: does not contain the gateway's own address {gateway_ip}")
    for name, sec in (conf.get("secrets") or {}).items():
        if not isinstance(sec, dict) or not sec.get("secret"):
            errors.append(f"secrets.{name}.secret: missing or empty")
    return errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gateway-ip", default="", help="an address of this gateway (LAN side)")
    ap.add_argument("file")
    args = ap.parse_args(argv)
    try:
        with open(args.file, encoding="utf-8") as fh:
            conf = parse(fh.read())
        errors = check(conf, args.gateway_ip or None)
    except (OSError, ConfError) as exc:
        errors = [str(exc)]
    for e in errors:
        print(f"{args.file}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
