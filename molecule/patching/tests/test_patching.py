"""Patching scenario: real apt on lab hosts, a held package, the reboot policy, the per-host report."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
testinfra_hosts = ["ansible://all"]


def _name(host):
    return host.backend.get_hostname()


def _report(name):
    with open(os.path.join(ROOT, "out", "patching", f"latest-{name}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def test_outdated_package_upgraded_and_reported(host):
    assert host.package("popdb-canary").version == "2.0"
    rep = _report(_name(host))
    base = os.path.join(ROOT, "out", "patching")
    # Runs holding this host's report: [-2] is converge (the upgrade), [-1] the idempotence run.
    runs = sorted(d for d in os.listdir(base) if os.path.exists(os.path.join(base, d, f"{_name(host)}.json")))
    with open(os.path.join(base, runs[-2], f"{_name(host)}.json"), encoding="utf-8") as fh:
        first = json.load(fh)
    assert {"name": "popdb-canary", "before": "1.0", "after": "2.0", "action": "upgraded"} in first["changes"]
    assert rep["changes"] == []  # second run: nothing left to do
    with open(os.path.join(base, runs[-2], f"{_name(host)}.txt"), encoding="utf-8") as fh:
        text = fh.read()
    assert "popdb-canary: 1.0 -> 2.0 (upgraded)" in text


def _converge_run(name):
    """The run directory of the converge (the run whose report for this host has the upgrade)."""
    base = os.path.join(ROOT, "out", "patching")
    runs = []
    for d in sorted(os.listdir(base)):
        path = os.path.join(base, d, f"{name}.json")
        if os.path.exists(path) and os.path.exists(os.path.join(base, d, "patching.html")):
            with open(path, encoding="utf-8") as fh:
                if json.load(fh)["changes"]:
                    runs.append(os.path.join(base, d))
    assert runs, f"no consolidated report with an upgrade of {name} under {base}"
    return runs[-1]


def test_consolidated_report_names_upgrade_and_hold(host):
    from openpyxl import load_workbook

    name = _name(host)
    run = _converge_run(name)
    with open(os.path.join(run, "patching.html"), encoding="utf-8") as fh:
        page = fh.read()
    assert '<html lang="zh-CN">' in page and "补丁报告" in page
    # one table row per upgraded package: host, package, before, after, before → after, action
    cells = [name, "popdb-canary", "1.0", "2.0", "1.0 → 2.0", "升级"]
    assert "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>" in page
    assert (
        f'<tr><td>{name}</td><td>postgresql-popdb-canary</td><td class="s-amber">保持(hold)，未升级</td></tr>'
        in page
    )
    assert "需要重启，策略 never：未重启" in page
    wb = load_workbook(os.path.join(run, "patching.xlsx"))
    upgraded = [tuple(c.value for c in row)[:4] for row in wb["已升级"].iter_rows(min_row=4)]
    assert (name, "popdb-canary", "1.0", "2.0") in upgraded
    assert not any(r[1] == "postgresql-popdb-canary" for r in upgraded if r[0] == name)
    held = [tuple(c.value for c in row) for row in wb["保持"].iter_rows(min_row=4)]
    assert (name, "postgresql-popdb-canary", "保持(hold)，未升级") in held
    checks = {row[0].value: row[1].value for row in wb["检查"].iter_rows(min_row=4)}
    assert checks[name].startswith("通过：") and "服务 ssh.service：active" in checks[name]
    assert os.path.exists(os.path.join(ROOT, "out", "patching", "latest.html"))


def test_held_package_stays(host):
    assert host.package("postgresql-popdb-canary").version == "1.0"
    assert "postgresql-popdb-canary" in host.check_output("apt-mark showhold").split()
    assert "postgresql-popdb-canary" in _report(_name(host))["held"]
    # apt still offers the newer version: it is the hold that keeps it back
    assert "2.0" in host.check_output("apt-cache policy postgresql-popdb-canary")


def test_reboot_policy_never_reports_without_rebooting(host):
    assert host.file("/var/run/reboot-required").exists
    assert host.check_output("cat /proc/sys/kernel/random/boot_id") == host.check_output(
        "cat /root/popdb-boot-id-before"
    )
    rep = _report(_name(host))
    assert rep["reboot_required"] is True and rep["rebooted"] is False
    assert rep["reboot_policy"] == "never" and "not rebooted" in rep["reboot_note"]


def test_reboot_policy_if_required_in_container_is_reported(host):
    if _name(host) != "web01":
        pytest.skip("run once")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    # The scenario's inventory directory (lab host vars, parent groups and group_vars), not the bare file.
    inv = os.environ.get("MOLECULE_INVENTORY_FILE")
    inv = os.path.dirname(inv) if inv else None
    cmd = ["ansible-playbook", os.path.join(ROOT, "playbooks", "patching.yml"), "--limit", "web01",
           "-e", "patching_reboot_policy=if_required", "-e", "patching_limit_patterns=['popdb-*']",
           "-e", "patching_min_free_mb=100", "--tags", "patching_reboot,patching_report"]  # fmt: skip
    if inv:
        cmd[1:1] = ["-i", inv]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    rep = _report("web01")
    assert rep["reboot_policy"] == "if_required" and rep["reboot_required"] is True
    assert rep["rebooted"] is False and "container" in rep["reboot_note"]
    assert host.check_output("cat /proc/sys/kernel/random/boot_id") == host.check_output(
        "cat /root/popdb-boot-id-before"
    )
