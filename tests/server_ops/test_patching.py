"""popdb_patching: apt simulation parsing, scope and hold selection, version diff."""

from __future__ import annotations

import pytest
from ansible.module_utils.popdb_patching import (
    check_results,
    parse_simulation,
    reboot_action,
    render_text,
    report_sections,
    select,
    version_diff,
)
from ansible.module_utils.popdb_report import write_report
from openpyxl import load_workbook

SIM = """NOTE: This is only a simulation!
Inst libssl3 [3.0.11-1~deb12u1] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable-updates [all])
Inst postgresql-15 [15.8-0+deb12u1] (15.13-0+deb12u1 Debian-Security:12/stable-security [amd64])
Inst newdep (1.0 Debian:12.11/stable [amd64])
Conf libssl3 (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
"""


def test_parse():
    ups = parse_simulation(SIM)
    assert [u["name"] for u in ups] == ["libssl3", "tzdata", "postgresql-15", "newdep"]
    assert ups[0]["from"] == "3.0.11-1~deb12u1" and ups[0]["to"] == "3.0.15-1~deb12u1" and ups[0]["security"]
    assert not ups[1]["security"] and ups[3]["new"]


def test_select_scope_and_hold():
    ups = parse_simulation(SIM)
    assert [u["name"] for u in select(ups, "security", ["postgresql*"])] == ["libssl3"]
    assert [u["name"] for u in select(ups, "full", ["postgresql*"])] == ["libssl3", "tzdata"]
    assert [u["name"] for u in select(ups, "full", [])] == ["libssl3", "tzdata", "postgresql-15"]
    with pytest.raises(ValueError, match="scope 'all'"):
        select(ups, "all", [])


def test_version_diff_and_text():
    d = version_diff({"a": "1", "b": "1", "c": "1"}, {"a": "2", "b": "1", "n": "1"})
    assert d == [
        {"name": "a", "before": "1", "after": "2", "action": "upgraded"},
        {"name": "c", "before": "1", "after": None, "action": "removed"},
        {"name": "n", "before": None, "after": "1", "action": "installed"},
    ]
    txt = render_text(
        {
            "host": "h",
            "time": "t",
            "scope": "full",
            "reboot_policy": "never",
            "reboot_required": True,
            "rebooted": False,
            "held": ["postgresql-15"],
            "changes": d,
        }  # fmt: skip
    )
    assert "需要重启: 是" in txt and "a: 1 -> 2 (upgraded)" in txt


def _report(**kw):
    rep = {
        "host": "web01",
        "time": "2026-11-29 06:00:00",
        "scope": "security",
        "check_mode": False,
        "changes": [{"name": "popdb-canary", "before": "1.0", "after": "2.0", "action": "upgraded"}],
        "held": ["postgresql-popdb-canary"],
        "reboot_policy": "never",
        "reboot_required": True,
        "rebooted": False,
        "reboot_note": "policy never: reboot required, not rebooted",
        "checks": {"pre": [], "post": []},
    }
    rep.update(kw)
    return rep


REGS = {
    "df": {
        "results": [
            {
                "item": "/",
                "stdout_lines": [
                    "Filesystem 1M-blocks Used Available Capacity Mounted",
                    "overlay 100 10 4321 10% /",
                ],
            }
        ]
    },  # fmt: skip
    "services": {"results": [{"item": "ssh.service", "status": {"ActiveState": "active"}}]},
    "busy_units": {"results": [{"item": "popdb-sync*", "stdout": ""}]},
    "busy_locks": {"rc": 0, "stdout": ""},
    "post_services": {"results": [{"item": "ssh.service", "status": {"ActiveState": "active"}}]},
    "pg_clusters": {"rc": 0, "stdout_lines": ["15 main 5432 online postgres /var/lib/x /var/log/x"]},
    "pg_ready": {"results": [{"item": "15 main 5432 online postgres /var/lib/x /var/log/x", "rc": 0}]},
}


def test_check_results_from_registered_tasks():
    c = check_results(**REGS)
    assert {"check": "free_space", "target": "/", "ok": True, "detail": "4321 MiB"} in c["pre"]
    assert {"check": "service", "target": "ssh.service", "ok": True, "detail": "active"} in c["pre"]
    assert [e["check"] for e in c["pre"]] == ["free_space", "service", "busy_unit", "busy_lock"]
    assert c["post"][-1] == {
        "check": "database",
        "target": "15/main:5432",
        "ok": True,
        "detail": "accepting connections",
    }
    # tasks that did not run (tags, disabled areas, no PostgreSQL) give empty phases, not errors
    assert check_results() == {"pre": [], "post": []}
    assert check_results(df={"skipped": True}, pg_clusters={"rc": 1, "stdout_lines": []}) == {
        "pre": [],
        "post": [],
    }


def test_reboot_action_per_policy():
    assert reboot_action(_report())[0].startswith("需要重启，策略 never：未重启")
    assert reboot_action(_report(reboot_required=False))[1] == "green"
    note = "container: the host owns the kernel, reboot skipped (would reboot)"
    assert "容器" in reboot_action(_report(reboot_policy="if_required", reboot_note=note))[0]
    assert reboot_action(_report(reboot_policy="always", rebooted=True)) == ("已按策略 always 重启", "amber")


def test_consolidated_sections_and_files(tmp_path):
    reports = {
        "web01": _report(checks=check_results(**REGS)),
        "city-db-420100": _report(host="city-db-420100", changes=[], reboot_required=False, reboot_note=""),
        "exch01": None,  # failed a pre-check / unreachable: no report
    }
    secs = report_sections(reports, ["web01", "city-db-420100", "exch01"])
    summary, upgraded, held, checks = secs
    rows = {r["host"]: r for r in summary["rows"]}
    assert rows["exch01"]["result"]["status"] == "red"
    assert rows["web01"]["upgraded"] == 1 and rows["web01"]["reboot_required"]["text"] == "是"
    assert upgraded["rows"] == [
        {
            "host": "web01",
            "name": "popdb-canary",
            "before": "1.0",
            "after": "2.0",
            "change": "1.0 → 2.0",
            "action": "升级",
        }
    ]
    assert {(r["host"], r["name"]) for r in held["rows"]} == {
        ("web01", "postgresql-popdb-canary"),
        ("city-db-420100", "postgresql-popdb-canary"),
    }
    web = next(r for r in checks["rows"] if r["host"] == "web01")
    assert web["pre"]["status"] == "green" and "剩余空间 /：4321 MiB" in web["pre"]["value"]
    assert "数据库连接 15/main:5432：accepting connections" in web["post"]["value"]
    files = write_report(str(tmp_path / "patching"), "补丁报告", secs, generated_at="2026-11-29 06:00:00")
    page = open(files["html"], encoding="utf-8").read()
    assert "popdb-canary" in page and "1.0 → 2.0" in page and "保持(hold)，未升级" in page
    wb = load_workbook(files["xlsx"])
    assert wb.sheetnames == ["汇总", "已升级", "保持", "检查"]
    assert [c.value for c in wb["已升级"][4]][:4] == ["web01", "popdb-canary", "1.0", "2.0"]


def test_failed_check_is_red():
    c = check_results(
        post_services={"results": [{"item": "nginx.service", "status": {"ActiveState": "failed"}}]}
    )
    secs = report_sections({"web01": _report(checks=c)})
    row = secs[3]["rows"][0]
    assert row["post"]["status"] == "red" and "（失败）" in row["post"]["value"]
    assert secs[0]["rows"][0]["result"]["text"] == "检查未通过"
