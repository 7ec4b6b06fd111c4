import json

from ansible.module_utils.popdb_dblog import main, new_critical, summarize


def _write(tmp_path, host, name, recs, extra=""):
    d = tmp_path / host
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_text("\n".join(json.dumps(r) for r in recs) + "\n" + extra)
    return str(p)


T1, T2 = "2026-11-28 10:00:00.1 CST", "2026-11-29 00:00:00.1 CST"
REC = [
    {"timestamp": T1, "error_severity": "LOG", "message": "duration: 1200.5 ms  statement: select pg_sleep(1.2)"},  # noqa: E501
    {"timestamp": T1, "error_severity": "LOG", "message": "duration: 12.0 ms  statement: select 1"},
    {"timestamp": T1, "error_severity": "ERROR", "state_code": "40P01", "message": "deadlock detected"},
    {"timestamp": T1, "error_severity": "ERROR", "state_code": "42P01", "message": 'relation "x" does not exist'},  # noqa: E501
    {"timestamp": T2, "error_severity": "FATAL", "message": 'password authentication failed for user "popdb_app"'},  # noqa: E501
    {"timestamp": T2, "error_severity": "FATAL", "message": "terminating connection due to administrator command"},  # noqa: E501
    {"timestamp": T2, "error_severity": "LOG", "message": "process 12 still waiting for ShareLock on transaction 7 after 1000.1 ms"},  # noqa: E501
]  # fmt: skip


def test_summary_per_day(tmp_path):
    p = _write(tmp_path, "prov-db01", "postgresql-2026-11-28.json", REC, extra="not json\n")
    s = summarize({"prov-db01": [p]})
    h = s["hosts"]["prov-db01"]
    d1, d2 = h["days"]["2026-11-28"], h["days"]["2026-11-29"]
    assert (d1["errors"], d1["deadlocks"], d1["slow_queries"], d1["slowest_ms"]) == (2, 1, 1, 1200.5)
    assert d1["slow_examples"][0]["statement"].startswith("statement: select pg_sleep")
    assert (d2["fatal"], d2["lock_waits"]) == (1, 1)  # the administrator-command FATAL is ignored
    assert h["malformed_lines"] == 1 and h["malformed_examples"][0]["line"] == 8


def test_alert_only_on_new_fatal(tmp_path):
    p = _write(tmp_path, "db", "a.json", REC)
    s = summarize({"db": [p]})
    alerts, state = new_critical(s, {})
    assert [a["day"] for a in alerts] == ["2026-11-29"] and alerts[0]["new"] == 1
    assert new_critical(s, state)[0] == []


def test_cli_exit_code(tmp_path):
    _write(tmp_path / "logs", "db", "a.json", REC) if (tmp_path / "logs").mkdir() is None else None
    out, state = tmp_path / "s.json", tmp_path / "state.json"
    assert main(["x", str(tmp_path / "logs"), str(out), str(state)]) == 3
    assert main(["x", str(tmp_path / "logs"), str(out), str(state)]) == 0
    assert json.loads(out.read_text())["hosts"]["db"]["days"]["2026-11-28"]["deadlocks"] == 1


def test_csvlog(tmp_path):
    d = tmp_path / "h"
    d.mkdir()
    row = [
        "2026-11-28 10:00:00.000 CST",
        "u",
        "db",
        "1",
        "",
        "",
        "1",
        "",
        "",
        "",
        "0",
        "PANIC",
        "XX000",
        "boom",
    ]
    (d / "x.csv").write_text(",".join(row) + "\n")
    s = summarize({"h": [str(d / "x.csv")]})
    assert s["hosts"]["h"]["days"]["2026-11-28"]["panic"] == 1
