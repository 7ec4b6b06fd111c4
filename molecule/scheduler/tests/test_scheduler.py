"""Scheduler on mgmt01: timers fire, runner artifacts, history rows, a failing job alerts rcv01."""

from __future__ import annotations

import json
import os
import time

import testinfra

INV = os.environ["MOLECULE_INVENTORY_FILE"]
MGMT = testinfra.get_host(f"ansible://mgmt01?ansible_inventory={INV}")
RCV = testinfra.get_host(f"ansible://rcv01?ansible_inventory={INV}")
testinfra_hosts = ["mgmt01"]


def _history():
    f = MGMT.file("/var/lib/popdb-scheduler/history.jsonl")
    return [json.loads(x) for x in f.content_string.splitlines()] if f.exists else []


def test_timers_leave_artifacts_and_history():
    deadline = time.time() + 120
    while time.time() < deadline:
        jobs = {r["job"]: r for r in _history()}
        if {"selftest_ok", "selftest_fail"} <= set(jobs):
            break
        time.sleep(5)
    assert jobs["selftest_ok"]["result"] == "ok" and jobs["selftest_ok"]["rc"] == 0
    assert jobs["selftest_fail"]["result"] == "failed"
    art = jobs["selftest_ok"]["artifact"]
    assert MGMT.file(f"{art}/status").content_string.strip() == "successful"
    assert MGMT.file(f"{art}/stdout").exists


def test_failing_job_reaches_receiver():
    deadline = time.time() + 60
    lines = []
    while time.time() < deadline:
        f = RCV.file("/var/lib/alert-receiver.jsonl")
        lines = [json.loads(x) for x in f.content_string.splitlines()] if f.exists else []
        if lines:
            break
        time.sleep(3)
    assert any("selftest_fail" in a["message"] for a in lines), lines
    assert not any("selftest_ok" in a["message"] for a in lines)
