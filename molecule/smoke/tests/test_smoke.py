"""Smoke checks on every lab host: identity, sshd, python, the converge marker, and isolation."""

from __future__ import annotations

import os

import pytest
import testinfra.utils.ansible_runner

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
HOSTS = RUNNER.get_hosts("all")
testinfra_hosts = HOSTS


def test_hostname_is_inventory_name(host):
    name = host.backend.get_hostname()
    assert host.check_output("hostname") == name
    assert host.file("/etc/hostname").content_string.strip() == name


def test_machine_ids_are_distinct():
    ids = {}
    for name in HOSTS:
        h = testinfra.get_host(f"ansible://{name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")
        ids[name] = h.file("/etc/machine-id").content_string.strip()
    assert all(len(v) == 32 for v in ids.values()), ids
    assert len(set(ids.values())) == len(HOSTS), ids


def test_sshd_running(host):
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening


def test_python3(host):
    assert host.run("python3 -c 'import sys; print(sys.version_info[:2])'").stdout.strip() == "(3, 11)"


def test_converge_marker(host):
    marker = host.file("/etc/popdb-lab-smoke")
    assert marker.exists
    assert f"host={host.backend.get_hostname()}" in marker.content_string
    assert "virtualization=container" in marker.content_string


def test_no_default_route_except_probes(host):
    hv = host.ansible.get_variables()
    routes = host.check_output("ip -4 route show default")
    if "lab_probes" in hv["group_names"]:
        assert routes.startswith(f"default via {hv['lab_gateway_ip']} "), routes
    else:
        assert routes == "", routes


@pytest.mark.parametrize("target", ["1.1.1.1", "8.8.8.8"])
def test_cannot_reach_internet(host, target):
    r = host.run(f"ping -c1 -W1 {target}")
    assert r.rc != 0
    r = host.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{target}/80'")
    assert r.rc != 0


def test_cannot_reach_controller_outside_lab(host):
    """Even with a route forced through the controller, its non-lab addresses are refused."""
    hv = host.ansible.get_variables()
    if "lab_probes" in hv["group_names"]:
        pytest.skip("probes have no WAN interface; their gateway is another lab host")
    ctrl = hv["lab_controller_ip"]
    ext = os.environ.get("POPDB_SMOKE_CONTROLLER_EXTERNAL_IP") or _controller_external_ip()
    host.run(f"ip route replace {ext}/32 via {ctrl}")
    host.run(f"ip route replace 1.1.1.1/32 via {ctrl}")
    try:
        assert host.run(f"ping -c1 -W1 {ext}").rc != 0
        assert host.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{ext}/22'").rc != 0
        assert host.run("timeout 3 bash -c 'exec 3<>/dev/tcp/1.1.1.1/80'").rc != 0
        assert host.run(f"ping -c1 -W1 {ctrl}").rc == 0  # the lab address itself answers
    finally:
        host.run(f"ip route del {ext}/32 via {ctrl}")
        host.run(f"ip route del 1.1.1.1/32 via {ctrl}")


def _controller_external_ip() -> str:
    import json
    import subprocess

    data = json.loads(subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True).stdout)
    for li in data:
        if li["ifname"] == "lo" or li["ifname"].startswith(("plb", "pv")):
            continue
        for a in li.get("addr_info", []):
            if a["family"] == "inet" and not a["local"].startswith("10.2"):
                return a["local"]
    pytest.skip("the controller has no non-lab IPv4 address")


FETCH = """python3 -c '
import sys, urllib.request as u
try:
    r = u.build_opener(u.ProxyHandler({"http": sys.argv[1]})).open(sys.argv[2], timeout=60)
    print(r.status)
except u.HTTPError as e:
    print(e.code)
' """


def test_apt_proxy_serves_debian_only(host):
    """The lab's apt proxy serves the Debian archive and refuses any other destination."""
    proxy = host.file("/etc/apt/apt.conf.d/01popdb-lab-proxy").content_string.split('"')[1]
    release = "http://deb.debian.org/debian/dists/bookworm/Release"
    assert host.check_output(FETCH + f"{proxy} {release}") == "200"
    assert host.check_output(FETCH + f"{proxy} http://example.com/") == "403"
    assert host.check_output(FETCH + f"{proxy} http://ftp.gnu.org/gnu/") == "403"
    direct = host.run(
        f"timeout 5 python3 -c 'import urllib.request as u; u.urlopen(\"{release}\", timeout=3)'"
    )
    assert direct.rc != 0  # no DNS, no route: only through the proxy
