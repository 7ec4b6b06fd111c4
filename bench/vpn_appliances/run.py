#!/usr/bin/env python3
"""Benchmark: playbooks/vpn_appliances.yml over the province's 118 gateways as fake SSH devices.

Topology: the production one (1 province + 17 cities + 99 counties) plus one synthetic county to reach the
issue's 1 + 17 + 100; every gateway is made an appliance (vendors cycled) so all 118 are configured.
Measures, in the same run: a baseline (the playbook on ONE gateway), the first run over all 118 (pushes and
saves everywhere) and the second run (reads only). Prints ratios; asserts only correctness (changed counts).
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, "tests")]
from fakes.netdev import FakeDevice, FakeNetwork  # noqa: E402

VENDORS = ("huawei_vrp", "hp_comware", "cisco_ios")
FORKS = int(os.environ.get("BENCH_FORKS", "20"))


def topology() -> dict:
    with open(
        os.path.join(ROOT, "inventories/production/group_vars/all/vpn_topology.yml"), encoding="utf-8"
    ) as fh:
        topo = copy.deepcopy(yaml.safe_load(fh)["vpn_topology"])
    gws = topo["gateways"]
    gws["gw-420199"] = {  # synthetic 100th county (bench only)
        "tier": "county",
        "id": 199,
        "label": "bench",
        "parent": "gw-420100",
        "wan": "203.0.113.199",
        "subnets": ["10.44.100.0/24"],
    }
    for i, name in enumerate(sorted(gws)):
        gws[name].update(kind="appliance", vendor=VENDORS[i % 3])
    return topo


def run_playbook(inv: str, limit: str | None = None) -> tuple[float, dict]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.timer",
        "ANSIBLE_FORKS": str(FORKS),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
    }
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-i",
        inv,
        os.path.join(ROOT, "playbooks/vpn_appliances.yml"),
        "-e",
        f"vpn_appliances_parallel={FORKS}",
    ]
    if limit:
        cmd += ["-l", limit]
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - t
    recap = {}
    for m in re.finditer(
        r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout, re.M
    ):
        recap[m.group(1)] = {"changed": int(m.group(3)), "failed": int(m.group(4)) + int(m.group(5))}
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"ansible-playbook failed (rc={proc.returncode})")
    return elapsed, recap


def main() -> int:
    topo = topology()
    gws = topo["gateways"]
    assert len(gws) == 118, len(gws)
    wanif = topo["defaults"]["wan_interface"]
    devices = [
        FakeDevice(
            n, g["vendor"], config=f"interface {wanif[g['vendor']]}\n ip address {g['wan']} 255.255.255.0\n"
        )
        for n, g in sorted(gws.items())
    ]
    with FakeNetwork(devices) as net, tempfile.TemporaryDirectory() as tmp:
        hosts = {d.name: {"ansible_host": "127.0.0.1", "ansible_port": d.port} for d in net.devices}
        inv = {
            "all": {
                "vars": {
                    "vpn_topology": topo,
                    "vpn_psk_master": "bench-master-secret-0123456789",
                    "vpn_appliance_user": "admin",
                    "vpn_appliance_password": "admin",
                },
                "children": {"vpn_appliance": {"hosts": hosts}},
            }
        }
        path = os.path.join(tmp, "inventory.yml")
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(inv, fh)
        one = net.devices[0].name
        t_base, recap0 = run_playbook(path, limit=one)
        assert recap0[one]["changed"] == 1, recap0
        t1, recap1 = run_playbook(path, limit=f"all:!{one}")
        t2, recap2 = run_playbook(path)
        n1 = sum(r["changed"] for r in recap1.values())
        n2 = sum(r["changed"] for r in recap2.values())
        saves = sum(d.saves for d in net.devices)
        lines = sum(1 for d in net.devices for mode, _ in d.log if mode == "cfg")
    result = {
        "gateways": 118,
        "forks": FORKS,
        "baseline_one_gateway_s": round(t_base, 2),
        "first_run_117_s": round(t1, 2),
        "second_run_118_s": round(t2, 2),
        "first_run_changed": n1,
        "second_run_changed": n2,
        "saves_total": saves,
        "config_lines_received_total": lines,
        "first_run_per_gateway_vs_baseline": round(t1 / 117 / t_base, 3),
        "second_run_vs_first_run": round(t2 / t1, 3),
        "first_run_vs_serial_estimate": round(t1 / (117 * t_base), 3),
    }
    print(json.dumps(result, indent=2))
    ok = n1 == 117 and n2 == 0 and saves == 118
    print(
        "correct: first run changed 117/117, second run changed 0, one save per device" if ok else "INCORRECT"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
