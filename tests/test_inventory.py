"""The production inventory is the real estate as data: check its shape, not just that it parses."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CITIES = {
    "420100": "武汉",
    "420200": "黄石",
    "420300": "十堰",
    "420500": "宜昌",
    "420600": "襄阳",
    "420700": "鄂州",
    "420800": "荆门",
    "420900": "孝感",
    "421000": "荆州",
    "421100": "黄冈",
    "421200": "咸宁",
    "421300": "随州",
    "422800": "恩施",
    "429004": "仙桃",
    "429005": "潜江",
    "429006": "天门",
    "429021": "神农架",
}
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


@pytest.fixture(scope="module")
def production() -> dict:
    out = subprocess.run(
        ["ansible-inventory", "-i", "inventories/production", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")},
    ).stdout
    return json.loads(out)


def _hosts(inv: dict, group: str) -> set[str]:
    g = inv.get(group, {})
    found = set(g.get("hosts", []))
    for child in g.get("children", []):
        found |= _hosts(inv, child)
    return found


def test_28_servers_by_function(production):
    servers = _hosts(production, "servers")
    assert len(servers) == 28
    for group in (
        "province_db",
        "city_db",
        "web_app",
        "exchange",
        "national_frontend",
        "backup_storage",
        "management",
    ):
        assert _hosts(production, group), f"group {group} is empty"
    assert _hosts(production, "databases") == _hosts(production, "province_db") | _hosts(
        production, "city_db"
    )


def test_17_city_databases_keyed_by_real_division_codes(production):
    hv = production["_meta"]["hostvars"]
    cities = {hv[h]["city_code"]: hv[h]["city_name"] for h in _hosts(production, "city_db")}
    assert set(cities) == set(CITIES)
    for code, short in CITIES.items():
        assert cities[code].startswith(short), (code, cities[code])
        assert f"city-db-{code}" in _hosts(production, "city_db")


def test_addresses_are_documentation_placeholders(production):
    hv = production["_meta"]["hostvars"]
    for h in _hosts(production, "servers"):
        addr = ipaddress.ip_address(hv[h]["ansible_host"])
        assert any(addr in n for n in DOC_NETS), f"{h}: {addr} is not a documentation-range placeholder"
