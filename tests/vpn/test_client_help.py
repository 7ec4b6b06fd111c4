"""Client help: township sheets from the inventory, and the self-check script's plain-word verdicts."""

from __future__ import annotations

import importlib.util
import os
import socket

import pytest
import yaml
from ansible.module_utils.popdb_vpn_topology import TopologyError, township_sheet

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("vpn_selfcheck", os.path.join(ROOT, "files/vpn_selfcheck.py"))
selfcheck = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(selfcheck)


def _prod():
    base = os.path.join(ROOT, "inventories/production/group_vars/all")
    with open(os.path.join(base, "vpn_topology.yml"), encoding="utf-8") as fh:
        topo = yaml.safe_load(fh)["vpn_topology"]
    with open(os.path.join(base, "vpn_townships.yml"), encoding="utf-8") as fh:
        return topo, yaml.safe_load(fh)


def test_every_production_township_has_a_valid_sheet():
    topo, data = _prod()
    n = 0
    for county, sites in data["vpn_townships"].items():
        for site in sites:
            s = township_sheet(topo, county, site, data["vpn_client_target"])
            assert s["selfcheck"]["subnet"] == site["subnet"] and s["gateway_ip"].startswith(
                site["subnet"][:6]
            )
            n += 1
    assert n >= 3


def test_site_outside_the_county_subnets_is_refused_with_its_name():
    topo, data = _prod()
    with pytest.raises(TopologyError, match=r"vpn_townships.gw-420102.X.subnet: 10.99.0.0/27 is not inside"):
        township_sheet(topo, "gw-420102", {"code": "X", "subnet": "10.99.0.0/27"}, data["vpn_client_target"])


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    yield srv.getsockname()[1]
    srv.close()


def _cfg(port, **kw):
    return {
        "township": "测试镇",
        "subnet": "127.0.0.0/8",
        "gateway": "127.0.0.1",
        "tunnel_probe": "127.0.0.2",
        "target_host": "127.0.0.1",
        "target_port": port,
        **kw,
    }


def test_selfcheck_all_pass(listener):
    lines = []
    assert selfcheck.run(_cfg(listener), out=lines.append) == 0
    assert "全部正常" in lines[-1]


def test_selfcheck_names_the_failing_step(listener, monkeypatch):
    lines = []
    assert selfcheck.run(_cfg(listener, subnet="10.44.1.64/27"), out=lines.append) == 1
    assert "本机地址" in lines[1] and "失败" in lines[1]
    real_ping = selfcheck.ping
    monkeypatch.setattr(selfcheck, "ping", lambda h, timeout_s=2: h != "127.0.0.2" and real_ping(h))
    lines = []
    assert selfcheck.run(_cfg(listener), out=lines.append) == 3
    assert any("隧道问题" in x for x in lines)
    monkeypatch.setattr(selfcheck, "ping", real_ping)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    lines = []
    assert selfcheck.run(_cfg(port), out=lines.append) == 4
    assert "没有响应" in lines[-2]
