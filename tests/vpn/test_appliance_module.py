"""vpn_appliance_config against the project's stateful fake SSH devices (all three dialects)."""

from __future__ import annotations

import copy

import pytest
from fakes.netdev import FakeDevice, FakeNetwork

from vpn.helpers import MASTER, cfg_lines, module_args, run_module, small_topology

VENDORS = ("huawei_vrp", "hp_comware", "cisco_ios")
TOPO = small_topology(VENDORS)
GW_OF = {
    g["vendor"]: n for n, g in TOPO["gateways"].items() if g["kind"] == "appliance" and g["tier"] == "city"
}


def _device(vendor: str, **kw) -> FakeDevice:
    name = GW_OF[vendor]
    g = TOPO["gateways"][name]
    base = f"interface {g['wan_interface']}\n ip address {g['wan']} 255.255.255.0\n"
    return FakeDevice(name, vendor, config=base, **kw)


def _args(dev: FakeDevice, topology=TOPO, **kw) -> dict:
    return module_args(dev, topology, **kw)


_cfg_lines = cfg_lines


@pytest.fixture(params=VENDORS)
def device(request):
    dev = _device(request.param)
    with FakeNetwork([dev]):
        yield dev


def test_first_run_pushes_and_saves_second_run_pushes_nothing(device):
    r1 = run_module(_args(device))
    assert r1["changed"] is True and r1["saved"] is True, r1
    assert device.saves == 1
    pushed = _cfg_lines(device)
    pushed = pushed[: pushed.index("return" if device.dialect_name != "cisco_ios" else "end") + 1]
    assert len(pushed) > 10
    # What the module reports is what the device received (keys masked in the report only).
    assert pushed[-1] in ("return", "end")  # left configuration mode
    assert [x.strip() for x in r1["lines"] if "********" not in x] == [
        x for x in pushed[:-1] if "pre-shared-key" not in x
    ]
    assert device.saved == device.running
    # every peer of the gateway got an IKE peer / keyring with its remote address
    running = device.render()
    for peer in ("gw-prov", "gw-420102") if device.name == "gw-420100" else ("gw-prov",):
        assert peer in running
    assert MASTER not in str(r1)

    mark = len(device.log)
    r2 = run_module(_args(device))
    assert r2["changed"] is False and r2["lines"] == [] and r2["saved"] is False, r2
    assert _cfg_lines(device, mark) == []
    assert device.saves == 1


def test_check_mode_reports_lines_and_pushes_nothing(device):
    before = copy.deepcopy(device.running)
    r = run_module(_args(device), check=True, diff=True)
    assert r["changed"] is True and r["lines"], r
    assert "ike" in r["diff"]["after"] or "crypto" in r["diff"]["after"]
    assert "********" in r["diff"]["after"]
    assert _cfg_lines(device) == [] and device.saves == 0
    assert device.running == before


def test_changed_psk_replaces_old_key(device):
    run_module(_args(device))
    key_lines = [x for x in device.render().splitlines() if "pre-shared-key" in x]
    mark = len(device.log)
    pair = "--".join(sorted((device.name, "gw-prov")))
    r = run_module(_args(device, psk_overrides={pair: "Rotated-key-for-prov-0001"}), diff=True)
    assert r["changed"] is True and r["saved"] is True, r
    sent = _cfg_lines(device, mark)
    assert any("Rotated-key-for-prov-0001" in x for x in sent)
    assert "Rotated-key-for-prov-0001" not in str(r)  # masked in the result
    new_keys = [x for x in device.render().splitlines() if "pre-shared-key" in x]
    assert len(new_keys) == len(key_lines)  # replaced, not added
    assert sorted(new_keys) != sorted(key_lines)
    # only the prov peer's key block changed, the other peers' keys untouched
    assert len(set(new_keys) - set(key_lines)) == 1
    r2 = run_module(_args(device, psk_overrides={pair: "Rotated-key-for-prov-0001"}))
    assert r2["changed"] is False, r2


def test_rejected_line_fails_and_reports_applied_lines(device):
    reject = {"huawei_vrp": r"^remote-address", "hp_comware": r"^remote-address", "cisco_ios": r"^set peer"}
    device.reject = [__import__("re").compile(reject[device.dialect_name])]
    r = run_module(_args(device))
    assert r.get("failed") is True, r
    assert r["failed_line"].startswith(("remote-address", "set peer"))
    assert "Unrecognized" in r["device_error"] or "Invalid input" in r["device_error"]
    applied = r["applied"]
    sent = _cfg_lines(device)
    # exactly the lines before the rejected one were applied; nothing saved
    assert [x for x in sent[: len(applied)] if "pre-shared-key" not in x] == [
        x for x in applied if "***" not in x
    ]
    assert sent[len(applied)] == r["failed_line"]
    assert device.saves == 0 and device.saved != device.running
    assert "NOT saved" in r["msg"] and r["failed_line"] in r["msg"]


def test_unknown_gateway_and_bad_topology_fail_clearly():
    dev = _device("cisco_ios")
    r = run_module(_args(dev, gateway="gw-nope", port=1))
    assert r["failed"] and "gw-nope" in r["msg"]
    bad = copy.deepcopy(TOPO)
    bad["gateways"]["gw-420102"]["wan"] = "not-an-ip"
    r = run_module(_args(dev, topology=bad, port=1))
    assert r["failed"] and "gw-420102.wan" in r["msg"]


def test_ike_sa_state_parsed_with_project_templates():
    outputs = {
        "huawei_vrp": (
            "display ike sa",
            "    Conn-ID  Peer            VPN   Flag(s)                Phase\n"
            "  ---------------------------------------------------------------\n"
            "       16    198.51.100.1    0     RD|ST                  2\n"
            "       14    198.51.100.1    0     RD|ST                  1\n\n"
            "  Flag Description:\n  RD--READY   ST--STAYALIVE\n",
        ),
        "hp_comware": (
            "display ike sa",
            "    Connection-ID   Remote                Flag         DOI\n"
            "------------------------------------------------------------------\n"
            "    1               198.51.100.1          RD           IPsec\n"
            "Flags:\nRD--READY RL--REPLACED FD-FADING RK-REKEY\n",
        ),
        "cisco_ios": (
            "show crypto isakmp sa",
            "IPv4 Crypto ISAKMP SA\ndst             src             state          conn-id status\n"
            "198.51.100.1    198.51.100.12   QM_IDLE           1001 ACTIVE\n\nIPv6 Crypto ISAKMP SA\n",
        ),
    }
    devs = [_device(v, exec_outputs={outputs[v][0]: outputs[v][1]}) for v in VENDORS]
    with FakeNetwork(devs):
        for dev in devs:
            r = run_module(_args(dev, state="ike_sa"))
            assert r["changed"] is False and r["ike_sa"], r
            assert r["peers"]["gw-prov"] is True, (dev.dialect_name, r)
            assert all(v is False for k, v in r["peers"].items() if k != "gw-prov")
