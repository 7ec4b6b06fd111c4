"""vpn_check logic: swanctl and ping parsing, pair judgement (failures first), report files, exit status."""

from __future__ import annotations

import json

from ansible.module_utils.popdb_vpn_check import (
    judge,
    parse_ping,
    parse_swanctl_sas,
    tunnel_up_swanctl,
    write,
)
from ansible.module_utils.popdb_vpn_topology import required_pairs

from vpn.helpers import small_topology

SAS = """gw-420100: #3, ESTABLISHED, IKEv2, 1a2b3c4d5e6f7a8b_i* 8b7a6f5e4d3c2b1a_r
  local  '10.204.0.11' @ 10.204.0.11[4500]
  remote '10.204.0.12' @ 10.204.0.12[4500]
  AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048
  established 12s ago, rekeying in 14305s
  gw-420100-lan: #2, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_CBC-256/HMAC_SHA2_256_128
    installed 12s ago, rekeying in 3300s, expires in 3948s
    in  c8e1f0a2 (-|0x00000000),    840 bytes,    10 packets,     1s ago
    out c1d7a9b3 (-|0x00000000),    672 bytes,     8 packets,     1s ago
    local  10.204.10.0/24
    remote 10.204.11.0/24
gw-420102: #4, CONNECTING, IKEv2, 2a2b3c4d5e6f7a8b_i*
  local  '10.204.0.11' @ 10.204.0.11[4500]
  remote '10.204.0.14' @ 10.204.0.14[4500]
"""
PING_OK = """PING 10.204.11.10 (10.204.11.10) 56(84) bytes of data.

--- 10.204.11.10 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 804ms
rtt min/avg/max/mdev = 0.412/0.530/0.701/0.098 ms
"""
PING_DEAD = """--- 10.204.13.10 ping statistics ---
5 packets transmitted, 0 received, 100% packet loss, time 4093ms
"""


def test_parse_swanctl_and_ping():
    sas = parse_swanctl_sas(SAS)
    assert sas["gw-420100"]["children"]["gw-420100-lan"] == {
        "state": "INSTALLED",
        "in_bytes": 840,
        "out_bytes": 672,
    }
    assert tunnel_up_swanctl(sas, "gw-420100") and not tunnel_up_swanctl(sas, "gw-420102")
    assert not tunnel_up_swanctl(sas, "gw-420500")
    assert parse_ping(PING_OK) == {"sent": 5, "received": 5, "loss_pct": 0.0, "rtt_avg_ms": 0.53}
    assert parse_ping(PING_DEAD)["received"] == 0 and parse_ping("")["loss_pct"] == 100.0


def test_judge_orders_failures_first_and_writes_reports(tmp_path):
    pairs = [{"a": p.a, "b": p.b, "kind": p.kind, "name": p.name} for p in required_pairs(small_topology())]
    pings = {p["name"]: parse_ping(PING_OK) for p in pairs}
    pings["gw-prov--gw-420102"] = parse_ping(PING_DEAD)
    tunnels = {"gw-prov": {"gw-420100": True, "gw-420102": False}}
    rows = judge(pairs, tunnels, pings)
    assert rows[0]["pair"] == "gw-prov--gw-420102" and rows[0]["status"] == "down"
    assert all(r["status"] == "up" for r in rows[1:])
    res = write(str(tmp_path / "vpn_check"), rows, "2026-11-29 03:30")
    data = json.loads((tmp_path / "vpn_check.json").read_text(encoding="utf-8"))
    assert data["summary"] == {"down": 1, "degraded": 0, "up": len(pairs) - 1}
    assert data["pairs"][0]["status"] == "down"
    html = (tmp_path / "vpn_check.html").read_text(encoding="utf-8")
    assert "中断" in html and html.index("中断") < html.index("正常", html.index("<table"))
    assert res["xlsx"].endswith(".xlsx")


def test_tunnel_down_with_ping_ok_is_still_down_and_missing_ping_is_down():
    pairs = [{"a": "gw-prov", "b": "gw-420100", "kind": "province-city", "name": "gw-prov--gw-420100"}]
    rows = judge(pairs, {"gw-420100": {"gw-prov": False}}, {"gw-prov--gw-420100": parse_ping(PING_OK)})
    assert rows[0]["status"] == "down"
    assert judge(pairs, {}, {})[0]["status"] == "down"


def test_no_probe_judged_by_tunnel_state():
    pairs = [{"a": "gw-prov", "b": "gw-420100", "kind": "province-city", "name": "gw-prov--gw-420100"}]
    rows = judge(pairs, {"gw-420100": {"gw-prov": True}}, {})
    assert rows[0]["status"] == "up" and "无探测主机" in rows[0]["reasons"][0]


def test_probe_plan_prefers_probes_then_linux_ends():
    from ansible.module_utils.popdb_vpn_topology import probe_plan

    pairs = [
        {"a": "gw-prov", "b": "gw-420100", "name": "p1"},
        {"a": "gw-420100", "b": "gw-420102", "name": "p2"},
        {"a": "gw-420200", "b": "gw-420202", "name": "p3"},
    ]
    probes = {
        "gw-prov": {"host": "probe-prov", "ip": "10.0.10.10"},
        "gw-420100": {"host": "probe-420100", "ip": "10.0.11.10"},
    }
    plan = {
        p["name"]: p
        for p in probe_plan(
            pairs, probes, ["gw-420102"], {"gw-420102": "10.0.13.1", "gw-420100": "10.0.11.1"}
        )
    }
    assert plan["p1"] == {"name": "p1", "source": "probe-prov", "source_ip": "", "target": "10.0.11.10"}
    assert plan["p2"]["source"] == "probe-420100" and plan["p2"]["target"] == "10.0.13.1"
    assert plan["p3"]["source"] is None
