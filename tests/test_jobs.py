import json

from ansible.module_utils.popdb_jobs import alert_text, append_history, read_history, summarize


def _artifact(tmp_path, status, rc, events):
    d = tmp_path / "artifacts" / "20261129T010000"
    (d / "job_events").mkdir(parents=True)
    (d / "status").write_text(status)
    (d / "rc").write_text(str(rc))
    for i, ev in enumerate(events, 1):
        (d / "job_events" / f"{i}-x.json").write_text(json.dumps(ev) if isinstance(ev, dict) else ev)
    return str(d)


def test_failed_run(tmp_path):
    d = _artifact(
        tmp_path,
        "failed",
        2,
        [
            {"event": "runner_on_ok", "event_data": {"host": "a"}},
            {"event": "runner_on_failed", "event_data": {"host": "b"}},
            {"event": "runner_on_failed", "event_data": {"host": "c", "ignore_errors": True}},
            {"event": "runner_on_unreachable", "event_data": {"host": "d"}},
            {"event": "playbook_on_stats", "event_data": {"ok": {"a": 3, "b": 1}, "failures": {"b": 1}}},
            "{broken",
        ],
    )
    row = summarize("nightly_sync", d, "s", "f")
    assert row["result"] == "failed" and row["rc"] == 2
    assert row["failed_hosts"] == ["b"] and row["unreachable_hosts"] == ["d"]
    assert row["stats"]["ok"] == 4 and row["stats"]["failures"] == 1 and row["malformed_events"] == 1
    assert "nightly_sync" in alert_text(row) and "on b, d" in alert_text(row)


def test_successful_run_and_history(tmp_path):
    d = _artifact(tmp_path, "successful", 0, [])
    row = summarize("backup_check", d, "s", "f")
    assert row["result"] == "ok" and row["ident"] == "20261129T010000"
    h = tmp_path / "history.jsonl"
    append_history(str(h), row)
    with open(h, "a") as fh:
        fh.write("garbage\n")
    rows = read_history(str(h))
    assert rows[0]["job"] == "backup_check" and rows[1] == {"result": "unreadable", "line": 2}


def test_missing_artifact_is_a_failure(tmp_path):
    row = summarize("x", str(tmp_path / "nothing"), "s", "f")
    assert row["result"] == "failed" and row["status"] == "missing" and row["rc"] is None
