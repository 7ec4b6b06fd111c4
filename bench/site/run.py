#!/usr/bin/env python3
"""Time playbooks/site.yml over a lab: first and second (idempotent) run with the project settings
(pipelining on, forks from ansible.cfg) against the same runs with pipelining off and forks=5, measured
in this same run on this machine. Prints the ratios; asserts nothing about speed.

    bench/site/run.py [--size full] [--id 7] [--tags baseline,perf_tuning] [--keep]
                      [--configs project,baseline,pipelined_forks5]

Configurations: project (ansible.cfg: pipelining on, forks=30), baseline (pipelining off, forks=5) and
pipelined_forks5 (pipelining on, forks=5: separates the effect of pipelining from that of forks).
Default: project,baseline.

Each configuration gets a fresh lab (bin/lab up), so both "first run" figures start from the same state.
Use --tags to limit to some roles (say so when reporting figures).

Outputs go to out/bench/site/: one log per step (lab up/down, each ansible-playbook run),
results.json (rewritten after every run, so an interrupted bench keeps what it measured) and
summary.txt. Every run records the 1/5/15-minute load average before and after it (the machine
may be shared) and, from the PLAY RECAP, the hosts whose run reported changed>0 or failed.
A second run with changed>0 on any host is an idempotence bug and is flagged in the summary.
SIGTERM/SIGINT stop the current step (its whole process group) and take the lab down.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAB = os.path.join(ROOT, "bin", "lab")
OUT = os.path.join(ROOT, "out", "bench", "site")
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)"
)
_current: subprocess.Popen | None = None


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def loadavg() -> list[float]:
    with open("/proc/loadavg", encoding="ascii") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def sh(cmd: list[str], env: dict, logpath: str) -> tuple[float, int]:
    """Run cmd in its own process group, output to logpath; return (seconds, returncode)."""
    global _current
    t0 = time.monotonic()
    with open(logpath, "w", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        _current = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = _current.wait()
        except BaseException:
            kill_current()
            raise
        finally:
            _current = None
    return time.monotonic() - t0, rc


def kill_current() -> None:
    p = _current
    if p is None or p.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def recap(logpath: str) -> dict[str, dict[str, int]]:
    hosts: dict[str, dict[str, int]] = {}
    with open(logpath, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = RECAP.match(line.strip())
            if m:
                hosts[m["host"]] = {k: int(v) for k, v in m.groupdict().items() if k != "host"}
    return hosts


def lab(action: list[str], env: dict, logpath: str) -> float:
    dt, rc = sh([LAB, *action], env, logpath)
    if rc != 0:
        raise RuntimeError(f"bin/lab {' '.join(action)} failed ({rc}); see {logpath}")
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", default="full")
    ap.add_argument("--id", default=os.environ.get("POPDB_LAB_ID", "7"))
    ap.add_argument("--tags", default="")
    ap.add_argument("--playbook", default="playbooks/site.yml")
    ap.add_argument("--keep", action="store_true", help="leave the last lab up")
    ap.add_argument(
        "--configs",
        default="project,baseline",
        help="comma-separated configurations to run, in order (project, baseline, pipelined_forks5)",
    )
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    base_env = dict(os.environ)
    base_env.update(
        PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + base_env.get("PATH", ""),
        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
        POPDB_LAB_ID=str(args.id),
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.timer",
        ANSIBLE_CACHE_PLUGIN="memory",  # facts of an earlier lab must not be reused
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
    )
    configs = {
        "project": ("project (pipelining on, forks=ansible.cfg)", {}),
        "baseline": (
            "baseline (pipelining off, forks=5)",
            {"ANSIBLE_PIPELINING": "False", "ANSIBLE_FORKS": "5"},
        ),
        "pipelined_forks5": ("pipelining on, forks=5", {"ANSIBLE_FORKS": "5"}),
    }
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in configs]
    if unknown or not wanted:
        ap.error(f"--configs: unknown {unknown or 'empty list'}; choose from {', '.join(configs)}")
    configs = {c: configs[c] for c in wanted}
    os.makedirs(OUT, exist_ok=True)
    scope = f" (--tags {args.tags})" if args.tags else ""
    results: dict = {
        "playbook": args.playbook,
        "size": args.size,
        "tags": args.tags,
        "lab_id": str(args.id),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "runs": [],
        "status": "running",
    }

    def save() -> None:
        with open(os.path.join(OUT, "results.json"), "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, ensure_ascii=False)

    lab_up = False
    rc = 0
    try:
        for key, (label, extra) in configs.items():
            env = dict(base_env, **extra)
            lab(["down", "--id", str(args.id)], env, os.path.join(OUT, f"{key}-lab-down0.log"))
            lab_up = True
            uplog = os.path.join(OUT, f"{key}-lab-up.log")
            up = lab(["up", "--size", args.size, "--id", str(args.id)], env, uplog)
            print(f"{label}: lab up in {up:.1f} s", flush=True)
            cmd = ["ansible-playbook", args.playbook] + (["--tags", args.tags] if args.tags else [])
            for run in ("first", "second"):
                logpath = os.path.join(OUT, f"{key}-{run}.log")
                before = loadavg()
                start = time.strftime("%H:%M:%SZ", time.gmtime())
                dt, prc = sh(cmd, env, logpath)
                after = loadavg()
                hosts = recap(logpath)
                entry = {
                    "config": key,
                    "label": label,
                    "run": run,
                    "start": start,
                    "seconds": round(dt, 1),
                    "rc": prc,
                    "loadavg_before": before,
                    "loadavg_after": after,
                    "hosts": len(hosts),
                    "changed_hosts": {h: r["changed"] for h, r in hosts.items() if r["changed"]},
                    "failed_hosts": sorted(h for h, r in hosts.items() if r["failed"] or r["unreachable"]),
                    "log": os.path.relpath(logpath, ROOT),
                }
                results["runs"].append(entry)
                save()
                print(
                    f"{label}: {run} run {dt:.1f} s rc={prc} hosts={len(hosts)} "
                    f"changed_hosts={len(entry['changed_hosts'])} failed={len(entry['failed_hosts'])} "
                    f"load before {before} after {after}",
                    flush=True,
                )
                if prc != 0:
                    raise RuntimeError(f"{run} run failed ({prc}); see {logpath}")
            if not (args.keep and key == list(configs)[-1]):
                lab(["down", "--id", str(args.id)], env, os.path.join(OUT, f"{key}-lab-down.log"))
                lab_up = False
        results["status"] = "complete"
    except (Interrupted, RuntimeError) as exc:
        results["status"] = f"stopped: {exc}"
        print(f"stopped: {exc}", file=sys.stderr, flush=True)
        rc = 1
    finally:
        if lab_up and not (args.keep and results["status"] == "complete"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            sh([LAB, "down", "--id", str(args.id)], base_env, os.path.join(OUT, "final-lab-down.log"))
        results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        save()

    lines = [f"{args.playbook} over the {args.size} lab{scope}, lab id {args.id}, {os.cpu_count()} cores"]
    by = {(r["config"], r["run"]): r for r in results["runs"]}
    for r in results["runs"]:
        lines.append(
            f"{r['label']:45s} {r['run']:6s} {r['seconds']:8.1f} s  rc={r['rc']}  hosts={r['hosts']}"
            f"  load {r['loadavg_before']} -> {r['loadavg_after']}"
        )
        if r["run"] == "second" and r["changed_hosts"]:
            lines.append(f"  NOT IDEMPOTENT: changed on {r['changed_hosts']}")
    for other in (c for c in configs if c != "project"):
        for run in ("first", "second"):
            p, b = by.get(("project", run)), by.get((other, run))
            if p and b and p["rc"] == 0 and b["rc"] == 0:
                lines.append(f"{run} run:  {other}/project = {b['seconds'] / p['seconds']:.2f}x")
    p1, p2 = by.get(("project", "first")), by.get(("project", "second"))
    if p1 and p2 and p2["rc"] == 0:
        lines.append(f"project second/first = {p2['seconds'] / p1['seconds']:.2f}")
    lines.append(f"status: {results['status']}")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "summary.txt"), "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text, end="", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
