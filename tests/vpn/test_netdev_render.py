"""popdb_netdev without a device: rendering, diff planning, key handling, TextFSM templates."""

from __future__ import annotations

import pytest
from ansible.module_utils.popdb_netdev import MASK, parse_ike_sa, parse_running, peer_up, plan, render
from ansible.module_utils.popdb_vpn_topology import connections

from vpn.helpers import MASTER, small_topology

T = small_topology()


def _desired(gw):
    return render(T["gateways"][gw]["vendor"], T["gateways"][gw], connections(T, gw, MASTER))


def _as_running(blocks, sep="#"):
    out = []
    for b in blocks:
        out += [sep, b.header] + [" " + c for c in b.children]
    return "\n".join(out + [sep])


@pytest.mark.parametrize("gw", ["gw-420100", "gw-421100", "gw-422100", "gw-420102"])
def test_empty_device_gets_everything_and_full_device_nothing(gw):
    vendor = T["gateways"][gw]["vendor"]
    desired = _desired(gw)
    p = plan(vendor, desired, "")
    assert p.changed
    assert all(MASK in x for x in p.display if "pre-shared-key" in x)
    assert any("pre-shared-key" in x and MASK not in x for x in p.lines)
    assert not plan(vendor, desired, _as_running(desired)).changed


def test_county_acl_has_every_local_remote_subnet_pair():
    desired = _desired("gw-420102")
    acl = next(b for b in desired if b.header == "ip access-list extended popdb-gw-prov")
    assert acl.children == [
        "permit ip 10.44.1.0 0.0.0.255 10.42.0.0 0.0.3.255",
        "permit ip 10.44.2.0 0.0.0.255 10.42.0.0 0.0.3.255",
    ]


def test_changed_remote_address_pushes_only_that_line_and_cisco_removes_old_peer():
    desired = _desired("gw-422100")
    running = _as_running(desired, "!").replace("set peer 198.51.100.1", "set peer 198.51.100.99")
    p = plan("cisco_ios", desired, running)
    assert p.lines == [
        "crypto map popdb 1 ipsec-isakmp",
        "no set peer 198.51.100.99",
        "set peer 198.51.100.1",
        "exit",
    ]
    assert p.removed == ["set peer 198.51.100.99"]


def test_encrypted_key_on_device_is_not_repushed_but_new_fingerprint_is():
    desired = _desired("gw-420100")
    running = _as_running(desired)
    enc = "\n".join(
        " pre-shared-key cipher %^%#abc%^%#" if x.startswith(" pre-shared-key") else x
        for x in running.splitlines()
    )
    assert not plan("huawei_vrp", desired, enc).changed
    stale = enc.replace("description popdb-psk-", "description popdb-psk-0")
    p = plan("huawei_vrp", desired, stale)
    assert [x for x in p.display if "pre-shared" in x] and all("%^%#" not in x for x in p.lines)


def test_parse_running_both_styles():
    vrp = "#\n sysname x\n#\nike peer a\n pre-shared-key cipher %^%#q%^%#\n remote-address 1.1.1.1\n#\nreturn"
    assert parse_running(vrp)["ike peer a"] == ["pre-shared-key cipher %^%#q%^%#", "remote-address 1.1.1.1"]
    assert "sysname x" in parse_running(vrp)
    ios = "Building configuration...\n!\ncrypto map m 1 ipsec-isakmp\n set peer 1.1.1.1\n!\nend"
    assert parse_running(ios) == {"crypto map m 1 ipsec-isakmp": ["set peer 1.1.1.1"]}


def test_textfsm_templates():
    vrp_new = (
        "  Number of IKE SA : 2\n"
        "  -----------------------------------------------------------------------------\n"
        "  Conn-ID    Peer                VPN    Flag(s)    Phase  RemoteType  RemoteID\n"
        "  -----------------------------------------------------------------------------\n"
        "  10         198.51.100.1:500           RD|ST      v2:2   IP          198.51.100.1\n"
        "  9          198.51.100.1:500           RD|ST      v2:1   IP          198.51.100.1\n"
        "  8          198.51.100.9:500    vpn1   RL         v2:1   IP          198.51.100.9\n\n"
        "  Flag Description:\n  RD--READY   ST--STAYALIVE\n"
    )
    rows = parse_ike_sa("huawei_vrp", vrp_new)
    # the VPN column may be empty: the peer, flags and phase must still land in the right fields
    assert [(r["peer"], r["flags"], r["phase"]) for r in rows][:2] == [
        ("198.51.100.1", "RD|ST", "v2:2"),
        ("198.51.100.1", "RD|ST", "v2:1"),
    ]
    assert peer_up("huawei_vrp", rows, "198.51.100.1") and not peer_up("huawei_vrp", rows, "198.51.100.9")
    h3c = (
        "    Connection-ID   Remote                Flag         DOI\n"
        "------------------------------------------------------------------\n"
        "    1               198.51.100.1          RD           IPsec\n"
        "    2               198.51.100.7          Unknown      IPsec\n"
        "Flags:\nRD--READY RL--REPLACED FD-FADING RK-REKEY\n"
    )
    rows = parse_ike_sa("hp_comware", h3c)
    assert (
        len(rows) == 2
        and peer_up("hp_comware", rows, "198.51.100.1")
        and not peer_up("hp_comware", rows, "198.51.100.7")
    )
    ios = (
        "IPv4 Crypto ISAKMP SA\ndst             src             state          conn-id status\n"
        "198.51.100.1    198.51.100.12   QM_IDLE           1001 ACTIVE\n"
        "198.51.100.5    198.51.100.12   MM_NO_STATE       1002 ACTIVE\n\nIPv6 Crypto ISAKMP SA\n"
    )
    rows = parse_ike_sa("cisco_ios", ios)
    assert (
        len(rows) == 2
        and peer_up("cisco_ios", rows, "198.51.100.1")
        and not peer_up("cisco_ios", rows, "198.51.100.5")
    )
