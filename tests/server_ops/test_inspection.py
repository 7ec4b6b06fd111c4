"""popdb_inspection: real collection on this machine, grading, history and change since last run."""

from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.popdb_inspection import (
    check_thresholds,
    collect,
    evaluate,
    grade,
    parse_chrony_tracking,
    parse_mounts,
    run_report,
)
from openpyxl import load_workbook

TH = {"disk_used_pct": {"amber": 80, "red": 90}}


def _host(disk_pct, mount="/data"):
    return {
        "cpu_count": 2, "cpu_used_pct": 10.0, "load": [0.1, 0.1, 0.1], "load_per_core": 0.05,
        "mem_used_pct": 40.0, "swap_used_pct": 0.0, "uptime_s": 90000, "error_lines": 0,
        "disks": [{"mount": "/", "device": "x", "fstype": "ext4", "size": 10 << 30, "used": 1 << 30,
                   "avail": 9 << 30, "used_pct": 10.0, "inodes": 1000, "inode_used_pct": 5.0},
                  {"mount": mount, "device": "tmpfs", "fstype": "tmpfs", "size": 64 << 20,
                   "used": int(disk_pct * (64 << 20) / 100), "avail": 1, "used_pct": disk_pct,
                   "inodes": 100, "inode_used_pct": 1.0}],
        "network": [{"iface": "eth0", "rx_bps": 1000.0, "tx_bps": 10.0, "rx_total": 5, "tx_total": 6}],
        "failed_units": [], "error_log": ["2026-01-01 x: bad id 420102199001011234"],
        "time_sync": {"synced": True, "offset_ms": 0.5}, "pending_updates": 0, "reboot_required": False,
    }  # fmt: skip


def test_collect_real_host():
    d = collect(interval=0.3)
    assert d["cpu_count"] >= 1
    assert d["mem_total"] > 0
    assert any(x["mount"] == "/" for x in d["disks"])
    assert all(not x["mount"].startswith("/proc") for x in d["disks"])
    assert isinstance(d["network"], list)


def test_grade_boundaries():
    assert grade(79.9, {"amber": 80, "red": 90}) == "green"
    assert grade(80, {"amber": 80, "red": 90}) == "amber"
    assert grade(90, {"amber": 80, "red": 90}) == "red"
    assert grade(None, {"amber": 80, "red": 90}) == "grey"


def test_thresholds_validated():
    with pytest.raises(ValueError, match="unknown metric 'disk'"):
        check_thresholds({"disk": {"amber": 1, "red": 2}})
    with pytest.raises(ValueError, match="amber 95 > red 90"):
        check_thresholds({"disk_used_pct": {"amber": 95, "red": 90}})


def test_evaluate_disk_amber_names_mount():
    ev = evaluate(_host(85.0), check_thresholds(TH))
    assert ev["status"] == "amber"
    assert ev["metrics"]["disk_used_pct"] == {"value": 85.0, "mount": "/data", "status": "amber"}


def test_unsynced_time_is_amber():
    h = _host(10)
    h["time_sync"] = {"synced": False, "offset_ms": None}
    assert evaluate(h, check_thresholds({}))["metrics"]["time_offset_ms"]["status"] == "amber"


def test_parse_chrony_and_mounts():
    t = parse_chrony_tracking(
        "Reference ID    : 0AC90014 (10.201.0.20)\nStratum         : 11\n"
        "System time     : 0.000012345 seconds fast of NTP time\nLeap status     : Normal\n"
    )
    assert t["synced"] and t["stratum"] == 11 and t["offset_ms"] == pytest.approx(0.012, abs=0.001)
    m = parse_mounts("proc /proc proc rw 0 0\n/dev/sda1 / ext4 rw 0 0\ntmpfs /data tmpfs rw 0 0\n")
    assert [x[1] for x in m] == ["/", "/data"]


def test_report_history_and_change(tmp_path):
    out = str(tmp_path)
    r1 = run_report(
        {"web01": {"data": _host(50.0), "groups": ["web_app"]}}, TH, out, run_id="20260101T000000"
    )
    assert r1["previous_run"] is None and r1["summary"]["green"] == ["web01"]
    r2 = run_report(
        {"web01": {"data": _host(93.0), "groups": ["web_app"]}, "db01": {"data": None}},
        TH, out, run_id="20260102T000000",
    )  # fmt: skip
    assert r2["previous_run"] == "20260101T000000"
    assert r2["summary"]["red"] == ["db01", "web01"]
    assert r2["deltas"]["web01"]["disk_used_pct"] == pytest.approx(43.0)
    page = open(r2["files"]["html"], encoding="utf-8").read()
    assert "状态 正常→严重" in page and "93%" in page and "+43" in page
    assert "420102199001011234" not in page
    host_json = json.load(open(os.path.join(r2["files"]["hosts_dir"], "web01.json"), encoding="utf-8"))
    assert host_json["evaluation"]["status"] == "red"
    assert sorted(os.listdir(os.path.join(out, "history"))) == [
        "20260101T000000.json",
        "20260102T000000.json",
    ]
    ws = load_workbook(r2["files"]["xlsx"])["磁盘"]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=4)]
    assert ["web01", "/data"] == rows[1][:2] and rows[1][6] == "93%"
    # history pruning keeps the newest
    run_report({"web01": {"data": _host(10.0)}}, TH, out, run_id="20260103T000000", keep_history=2)
    assert sorted(os.listdir(os.path.join(out, "history"))) == [
        "20260102T000000.json",
        "20260103T000000.json",
    ]
