"""vpn_appliance_config removes what it configured for a peer that left the topology - and nothing else.

Against the project's stateful fake SSH devices, for all three dialects: each city appliance has a county
that departs; the operator's own (unmanaged) IPsec configuration on the device must survive untouched.
"""

from __future__ import annotations

import copy

import pytest
from fakes.netdev import FakeDevice, FakeNetwork

from vpn.helpers import cfg_lines, module_args, run_module, small_topology

VENDORS = ("huawei_vrp", "hp_comware", "cisco_ios")
BASE = small_topology(VENDORS)
CITY = {
    g["vendor"]: n for n, g in BASE["gateways"].items() if g["kind"] == "appliance" and g["tier"] == "city"
}
# One county per city, so every dialect has a peer that can depart (gw-420102 already exists).
FULL = copy.deepcopy(BASE)
for _i, (_county, _city) in enumerate((("gw-421102", "gw-421100"), ("gw-422102", "gw-422100"))):
    FULL["gateways"][_county] = {
        "tier": "county",
        "id": 101 + _i,
        "parent": _city,
        "kind": "linux",
        "wan": f"198.51.100.{101 + _i}",
        "subnets": [f"10.44.{11 + _i}.0/24"],
    }
DEPARTING = {"huawei_vrp": "gw-420102", "hp_comware": "gw-421102", "cisco_ios": "gw-422102"}
# What the module created for the departing peer, in the order it must be removed.
REMOVED = {
    "huawei_vrp": ["ipsec policy popdb 100 isakmp", "ike peer gw-420102", "acl number 3100"],
    "hp_comware": [
        "ipsec policy popdb 101 isakmp",
        "ike profile ip-gw-421102",
        "ike keychain kc-gw-421102",
        "acl advanced 3101",
    ],
    "cisco_ios": [
        "crypto map popdb 102 ipsec-isakmp",
        "crypto isakmp profile ip-gw-422102",
        "crypto keyring kr-gw-422102",
        "ip access-list extended popdb-gw-422102",
    ],
}
UNDO = {
    "huawei_vrp": ["undo ipsec policy popdb 100", "undo ike peer gw-420102", "undo acl number 3100"],
    "hp_comware": [
        "undo ipsec policy popdb 101",
        "undo ike profile ip-gw-421102",
        "undo ike keychain kc-gw-421102",
        "undo acl advanced 3101",
    ],
    "cisco_ios": [
        "no crypto map popdb 102",
        "no crypto isakmp profile ip-gw-422102",
        "no crypto keyring kr-gw-422102",
        "no ip access-list extended popdb-gw-422102",
    ],
}
# The operator's own IPsec configuration: same kinds of objects (some even named like the module's), but
# without the module's fingerprint line or outside its `popdb` policy - never removed.
OPERATOR = {
    "huawei_vrp": (
        "acl number 3999\n rule 5 permit ip source 10.9.0.0 0.0.0.255 destination 10.8.0.0 0.0.0.255\n"
        "ike peer legacy\n pre-shared-key cipher Legacy-key-123\n remote-address 203.0.113.9\n"
        "ipsec policy other 1 isakmp\n security acl 3999\n ike-peer legacy\n"
    ),
    "hp_comware": (
        "acl advanced 3999\n rule 5 permit ip source 10.9.0.0 0.0.0.255 destination 10.8.0.0 0.0.0.255\n"
        "ike keychain kc-legacy\n"
        " pre-shared-key address 203.0.113.9 255.255.255.255 key simple Legacy-key-1\n"
        "ike profile ip-legacy\n keychain kc-legacy\n"
        " match remote identity address 203.0.113.9 255.255.255.255\n"
        "ipsec policy other 1 isakmp\n security acl 3999\n ike-profile ip-legacy\n"
        " remote-address 203.0.113.9\n"
    ),
    "cisco_ios": (
        "crypto keyring kr-legacy\n pre-shared-key address 203.0.113.9 key Legacy-key-1\n"
        "crypto isakmp profile ip-legacy\n keyring kr-legacy\n"
        "ip access-list extended legacy\n permit ip 10.9.0.0 0.0.0.255 10.8.0.0 0.0.0.255\n"
        "crypto map other 1 ipsec-isakmp\n set peer 203.0.113.9\n set isakmp-profile ip-legacy\n"
        " match address legacy\n"
    ),
}
# An operator block that refers to the departing peer's object (which must then be kept).
REFERRER = {
    "huawei_vrp": ("ipsec policy other 2 isakmp\n ike-peer gw-420102\n", ["ike peer gw-420102"]),
    "hp_comware": (
        "ipsec policy other 2 isakmp\n ike-profile ip-gw-421102\n",
        ["ike profile ip-gw-421102", "ike keychain kc-gw-421102"],  # the kept profile still uses its keychain
    ),
    "cisco_ios": (
        "crypto map other 2 ipsec-isakmp\n set isakmp-profile ip-gw-422102\n",
        ["crypto isakmp profile ip-gw-422102", "crypto keyring kr-gw-422102"],
    ),
}


def _without(peer: str) -> dict:
    topo = copy.deepcopy(FULL)
    del topo["gateways"][peer]
    return topo


def _device(vendor: str, extra: str = "") -> FakeDevice:
    g = BASE["gateways"][CITY[vendor]]
    base = f"interface {g['wan_interface']}\n ip address {g['wan']} 255.255.255.0\n"
    return FakeDevice(CITY[vendor], vendor, config=base + OPERATOR[vendor] + extra)


def _args(dev: FakeDevice, topology: dict, **kw) -> dict:
    return module_args(dev, topology, **kw)


_cfg_lines = cfg_lines


def _blocks(dev: FakeDevice, headers) -> list:
    return [copy.deepcopy(b) for b in dev.running if b[0] in headers]


def _operator_headers(dev: FakeDevice) -> list[str]:
    return [b[0] for b in dev.parse(OPERATOR[dev.dialect_name])]


@pytest.mark.parametrize("vendor", VENDORS)
def test_departed_peer_removed_check_diff_first_then_only_its_lines(vendor):
    dev = _device(vendor)
    peer = DEPARTING[vendor]
    wan = FULL["gateways"][peer]["wan"]
    with FakeNetwork([dev]):
        r0 = run_module(_args(dev, FULL))
        assert r0["changed"] is True and r0["removed"] == [], r0
        assert peer in dev.render() and wan in dev.render()
        operator_before = _blocks(dev, _operator_headers(dev))
        assert len(operator_before) == len(_operator_headers(dev))
        kept_headers = [b[0] for b in dev.running if b[0] not in REMOVED[vendor]]
        kept_before = _blocks(dev, kept_headers)

        # Check mode + diff: the removal is announced, nothing is sent.
        mark, saves = len(dev.log), dev.saves
        rc = run_module(_args(dev, _without(peer)), check=True, diff=True)
        assert rc["changed"] is True and rc["removed"] == REMOVED[vendor] and rc["kept"] == [], rc
        assert rc["lines"] == UNDO[vendor], rc["lines"]  # nothing else changes on the device
        for header in REMOVED[vendor]:
            assert header in rc["diff"]["before"]
        assert wan in rc["diff"]["before"]
        for undo in UNDO[vendor]:
            assert undo in rc["diff"]["after"]
        assert "Legacy-key" not in str(rc)
        assert "pre-shared-key" not in rc["diff"]["before"] or "********" in rc["diff"]["before"]
        assert _cfg_lines(dev, mark) == [] and dev.saves == saves

        # Real run: exactly the undo lines are sent, then saved; the peer leaves no trace.
        mark = len(dev.log)
        r1 = run_module(_args(dev, _without(peer)))
        assert r1["changed"] is True and r1["saved"] is True and r1["removed"] == REMOVED[vendor], r1
        sent = [x for x in _cfg_lines(dev, mark) if x]
        assert sent[: sent.index("end" if vendor == "cisco_ios" else "return")] == UNDO[vendor]
        assert dev.saves == saves + 1 and dev.saved == dev.running
        running = dev.render()
        assert peer not in running and wan not in running
        for header in REMOVED[vendor]:
            assert dev.block(header) is None
        # The operator's configuration and the remaining peers' blocks are untouched.
        assert _blocks(dev, _operator_headers(dev)) == operator_before
        assert _blocks(dev, kept_headers) == kept_before

        # Converged: a second run changes nothing.
        mark = len(dev.log)
        r2 = run_module(_args(dev, _without(peer)))
        assert r2["changed"] is False and r2["lines"] == [] and r2["removed"] == [], r2
        assert _cfg_lines(dev, mark) == [] and dev.saves == saves + 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_departed_peer_object_still_referenced_is_kept_and_reported(vendor):
    extra, kept = REFERRER[vendor]
    dev = _device(vendor, extra)
    peer = DEPARTING[vendor]
    with FakeNetwork([dev]):
        run_module(_args(dev, FULL))
        r = run_module(_args(dev, _without(peer)))
        assert r["changed"] is True, r
        assert sorted(r["kept"]) == sorted(kept), r
        assert r["removed"] == [h for h in REMOVED[vendor] if h not in kept], r
        assert any(kept[0] in str(w) for w in r.get("warnings", [])), r
        for header in kept:
            assert dev.block(header) is not None
        for header in r["removed"]:
            assert dev.block(header) is None
        r2 = run_module(_args(dev, _without(peer)))
        assert r2["changed"] is False and r2["kept"] == sorted(kept, key=kept.index), r2


@pytest.mark.parametrize("vendor", VENDORS)
def test_nothing_departed_nothing_removed_even_with_lookalike_operator_objects(vendor):
    dev = _device(vendor)
    with FakeNetwork([dev]):
        run_module(_args(dev, FULL))
        before = copy.deepcopy(dev.running)
        r = run_module(_args(dev, FULL), check=True, diff=True)
        assert r["changed"] is False and r["removed"] == [] and r["kept"] == [], r
        # Even with every peer of the gateway gone from the topology the operator's objects stay.
        city = CITY[vendor]
        topo = copy.deepcopy(FULL)
        for name, g in list(topo["gateways"].items()):
            if name != city and g["tier"] != "province" and g.get("parent") == city:
                del topo["gateways"][name]
        r = run_module(_args(dev, topo), check=True)
        assert DEPARTING[vendor] in " ".join(r["removed"]), r
        assert not any("legacy" in h or " other " in h or "3999" in h for h in r["removed"]), r
        assert dev.running == before
