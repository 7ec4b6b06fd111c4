"""The lab model: sizes, addressing, spec parsing and inventory rendering (no root needed)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "lab"))

from popdb_lab import model, system  # noqa: E402

SERVERS = {
    "province_db",
    "city_db",
    "web_app",
    "exchange",
    "national_frontend",
    "backup_storage",
    "management",
}


def _hosts(inv: dict, group: str) -> set[str]:
    """Hosts of a group in a YAML inventory, following children (groups may be nested or flat)."""
    nodes = _nodes(inv["all"], group, [])
    found: set[str] = set()
    for node in nodes:
        found |= set((node.get("hosts") or {}).keys())
        for child in node.get("children") or {}:
            found |= _hosts(inv, child)
    return found


def _nodes(node: dict, group: str, acc: list) -> list:
    for name, child in (node.get("children") or {}).items():
        if name == group and child:
            acc.append(child)
        _nodes(child or {}, group, acc)
    return acc


def _inv(size: str, lab_id: int = 3) -> dict:
    lab = model.build_lab(lab_id, model.size_spec(size))
    # through YAML, exactly as bin/lab writes it
    return yaml.safe_load(yaml.safe_dump(model.inventory(lab, "/k", "/c"), allow_unicode=True))


def _script(tmp_path, inv: dict, lab_id: str) -> dict:
    """Run the real inventory script against an inventory written under a fake repo root."""
    d = tmp_path / "repo"
    (d / "inventories" / "lab").mkdir(parents=True)
    (d / ".cache" / "lab" / lab_id).mkdir(parents=True)
    script = d / "inventories" / "lab" / "lab_inventory.py"
    script.write_text(open(os.path.join(ROOT, "inventories", "lab", "lab_inventory.py")).read())
    (d / ".cache" / "lab" / lab_id / "inventory.yml").write_text(yaml.safe_dump(inv, allow_unicode=True))
    out = subprocess.run(
        [sys.executable, str(script), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "POPDB_LAB_ID": lab_id},
    )
    return json.loads(out.stdout)


def test_small_size_matches_conventions():
    inv = _inv("small")
    assert _hosts(inv, "servers") == {
        "prov-db01", "city-db-420100", "city-db-420500", "web01", "exch01", "natl01", "bak01", "mgmt01",
    }  # fmt: skip
    assert _hosts(inv, "databases") == {"prov-db01", "city-db-420100", "city-db-420500"}
    assert _hosts(inv, "vpn_province") == {"gw-prov"}
    assert _hosts(inv, "vpn_city") == {"gw-420100", "gw-420500"}
    assert _hosts(inv, "vpn_county") == {"gw-420102", "gw-420506"}
    assert _hosts(inv, "vpn_linux") == _hosts(inv, "vpn_gateways")
    assert _hosts(inv, "lab_probes") == {f"probe-{g[3:]}" for g in _hosts(inv, "vpn_gateways")}
    hv = inv["all"]["hosts"]
    assert hv["gw-420102"]["vpn_parent"] == "gw-420100"
    assert hv["gw-420506"]["vpn_parent"] == "gw-420500"
    assert hv["city-db-420500"]["city_code"] == "420500"
    assert hv["city-db-420500"]["city_name"] == "宜昌市"


def test_full_size_is_the_28_production_servers_plus_gateways():
    inv = _inv("full")
    prod = yaml.safe_load(
        open(os.path.join(ROOT, "inventories", "production", "hosts.yml"), encoding="utf-8")
    )
    prod_servers = set()

    def walk(node):
        prod_servers.update((node.get("hosts") or {}).keys())
        for c in (node.get("children") or {}).values():
            walk(c or {})

    walk(prod["all"]["children"]["servers"])
    assert len(prod_servers) == 28
    assert _hosts(inv, "servers") == prod_servers
    for g in SERVERS:
        assert _hosts(inv, g) == _hosts(prod, g), g
    assert _hosts(inv, "vpn_gateways") == _hosts(_inv("small"), "vpn_gateways")
    codes = {inv["all"]["hosts"][h]["city_code"] for h in _hosts(inv, "city_db")}
    assert len(codes) == 17


@pytest.mark.parametrize("lab_id", [0, 7, 54])
def test_addressing(lab_id):
    lab = model.build_lab(lab_id, model.size_spec("full"))
    wan = ipaddress.ip_network(f"10.{200 + lab_id}.0.0/24")
    lab_net = ipaddress.ip_network(f"10.{200 + lab_id}.0.0/16")
    addrs = [h.address for h in lab.hosts]
    assert len(set(addrs)) == len(addrs) == 38
    assert lab.controller_wan_ip == f"10.{200 + lab_id}.0.1"
    for h in lab.hosts:
        assert ipaddress.ip_address(h.address) in lab_net
        if h.behind:  # probe: only a LAN address, default route = its gateway's LAN address
            gw = lab.host(h.behind)
            assert h.wan_ip is None
            assert h.lan_cidr == gw.lan_cidr
            assert h.gateway_ip == gw.lan_ip
            assert ipaddress.ip_address(h.lan_ip) in ipaddress.ip_network(gw.lan_cidr)
            assert lab.proxy_ip(h) == lab.controller_lan_ip(gw.lan_index)
        else:
            assert ipaddress.ip_address(h.wan_ip) in wan
            assert lab.proxy_ip(h) == lab.controller_wan_ip
        for side in "wl":
            assert len(lab.veth(h, side)) <= 15
        assert len(lab.netns(h)) < 64
    gws = [h for h in lab.hosts if h.is_gateway]
    assert [h.lan_ip for h in gws] == [f"10.{200 + lab_id}.{k}.1" for k in range(1, 6)]
    assert len({h.lan_cidr for h in gws}) == 5
    assert all(len(b) <= 15 for b in lab.bridges())
    assert len(lab.bridges()) == 6


def test_addresses_are_stable_for_the_same_spec():
    a = model.build_lab(1, model.size_spec("small"))
    b = model.build_lab(1, model.size_spec("small"))
    assert [(h.name, h.address) for h in a.hosts] == [(h.name, h.address) for h in b.hosts]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "no hosts"),
        ([{"name": "Bad_Name"}], "host #1: field 'name'"),
        ([{"name": "a"}, {"name": "a"}], "host a: field 'name' is duplicated"),
        ([{"name": "a", "groups": "web_app"}], "host a: field 'groups'"),
        ([{"name": "a", "lan": "yes"}], "host a: field 'lan'"),
        ([{"name": "a", "behind": "gw"}], "host a: field 'behind' names 'gw'"),
        ([{"name": "gw"}, {"name": "p", "behind": "gw"}], "not a gateway with lan: true"),
        ([{"name": "a", "colour": 1}], "host #1 (a): unknown field(s) colour"),
        ([{"name": "a", "lan": True, "behind": "a"}], "exclude each other"),
        ([{"name": "a", "vars": [1]}], "host a: field 'vars'"),
    ],
)
def test_bad_specs_are_refused_naming_host_and_field(entries, message):
    with pytest.raises(model.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.build_lab(1, entries)


@pytest.mark.parametrize("lab_id", [-1, 55, "1"])
def test_bad_lab_id(lab_id):
    with pytest.raises(model.SpecError, match="lab id"):
        model.build_lab(lab_id, [{"name": "a"}])


def test_unknown_size():
    with pytest.raises(model.SpecError, match="unknown lab size 'huge'"):
        model.size_spec("huge")


def test_spec_file_and_platforms(tmp_path):
    platforms = [
        {"name": "gw-a", "groups": ["vpn_city"], "lan": True, "image": "ignored"},
        {"name": "probe-a", "groups": ["lab_probes"], "behind": "gw-a"},
        {"name": "city-db-420100", "groups": ["city_db"], "vars": {"x": 1}},
    ]
    spec = model.spec_from_platforms(platforms)
    assert "image" not in spec["hosts"][0]
    p = tmp_path / "spec.yml"
    p.write_text(yaml.safe_dump(spec))
    lab = model.build_lab(2, model.spec_file(str(p)))
    assert lab.host("probe-a").address == "10.202.1.10"
    assert lab.host("gw-a").wan_ip == "10.202.0.10"
    assert lab.host("city-db-420100").vars == {"city_code": "420100", "city_name": "武汉市", "x": 1}
    bad = tmp_path / "bad.yml"
    bad.write_text("- name: a\n")
    with pytest.raises(model.SpecError, match="a mapping with a list 'hosts"):
        model.spec_file(str(bad))


def test_inventory_host_vars_and_ssh_config():
    lab = model.build_lab(4, model.size_spec("small"))
    inv = model.inventory(lab, "/key", "/cfg")
    hv = inv["all"]["hosts"]
    assert hv["gw-prov"] == {
        "ansible_host": "10.204.0.18", "lab_wan_ip": "10.204.0.18", "lab_lan_ip": "10.204.1.1",
        "lab_lan_cidr": "10.204.1.0/24",
    }  # fmt: skip
    assert hv["probe-prov"] == {
        "ansible_host": "10.204.1.10", "lab_lan_ip": "10.204.1.10", "lab_lan_cidr": "10.204.1.0/24",
        "lab_gateway": "gw-prov", "lab_gateway_ip": "10.204.1.1",
    }  # fmt: skip
    assert inv["all"]["vars"]["ansible_ssh_private_key_file"] == "/key"
    cfg = model.ssh_config(lab, "/key")
    assert "Host probe-prov\n  HostName 10.204.1.10" in cfg
    for line in (
        "IdentityFile /key",
        "StrictHostKeyChecking no",
        "UserKnownHostsFile /dev/null",
        "User root",
    ):
        assert line in cfg
    hj = model.hosts_json(lab)
    assert len(hj["hosts"]) == 18 and hj["bridges"]["plb4w"] == "10.204.0.1/24"


def test_inventory_script_reads_the_running_lab(tmp_path):
    inv = _inv("small", lab_id=5)
    out = _script(tmp_path, inv, "5")
    hv = out["_meta"]["hostvars"]
    assert len(hv) == 18
    assert hv["probe-420506"]["lab_gateway"] == "gw-420506"
    assert set(out["databases"]["children"]) == {"province_db", "city_db"}
    assert set(out["servers"]["children"]) >= {"databases", "web_app", "management"}
    assert out["city_db"]["hosts"] == ["city-db-420100", "city-db-420500"]
    assert out["all"]["vars"]["ansible_user"] == "root"


def test_inventory_script_without_a_lab_is_empty_and_warns(tmp_path):
    script = os.path.join(ROOT, "inventories", "lab", "lab_inventory.py")
    p = subprocess.run(
        [sys.executable, script, "--list"],
        capture_output=True,
        text=True,
        env={**os.environ, "POPDB_LAB_ID": "53"},
    )
    assert p.returncode == 0
    assert json.loads(p.stdout) == {"_meta": {"hostvars": {}}}
    assert "no lab 53 is up" in p.stderr


def test_guard_rules_cover_every_bridge():
    lab = model.build_lab(6, model.size_spec("small"))
    rules = system.guard_rules(lab)
    for br in lab.bridges():
        assert f'"{br}"' in rules
    assert "hook forward" in rules and "hook input" in rules
    assert "ip daddr != { 10.206.0.1, 10.206.1.254," in rules


def test_acng_config_only_debian():
    conf = system.acng_config(
        ["10.201.0.1", "10.201.1.254"],
        {"archive": "http://deb.debian.org/debian", "security": "http://deb.debian.org/debian-security"},
    )
    assert "BindAddress: 10.201.0.1 10.201.1.254\n" in conf
    assert "ForceManaged: 1" in conf
    assert "Remap-debrep: deb.debian.org/debian ; http://deb.debian.org/debian/" in conf
    assert "Remap-secdeb: deb.debian.org/debian-security ; http://deb.debian.org/debian-security/" in conf


def test_apt_mirrors_from_sources(tmp_path, monkeypatch):
    m = system.apt_mirrors()
    assert m["archive"].startswith("http://") and m["archive"].endswith("/debian")
    assert m["security"].endswith("/debian-security")


def test_not_root_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(system.LabError, match="must run as root"):
        system.preflight()


def test_missing_prerequisite_is_named(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real = system.shutil.which
    monkeypatch.setattr(system.shutil, "which", lambda c: None if c == "debootstrap" else real(c))
    with pytest.raises(system.LabError, match=r"debootstrap \(Debian package debootstrap\)"):
        system.preflight()


def test_cli_reports_errors_without_traceback(capsys, monkeypatch, tmp_path):
    from popdb_lab import cli

    spec = tmp_path / "s.yml"
    spec.write_text("hosts: [{name: a, behind: nowhere}]\n")
    assert cli.main(["up", "--spec", str(spec), "--id", "9"]) == 2
    assert "host a: field 'behind'" in capsys.readouterr().err
