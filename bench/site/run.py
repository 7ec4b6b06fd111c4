#!/usr/bin/env python3
"""Time playbooks/site.yml over a lab: first and second (idempotent) run with the project settings
(pipelining on, forks from ansible.cfg) against the same runs with pipelining off and forks=5, measured
in this same run on this machine. Prints the ratios; asserts nothing about speed.

    bench/site/run.py [--size full] [--id 7] [--tags baseline,perf_tuning] [--keep]

Each configuration gets a fresh lab (bin/lab up), so both "first run" figures start from the same state.
Use --tags to limit to some roles (say so when reporting figures).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAB = os.path.join(ROOT, "bin", "lab")


def sh(cmd: list[str], env: dict, log) -> float:
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)} — see {log.name}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="full")
    ap.add_argument("--id", default=os.environ.get("POPDB_LAB_ID", "7"))
    ap.add_argument("--tags", default="")
    ap.add_argument("--playbook", default="playbooks/site.yml")
    ap.add_argument("--keep", action="store_true", help="leave the last lab up")
    args = ap.parse_args()

    base_env = dict(os.environ)
    base_env.update(
        PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + base_env.get("PATH", ""),
        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
        POPDB_LAB_ID=str(args.id),
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.timer",
        ANSIBLE_FACT_CACHING="memory",
    )
    configs = {
        "project (pipelining on, forks=ansible.cfg)": {},
        "baseline (pipelining off, forks=5)": {"ANSIBLE_PIPELINING": "False", "ANSIBLE_FORKS": "5"},
    }
    os.makedirs(os.path.join(ROOT, "out", "bench"), exist_ok=True)
    results = {}
    for i, (label, extra) in enumerate(configs.items()):
        env = dict(base_env, **extra)
        logpath = os.path.join(ROOT, "out", "bench", f"site-{i}.log")
        with open(logpath, "w", encoding="utf-8") as log:
            sh([LAB, "down", "--id", str(args.id)], env, log)
            sh([LAB, "up", "--size", args.size, "--id", str(args.id)], env, log)
            cmd = ["ansible-playbook", args.playbook] + (["--tags", args.tags] if args.tags else [])
            first = sh(cmd, env, log)
            second = sh(cmd, env, log)
            if not (args.keep and i == len(configs) - 1):
                sh([LAB, "down", "--id", str(args.id)], env, log)
        results[label] = (first, second)
        print(f"{label}: first {first:.1f} s, second {second:.1f} s", flush=True)
    (p1, p2), (b1, b2) = results.values()
    scope = f" (--tags {args.tags})" if args.tags else ""
    print(f"site.yml over the {args.size} lab{scope}")
    print(f"first run:  baseline/project = {b1 / p1:.2f}x")
    print(f"second run: baseline/project = {b2 / p2:.2f}x")
    print(f"project second/first = {p2 / p1:.2f}")


if __name__ == "__main__":
    main()
