"""Command line of bin/lab: build, up, down, status."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import model, system


def _default_id() -> int:
    raw = os.environ.get("POPDB_LAB_ID", "0") or "0"
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"lab: POPDB_LAB_ID must be an integer, got {raw!r}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bin/lab", description="popdb-ops lab of systemd-nspawn hosts (root only)"
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="debootstrap and cache the Debian 12 base image")
    b.add_argument("--force", action="store_true", help="rebuild even if the cached base is complete")
    u = sub.add_parser("up", help="bring a lab up (safe to re-run)")
    g = u.add_mutually_exclusive_group()
    g.add_argument("--size", choices=model.SIZES, help="named lab size (default small)")
    g.add_argument("--spec", help="YAML spec: hosts: [{name, groups, lan?, behind?, vars?}]")
    u.add_argument("--wait", type=float, default=180.0, help="seconds to wait for ssh (default 180)")
    for name, text in (("down", "stop a lab and remove everything it created"), ("status", "list hosts")):
        s = sub.add_parser(name, help=text)
        if name == "status":
            s.add_argument("--json", action="store_true")
    for s in sub.choices.values():
        s.add_argument("--id", type=int, default=None, help="lab id 0..54 (default $POPDB_LAB_ID or 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    lab_id = args.id if args.id is not None else _default_id()
    try:
        if args.cmd == "build":
            system.build(force=args.force)
        elif args.cmd == "up":
            entries = model.spec_file(args.spec) if args.spec else model.size_spec(args.size or "small")
            lab = model.build_lab(lab_id, entries)
            t0 = time.monotonic()
            system.up(lab, wait=args.wait)
            print(f"lab {lab_id} up: {len(lab.hosts)} hosts in {time.monotonic() - t0:.1f} s")
            print(f"inventory: {system.out_dir(lab_id)}/inventory.yml  (POPDB_LAB_ID={lab_id})")
        elif args.cmd == "down":
            system.down(lab_id)
        elif args.cmd == "status":
            if os.geteuid() != 0:
                raise system.LabError("must run as root")
            rows = system.status(lab_id)
            if args.json:
                print(json.dumps(rows, indent=1))
            elif not rows:
                print(f"lab {lab_id}: not up")
            else:
                print(f"lab {lab_id}: {len(rows)} host(s)")
                for r in rows:
                    print(
                        f"  {r['name']:<16} {r['address']:<14} pid {str(r['pid'] or '-'):<8} "
                        f"ssh {'ok' if r['ssh'] else 'DOWN'}  {','.join(r['groups'])}"
                    )
                return 0 if all(r["ssh"] for r in rows) else 1
    except (system.LabError, model.SpecError) as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 2
    return 0
