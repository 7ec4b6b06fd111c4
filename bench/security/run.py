#!/usr/bin/env python3
"""Security score bench: Lynis hardening index and OpenSCAP scores (standard, anssi_bp28_minimal) of a lab
host before and after playbooks/security.yml.

Brings up a small lab (mgmt01 for the antivirus mirror + the scanned host), runs
playbooks/vuln_scan.yml (phase before), playbooks/security.yml, playbooks/vuln_scan.yml (phase after), and
prints the figures from out/vuln_scan/<host>/summary.json (the per-host report is next to it): Lynis index,
tailored OpenSCAP scores, failed rules before/after, waived/tailored-out/open rules and Lynis suggestions.
The figures and summary are also saved as out/security/<host>-<UTC time>.txt/.json.
Root only (the lab). Usage: bench/security/run.py [--host prov-db01] [--id 9] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUPS = {
    "prov-db01": ["province_db", "databases", "servers"],
    "web01": ["web_app", "servers"],
    "bak01": ["backup_storage", "servers"],
}


def run(cmd: list[str], env: dict) -> None:
    t0 = time.monotonic()
    print("+", " ".join(cmd), flush=True)
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stdout.write(res.stdout[-6000:])
        sys.stderr.write(res.stderr[-3000:])
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}")
    print(f"  done in {time.monotonic() - t0:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="prov-db01", choices=sorted(GROUPS))
    ap.add_argument("--id", default=os.environ.get("POPDB_BENCH_LAB_ID", "9"))
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    args = ap.parse_args()
    env = {
        **os.environ,
        "PATH": os.path.join(ROOT, ".venv", "bin") + ":" + os.environ.get("PATH", ""),
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "POPDB_LAB_ID": str(args.id),
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": os.path.join(ROOT, ".cache", f"facts-lab{args.id}"),
    }
    spec = {
        "hosts": [
            {"name": "mgmt01", "groups": ["management", "servers"]},
            {"name": args.host, "groups": GROUPS[args.host]},
        ]
    }
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
        json.dump(spec, fh)  # JSON is YAML
        spec_file = fh.name
    lab = os.path.join(ROOT, "bin", "lab")
    out = os.path.join(ROOT, "out", "vuln_scan", args.host)
    subprocess.run(["rm", "-rf", out], check=True)
    try:
        run([lab, "up", "--spec", spec_file, "--id", str(args.id)], env)
        scan = ["ansible-playbook", "playbooks/vuln_scan.yml", "-e", f"vuln_scan_hosts={args.host}"]
        run([*scan, "-e", "vuln_scan_phase=before"], env)
        run(["ansible-playbook", "playbooks/security.yml"], env)
        run([*scan, "-e", "vuln_scan_phase=after"], env)
    finally:
        if not args.keep:
            subprocess.run([lab, "down", "--id", str(args.id)], cwd=ROOT, env=env)
        os.unlink(spec_file)
    with open(os.path.join(out, "summary.json"), encoding="utf-8") as fh:
        s = json.load(fh)
    text = figures(args.host, s, out)
    print(text)
    saved = os.path.join(ROOT, "out", "security")
    os.makedirs(saved, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with open(os.path.join(saved, f"{args.host}-{stamp}.txt"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    with open(os.path.join(saved, f"{args.host}-{stamp}.json"), "w", encoding="utf-8") as fh:
        json.dump(s, fh, ensure_ascii=False, indent=2)
    print(f"saved: out/security/{args.host}-{stamp}.txt, .json")


def figures(host: str, s: dict, out: str) -> str:
    """The before/after table: Lynis index, scores, failed and waived rules/suggestions."""
    ly = s["lynis"]
    lines = [
        f"host {host}                     before    after",
        f"Lynis hardening index            {ly.get('before')!s:>6}   {ly.get('after')!s:>6}   (target >= 85)",
        f"  Lynis suggestions after: {ly.get('suggestions_after', '-')}, waived {len(ly.get('waived', []))}, "
        f"open {len(ly.get('open', []))}: {', '.join(ly.get('open', [])) or '-'}",
    ]
    for prof, p in s["profiles"].items():
        lines += [
            f"OpenSCAP {prof:<23} {p['score_before']!s:>6}   {p['score_after']!s:>6}   (tailored)",
            f"  failed rules                   {p.get('fail_before')!s:>6}   {p['fail_after']!s:>6}",
            f"  after: waived {len(p.get('waived', []))} (kept in profile, failure accepted), "
            f"tailored out {len(p.get('tailored_out', []))}, "
            f"open {len(p['open'])}: {', '.join(p['open']) or '-'}",
        ]
    lines.append(f"report: {out}/report.html, report.xlsx")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
