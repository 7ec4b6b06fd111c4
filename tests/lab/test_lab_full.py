"""The `full` lab on real hosts: 28 servers + 5 gateways + 5 probes up, `ansible all -m ping` on the
28 servers, down, and nothing of that lab id left behind (netns, mounts, links, cgroups, nft, processes).

Timings go to out/lab/timings.json and the terminal summary.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "bin", "lab")
LAB_ID = 7
TIMINGS: dict[str, float] = {}

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]


def _sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def snapshot(lab_id: int) -> dict[str, list[str]]:
    """Everything a lab id can create on the controller, filtered to that id."""
    n = lab_id
    tag = re.compile(rf"(popdb{n}-|plb{n}[wl]|pv{n}[wl]|popdb-lab{n}\b|popdb_lab{n}\b|/popdb-lab/{n}/)")
    procs = []
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(p, "rb") as fh:
                argv = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "systemd-nspawn" in argv and f"/popdb-lab/{lab_id}/" in argv:
            procs.append(argv)
    with open("/proc/self/mounts") as fh:
        mounts = [line.split()[1] for line in fh]
    cgroups = [d for h in ("systemd", "unified", "memory") for d in glob.glob(f"/sys/fs/cgroup/{h}/*")]
    raw = {
        "netns": _sh("ip", "netns", "list").splitlines(),
        "mounts": mounts,
        "links": [li["ifname"] for li in json.loads(_sh("ip", "-j", "link"))],
        "cgroups": cgroups,
        "nft": _sh("nft", "list", "tables").splitlines(),
        "processes": procs,
    }
    return {k: sorted(x for x in v if tag.search(x) or k == "processes") for k, v in raw.items()}


def _lab(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{ROOT}/.venv/bin:{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, LAB, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def test_full_lab_up_ping_down(record_property):
    subprocess.run([sys.executable, LAB, "down", "--id", str(LAB_ID)], capture_output=True)  # stale leftovers
    before = snapshot(LAB_ID)
    t = time.monotonic()
    r = _lab("build")
    assert r.returncode == 0, r.stderr
    TIMINGS["build_s"] = round(time.monotonic() - t, 1)
    try:
        t = time.monotonic()
        r = _lab("up", "--size", "full", "--id", str(LAB_ID))
        assert r.returncode == 0, r.stderr
        TIMINGS["up_s"] = round(time.monotonic() - t, 1)
        during = snapshot(LAB_ID)
        assert len(during["netns"]) == 38 and len(during["processes"]) == 38
        assert len([m for m in during["mounts"] if m.endswith("/root")]) == 38

        t = time.monotonic()
        env = {
            **os.environ,
            "POPDB_LAB_ID": str(LAB_ID),
            "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
            "PATH": f"{ROOT}/.venv/bin:{os.environ.get('PATH', '')}",
        }
        p = subprocess.run(
            ["ansible", "servers", "-m", "ansible.builtin.ping", "-o", "-f", "28"],
            cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        TIMINGS["ping_s"] = round(time.monotonic() - t, 1)
        ok = [ln.split()[0] for ln in p.stdout.splitlines() if "| SUCCESS" in ln]
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert len(ok) == 28, p.stdout
        assert not any(h.startswith(("gw-", "probe-")) for h in ok)
    finally:
        t = time.monotonic()
        r = _lab("down", "--id", str(LAB_ID))
        TIMINGS["down_s"] = round(time.monotonic() - t, 1)
        os.makedirs(os.path.join(ROOT, "out", "lab"), exist_ok=True)
        with open(os.path.join(ROOT, "out", "lab", "timings.json"), "w") as fh:
            json.dump({"lab_id": LAB_ID, "size": "full", **TIMINGS}, fh, indent=1)
        record_property("timings", TIMINGS)
    assert r.returncode == 0, r.stderr
    after = snapshot(LAB_ID)
    assert after == before
    assert not os.path.exists(f"/var/lib/popdb-lab/{LAB_ID}")
    assert not os.path.exists(os.path.join(ROOT, ".cache", "lab", str(LAB_ID)))
