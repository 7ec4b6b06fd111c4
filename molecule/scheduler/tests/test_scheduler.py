"""Scheduler on mgmt01: the offline-built venv (ansible-core 2.19), timers fire, runner artifacts,
history rows, a failing job alerts rcv01."""

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
    # the timer's run used the venv's ansible-core 2.19 (Debian 12 ships 2.14)
    assert "ok, ansible-core 2.19.14" in MGMT.file(f"{art}/stdout").content_string


def test_venv_built_offline_with_ansible_core_219_and_collections():
    out = MGMT.check_output("/opt/popdb-venv/bin/ansible-playbook --version")
    assert "core 2.19.14" in out, out
    assert "/opt/popdb-venv/" in out
    assert MGMT.run("command -v ansible-playbook").rc != 0  # no Debian ansible on this host
    assert MGMT.file("/opt/popdb-venv-wheels/ansible_core-2.19.14-py3-none-any.whl").exists
    # the collections the real jobs use resolve for the job account from the venv
    mods = [
        "ansible.posix.synchronize",
        "ansible.utils.validate",
        "community.crypto.openssl_privatekey",
        "community.general.timezone",
        "community.postgresql.postgresql_db",
    ]
    doc = "cd / && runuser -u popdb-jobs -- /opt/popdb-venv/bin/ansible-doc -j -t module"
    r = MGMT.run(f"{doc} {' '.join(mods)}")
    assert r.rc == 0, r.stderr
    assert set(json.loads(r.stdout)) == set(mods)


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
