"""Baseline scenario: real sshd, chrony, sysctls, users, listeners, cleanup and the inspection report."""

from __future__ import annotations

import glob
import json
import os
import sys
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "server_ops"))

from chromium_render import count_colour, dump_dom, screenshot  # noqa: E402

testinfra_hosts = ["ansible://all"]
AMBER = "FFEB9C"


def _name(host):
    return host.backend.get_hostname()


def test_sshd_effective_settings(host):
    out = host.check_output("sshd -T -C user=root,host=x,addr=127.0.0.1")
    settings = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert settings["usedns"] == "no"
    assert settings["banner"] in ("/etc/issue", "/etc/issue.net")
    assert host.file("/etc/ssh/sshd_config.d/50-popdb-baseline.conf").contains("^DebianBanner no")
    # DebianBanner is not in `sshd -T`: read the identification string the running sshd sends.
    ident = host.check_output(
        "python3 -c \"import socket; s=socket.create_connection(('127.0.0.1', 22)); print(s.recv(256).decode())\""  # noqa: E501
    )
    assert ident.startswith("SSH-2.0-OpenSSH_") and "Debian" not in ident, ident


def test_chrony_runs_and_uses_the_lab_time_server(host):
    assert host.service("chrony").is_running
    assert host.service("chrony").is_enabled
    if _name(host) == "mgmt01":
        assert host.file("/etc/chrony/chrony.conf").contains("^local stratum 8")
        return
    mgmt = host.check_output("awk '/^server /{print $2}' /etc/chrony/chrony.conf")
    assert mgmt, "no time source configured"
    # The client must reach mgmt01's chronyd (reach register non-zero) within a minute.
    for _ in range(30):
        sources = host.check_output("chronyc -n sources")
        line = next((ln for ln in sources.splitlines() if mgmt in ln), "")
        if line and line.split()[3] != "0":
            break
        time.sleep(2)
    assert line and line.split()[3] != "0", sources


def test_timezone_and_locale(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Asia/Shanghai"
    assert host.check_output("date +%z") == "+0800"
    assert "zh_CN.utf8" in host.check_output("locale -a")


def test_sysctls_applied_where_permitted(host):
    assert host.check_output("sysctl -n net.core.somaxconn") == "4096"
    assert host.check_output("sysctl -n net.ipv4.tcp_keepalive_time") == "600"
    conf = host.file("/etc/sysctl.d/60-popdb-perf.conf").content_string
    # vm.* is read-only in the container: not applied, but stated with the value it would get.
    want = "1" if _name(host) == "prov-db01" else "10"
    assert f"# read-only here, not applied: vm.swappiness = {want}" in conf


def test_admin_user_keys_and_sudo(host):
    u = host.user("opsadmin")
    assert u.exists and "popdb-ops" in u.groups
    assert host.file("/home/opsadmin/.ssh/authorized_keys").contains("popdb-lab-opsadmin")
    assert host.run("visudo -cf /etc/sudoers.d/60-popdb-ops").rc == 0


def test_stray_listener_disabled(host):
    if _name(host) != "web01":
        pytest.skip("the stray listener lives on web01")
    svc = host.service("popdb-stray-listener")
    assert not svc.is_running and not svc.is_enabled
    assert ":8097" not in host.check_output("ss -Htln")


def test_cleanup_removes_old_rotated_log_only(host):
    assert not host.file("/var/log/popdb/app.log.3.gz").exists
    assert host.file("/var/log/popdb/app.log.1.gz").exists  # young
    assert host.file("/var/log/popdb-data/segment.1.gz").exists  # protected data directory
    assert host.file("/srv/popdb/data/base.1.gz").exists  # data directory, never declared
    assert not host.file("/var/backups/popdb/exports/old.csv.gz").exists  # declared, past retention


def _latest_history():
    files = sorted(glob.glob(os.path.join(ROOT, "out", "inspection", "history", "*.json")))
    assert files, "no inspection history"
    with open(files[-1], encoding="utf-8") as fh:
        return json.load(fh)


def test_inspection_flags_filled_disk_and_renders(host):
    if _name(host) != "prov-db01":
        pytest.skip("the filled filesystem is on prov-db01")
    hist = _latest_history()
    ev = hist["hosts"]["prov-db01"]["evaluation"]
    disk = next(d for d in ev["disks"] if d["mount"] == "/srv/popdb/fill")
    real = host.check_output("df --output=pcent /srv/popdb/fill | tail -1").strip().rstrip("%")
    assert disk["status"] == "amber"
    assert disk["used_pct"] == pytest.approx(87.5, abs=0.2)
    assert abs(disk["used_pct"] - float(real)) <= 1.0
    assert ev["status"] in ("amber", "red")
    html = os.path.join(ROOT, "out", "inspection", hist["run_id"], "inspection.html")
    dom = dump_dom(html)
    assert '<td class="s-amber num">87.5%</td>' in dom
    assert "/srv/popdb/fill" in dom
    _, _, px = screenshot(html)
    assert count_colour(px, AMBER) > 500


def test_cleanup_report_lists_expansion(host):
    if _name(host) != "prov-db01":
        pytest.skip("checked once")
    reports = sorted(glob.glob(os.path.join(ROOT, "out", "disk_cleanup", "cleanup-*.json")))
    assert reports
    with open(reports[-1], encoding="utf-8") as fh:
        rep = json.load(fh)
    assert [u["path"] for u in rep["prov-db01"]["expansion_needed"]] == ["/srv/popdb/fill"]
    assert os.path.exists(reports[-1][:-5] + ".html") and os.path.exists(reports[-1][:-5] + ".xlsx")
