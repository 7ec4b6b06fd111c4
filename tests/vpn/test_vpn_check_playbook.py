"""playbooks/vpn_check.yml against fake appliance gateways: report written, non-zero exit on a down link."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import yaml
from fakes.netdev import FakeDevice, FakeNetwork

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TOPO = {
    "defaults": {"wan_interface": {"huawei_vrp": "Gi0/0/1", "hp_comware": "Gi1/0/1", "cisco_ios": "Gi0/1"}},
    "gateways": {
        "gw-prov": {
            "tier": "province",
            "id": 1,
            "kind": "appliance",
            "vendor": "huawei_vrp",
            "wan": "198.51.100.1",
            "subnets": ["10.42.0.0/22"],
        },
        "gw-420100": {
            "tier": "city",
            "id": 10,
            "parent": "gw-prov",
            "kind": "appliance",
            "vendor": "hp_comware",
            "wan": "198.51.100.10",
            "subnets": ["10.43.1.0/24"],
        },
        "gw-420102": {
            "tier": "county",
            "id": 100,
            "parent": "gw-420100",
            "kind": "appliance",
            "vendor": "cisco_ios",
            "wan": "198.51.100.100",
            "subnets": ["10.44.1.0/24"],
        },
    },
}


def _sa_text(vendor: str, peers: list[str], me: str) -> str:
    if vendor == "huawei_vrp":
        rows = "".join(f"  {i + 1}  {p}  0  RD|ST  2\n" for i, p in enumerate(peers))
        return f"    Conn-ID  Peer  VPN  Flag(s)  Phase\n  ----\n{rows}\n  Flag Description:\n"
    if vendor == "hp_comware":
        rows = "".join(f"    {i + 1}   {p}   RD   IPsec\n" for i, p in enumerate(peers))
        return f"    Connection-ID   Remote   Flag   DOI\n------\n{rows}Flags:\n"
    rows = "".join(f"{p}   {me}   QM_IDLE   100{i} ACTIVE\n" for i, p in enumerate(peers))
    return f"IPv4 Crypto ISAKMP SA\ndst   src   state   conn-id status\n{rows}\nIPv6 Crypto ISAKMP SA\n"


def _run(tmp_path, down: set) -> tuple[int, dict]:
    tmp_path.mkdir(parents=True)
    gws = TOPO["gateways"]
    devs = []
    for name, g in gws.items():
        others = [o for o in gws if o != name and frozenset((name, o)) not in down]
        cmd = "show crypto isakmp sa" if g["vendor"] == "cisco_ios" else "display ike sa"
        text = _sa_text(g["vendor"], [gws[o]["wan"] for o in others], g["wan"])
        devs.append(FakeDevice(name, g["vendor"], exec_outputs={cmd: text}))
    with FakeNetwork(devs):
        inv = {
            "all": {
                "vars": {
                    "vpn_topology": TOPO,
                    "vpn_appliance_user": "admin",
                    "vpn_appliance_password": "admin",
                },
                "children": {
                    "vpn_gateways": {
                        "children": {
                            "vpn_appliance": {
                                "hosts": {
                                    d.name: {"ansible_host": "127.0.0.1", "ansible_port": d.port}
                                    for d in devs
                                }
                            }
                        }
                    }
                },
            }
        }
        (tmp_path / "inv.yml").write_text(yaml.safe_dump(inv))
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.timer",
        }
        proc = subprocess.run(
            [
                os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                "-i",
                str(tmp_path / "inv.yml"),
                os.path.join(ROOT, "playbooks/vpn_check.yml"),
                "-e",
                f"vpn_check_out={tmp_path}/out",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    reports = sorted(glob.glob(f"{tmp_path}/out/*/vpn_check.json"))
    assert reports, proc.stdout[-3000:] + proc.stderr[-2000:]
    with open(reports[-1], encoding="utf-8") as fh:
        return proc.returncode, json.load(fh)


def test_all_links_up_exit_zero_then_cut_link_reported_first_and_exit_nonzero(tmp_path):
    rc, rep = _run(tmp_path / "a", set())
    assert rc == 0, rep
    assert rep["summary"] == {"down": 0, "degraded": 0, "up": 3}
    rc, rep = _run(tmp_path / "b", {frozenset(("gw-prov", "gw-420102"))})
    assert rc != 0
    assert rep["summary"]["down"] == 1
    first = rep["pairs"][0]
    assert first["pair"] == "gw-prov--gw-420102" and first["status"] == "down"
    assert first["tunnel_a"] is False and first["tunnel_b"] is False
