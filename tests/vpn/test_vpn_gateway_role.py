"""Role vpn_gateway: templates render valid swanctl files for every gateway; the checker refuses bad ones."""

from __future__ import annotations

import os
import subprocess
import sys

import jinja2
import pytest
from ansible.module_utils.popdb_vpn_topology import connections

from vpn.helpers import MASTER

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, "roles/vpn_gateway")
CHECKER = os.path.join(ROLE, "files/swanctl_check.py")

LAB = {  # the lab's shape (addresses as bin/lab would give them)
    "gateways": {
        "gw-prov": {
            "tier": "province",
            "id": 1,
            "kind": "linux",
            "wan": "10.204.0.11",
            "subnets": ["10.204.10.0/24"],
        },
        "gw-420100": {
            "tier": "city",
            "id": 10,
            "parent": "gw-prov",
            "wan": "10.204.0.12",
            "subnets": ["10.204.11.0/24"],
        },
        "gw-420500": {
            "tier": "city",
            "id": 13,
            "parent": "gw-prov",
            "wan": "10.204.0.13",
            "subnets": ["10.204.12.0/24"],
        },
        "gw-420102": {
            "tier": "county",
            "id": 100,
            "parent": "gw-420100",
            "wan": "10.204.0.14",
            "subnets": ["10.204.13.0/24"],
        },
        "gw-420506": {
            "tier": "county",
            "id": 131,
            "parent": "gw-420500",
            "wan": "10.204.0.15",
            "subnets": ["10.204.14.0/24"],
        },
    }
}
LAN_IP = {n: g["subnets"][0].replace(".0/24", ".1") for n, g in LAB["gateways"].items()}


def _render(name: str, item: dict, backend: str = "kernel-libipsec") -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.join(ROLE, "templates")), keep_trailing_newline=True
    )
    return env.get_template(name).render(
        item=item,
        ansible_managed="managed",
        vpn_gateway_name="gw",
        vpn_gateway_backend=backend,
        vpn_gateway_ike_version=2,
        vpn_gateway_ike_proposals="aes256-sha256-modp2048",
        vpn_gateway_esp_proposals="aes256-sha256",
        vpn_gateway_dpd_delay="5s",
        vpn_gateway_rekey_time="4h",
        vpn_gateway_keyingtries=0,
        vpn_gateway_start_action="start",
        vpn_gateway_dpd_action="restart",
        vpn_gateway_close_action="start",
    )


def _check(tmp_path, text: str, *args: str) -> subprocess.CompletedProcess:
    f = tmp_path / "x.conf"
    f.write_text(text)
    return subprocess.run(
        [sys.executable, CHECKER, *args, str(f)], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("gw", sorted(LAB["gateways"]))
def test_rendered_files_pass_the_checker(tmp_path, gw):
    conns = connections(LAB, gw, MASTER)
    assert conns
    for c in conns:
        conf = _render("connection.conf.j2", c)
        assert "encap = yes" in conf and "start_action = start" in conf
        r = _check(tmp_path, conf, "--gateway-ip", LAN_IP[gw])
        assert r.returncode == 0, r.stderr
        sec = _render("secret.conf.j2", c)
        assert c["psk"] in sec
        assert _check(tmp_path, sec).returncode == 0
    assert "encap" not in _render("connection.conf.j2", conns[0], backend="kernel")


def test_county_has_direct_tunnels_to_city_and_province():
    conns = {c["peer"]: c for c in connections(LAB, "gw-420102", MASTER)}
    assert set(conns) == {"gw-prov", "gw-420100"}
    assert conns["gw-prov"]["local_subnets"] == ["10.204.13.0/24"]  # own LAN only: no relay via the city


def test_checker_refuses_bad_files(tmp_path):
    c = connections(LAB, "gw-420102", MASTER)[0]
    good = _render("connection.conf.j2", c)
    r = _check(tmp_path, good, "--gateway-ip", "10.204.99.1")
    assert r.returncode == 1 and "does not contain the gateway's own address" in r.stderr
    r = _check(tmp_path, good.replace("remote_ts = 10.204.", "remote_ts = 10.999."))
    assert r.returncode == 1 and "remote_ts" in r.stderr
    r = _check(tmp_path, good.rsplit("}", 1)[0])
    assert r.returncode == 1 and "unbalanced" in r.stderr
    r = _check(tmp_path, good.replace("    local_addrs", "    # local_addrs"))
    assert r.returncode == 1 and "local_addrs: missing" in r.stderr
    r = _check(tmp_path, _render("secret.conf.j2", {**c, "psk": ""}))
    assert r.returncode == 1 and "secret: missing or empty" in r.stderr
