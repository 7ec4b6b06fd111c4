"""popdb_vpn_topology: validation, required pairs, connections, keys, and the production data."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from ansible.module_utils.popdb_vpn_topology import (
    TopologyError,
    code_of,
    connections,
    inventory,
    pair_psk,
    peers_of,
    required_pairs,
    validate,
)

from vpn.helpers import MASTER, small_topology

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROD = os.path.join(ROOT, "inventories/production/group_vars/all/vpn_topology.yml")


def _prod():
    with open(PROD, encoding="utf-8") as fh:
        return yaml.safe_load(fh)["vpn_topology"]


def test_required_pairs_small():
    pairs = {(p.a, p.b, p.kind) for p in required_pairs(small_topology())}
    assert pairs == {
        ("gw-prov", "gw-420100", "province-city"),
        ("gw-prov", "gw-421100", "province-city"),
        ("gw-prov", "gw-422100", "province-city"),
        ("gw-420100", "gw-420102", "city-county"),
        ("gw-prov", "gw-420102", "province-county"),
    }
    assert peers_of(small_topology(), "gw-420102") == ["gw-420100", "gw-prov"]
    assert peers_of(small_topology(), "gw-421100") == ["gw-prov"]


def test_connections_are_direct_with_own_subnets_and_symmetric_keys():
    t = small_topology()
    county = {c["peer"]: c for c in connections(t, "gw-420102", MASTER)}
    prov = {c["peer"]: c for c in connections(t, "gw-prov", MASTER)}
    assert county["gw-prov"]["local_subnets"] == ["10.44.1.0/24", "10.44.2.0/24"]
    assert county["gw-prov"]["remote_subnets"] == ["10.42.0.0/22"]
    assert county["gw-prov"]["remote_wan"] == "198.51.100.1"
    assert prov["gw-420102"]["psk"] == county["gw-prov"]["psk"]  # both ends derive the same key
    assert prov["gw-420102"]["psk"] != prov["gw-420100"]["psk"]
    assert MASTER not in prov["gw-420102"]["psk"]


def test_psk_override_changes_only_that_pair():
    t = small_topology()
    base = {c["peer"]: c["psk"] for c in connections(t, "gw-prov", MASTER)}
    new = {c["peer"]: c["psk"] for c in connections(t, "gw-prov", MASTER, {"gw-420102--gw-prov": "x" * 20})}
    assert new["gw-420102"] == "x" * 20
    assert {k: v for k, v in new.items() if k != "gw-420102"} == {
        k: v for k, v in base.items() if k != "gw-420102"
    }
    with pytest.raises(TopologyError, match="shorter than 16"):
        pair_psk("short", "a", "b")


@pytest.mark.parametrize(
    "gw,field,value,message",
    [
        ("gw-420102", "parent", "gw-prov", "gw-420102.parent"),
        ("gw-420102", "wan", "999.1.1.1", "gw-420102.wan"),
        ("gw-420102", "subnets", ["10.43.1.0/24"], "overlaps 10.43.1.0/24 of gw-420100"),
        ("gw-420102", "subnets", ["10.44.1.1/24"], "gw-420102.subnets"),
        ("gw-420102", "id", 10, "already used"),
        ("gw-420102", "vendor", "juniper", "gw-420102.vendor"),
        ("gw-420100", "tier", "town", "gw-420100.tier"),
        ("gw-420100", "kind", "vm", "gw-420100.kind"),
    ],
)
def test_bad_data_named_by_gateway_and_field(gw, field, value, message):
    t = copy.deepcopy(small_topology())
    t["gateways"][gw][field] = value
    with pytest.raises(TopologyError) as exc:
        validate(t)
    assert message in str(exc.value)


def test_every_error_reported_at_once():
    t = copy.deepcopy(small_topology())
    t["gateways"]["gw-420102"]["wan"] = "x"
    t["gateways"]["gw-420100"]["wan_interface"] = ""
    with pytest.raises(TopologyError) as exc:
        validate(t)
    assert len(exc.value.errors) == 2


def test_production_topology_shape():
    t = _prod()
    gws = validate(t)
    tiers = [g["tier"] for g in gws.values()]
    assert tiers.count("province") == 1 and tiers.count("city") == 17 and tiers.count("county") == 99
    assert {g.get("vendor") for g in gws.values() if g["kind"] == "appliance"} == {
        "huawei_vrp",
        "hp_comware",
        "cisco_ios",
    }
    assert any(g["kind"] == "linux" for g in gws.values() if g["tier"] != "province")
    for name, g in gws.items():
        assert "code" not in g  # read from the name, never repeated
        if g["tier"] == "province":
            assert name == "gw-prov"
            continue
        assert len(code_of(name)) == 6, name
        if g["tier"] == "county":  # county codes sit under their parent city's code
            assert code_of(name)[:4] == code_of(g["parent"])[:4], name
    pairs = required_pairs(t)
    assert len(pairs) == 17 + 99 + 99
    assert len(peers_of(t, "gw-prov")) == 116


def test_production_inventory_file_matches_topology():
    """inventories/production/vpn_gateways.yml is generated from the topology (no hand-written copy)."""
    with open(os.path.join(ROOT, "inventories/production/vpn_gateways.yml"), encoding="utf-8") as fh:
        assert yaml.safe_load(fh) == inventory(_prod())


def test_cutover_connection_from_health_data():
    from ansible.module_utils.popdb_vpn_topology import cutover_connection

    t = copy.deepcopy(small_topology())
    with pytest.raises(TopologyError, match=r"gw-420102.health: missing"):
        cutover_connection(t, "gw-420102")
    with pytest.raises(TopologyError, match="only a city or county"):
        cutover_connection(t, "gw-prov")
    t["gateways"]["gw-420102"]["health"] = {
        "wan": "198.51.100.200",
        "subnets": ["10.60.1.0/24"],
        "peer": {"name": "hub", "wan": "x", "subnets": ["10.61.0.0/16"]},
    }
    with pytest.raises(TopologyError, match=r"gw-420102.health.peer.wan"):
        cutover_connection(t, "gw-420102")
    t["gateways"]["gw-420102"]["health"]["peer"]["wan"] = "198.51.100.250"
    c = cutover_connection(t, "gw-420102", MASTER)
    assert c["peer"] == "health-hub" and c["local_wan"] == "198.51.100.200"
    assert c["local_subnets"] == ["10.60.1.0/24"] and c["remote_subnets"] == ["10.61.0.0/16"]
    assert c["psk"] and c["psk"] not in {x["psk"] for x in connections(t, "gw-420102", MASTER)}
