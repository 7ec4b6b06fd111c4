"""Database platform on real lab hosts: PostgreSQL (TLS, pg_hba, logging), pgBackRest on bak01 over SSH,
a city database (city-db-420100) in its own stanza on bak01, restore drills onto drill01 (latest and point
in time), retention, a failing backup that alerts, log summary.

Tests run in file order and build on each other (one backup history), like an operator's day.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess

import testinfra.utils.ansible_runner

INV = os.environ["MOLECULE_INVENTORY_FILE"]
REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INV)
testinfra_hosts = ["prov-db01"]


def _h(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INV}")


DB, BAK, DRILL = _h("prov-db01"), _h("bak01"), _h("drill01")


def sql(host, query, db="popdb"):
    r = host.run("runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", db, query)
    assert r.rc == 0, r.stderr
    return r.stdout.strip()


def playbook(*args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    cmd = [
        "ansible-playbook",
        "-i",
        os.path.dirname(INV),
        os.path.join(REPO, "playbooks", "restore_drill.yml"),
    ]
    r = subprocess.run(cmd + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return r


def backup(kind):
    r = BAK.run(f"systemctl start popdb-backup-prov-db01-{kind}.service")
    return r, json.loads(BAK.file("/var/lib/popdb-backup/prov-db01.json").content_string)


def info():
    out = BAK.check_output("runuser -u pgbackrest -- pgbackrest --stanza=prov-db01 --output=json info")
    return json.loads(out)[0]


def test_settings_tls_and_logging():
    assert sql(DB, "SHOW ssl") == "on"
    assert sql(DB, "SHOW log_destination") == "jsonlog"
    assert sql(DB, "SHOW archive_mode") == "on"
    assert sql(DB, "SHOW log_lock_waits") == "on"
    # shared_buffers: 25 % of the 2048 MiB the lab sizes for (province profile)
    assert sql(DB, "SHOW shared_buffers") == "512MB"
    assert sql(DB, "SELECT datacl::text FROM pg_database WHERE datname = 'popdb'").count("=") >= 3
    assert "=Tc/" not in sql(DB, "SELECT datacl::text FROM pg_database WHERE datname = 'popdb'")
    # a TLS client verifying the lab CA and the host name
    ca = DB.file("/etc/postgresql/15/main/root.crt").content_string
    assert "BEGIN CERTIFICATE" in ca
    r = DB.run(
        "PGSSLMODE=verify-full PGSSLROOTCERT=/etc/postgresql/15/main/root.crt "
        "psql 'host=prov-db01 hostaddr=%s dbname=popdb user=popdb_app' -c 'select 1' </dev/null",
        _addr("prov-db01"),
    )
    # verify-full passed TLS (CA + host name); pg_hba then rejects: prov-db01 is not an app server
    assert "no pg_hba.conf entry" in r.stderr and "SSL encryption" in r.stderr, r.stderr
    assert ".json" in DB.check_output("ls /var/lib/postgresql/15/main/log")


def _addr(name):
    return RUNNER.get_variables(name)["ansible_host"]


def test_full_backup_check_verify():
    sql(DB, "DROP TABLE IF EXISTS person, ledger")
    sql(DB, "CREATE TABLE person(id int PRIMARY KEY, name text, born date)")
    sql(
        DB,
        "INSERT INTO person SELECT g, md5(g::text), date '1950-01-01' + g % 9000"
        " FROM generate_series(1, 20000) g",
    )
    r, status = backup("full")
    assert r.rc == 0, r.stdout + r.stderr
    assert status["result"] == "ok" and status["step"] == "verify", status
    assert info()["backup"][-1]["type"] == "full"
    assert info()["status"]["message"] == "ok"
    # the repository is encrypted
    assert info()["cipher"] == "aes-256-cbc"


def test_city_database_backed_up_to_bak01_in_its_own_stanza():
    city = _h("city-db-420100")
    assert sql(city, "SHOW max_connections") == "150"  # city profile
    assert sql(city, "SHOW archive_mode") == "on"
    sql(city, "DROP TABLE IF EXISTS person")
    sql(city, "CREATE TABLE person(id int PRIMARY KEY, name text)")
    sql(city, "INSERT INTO person SELECT g, md5(g::text) FROM generate_series(1, 5000) g")
    r = BAK.run("systemctl start popdb-backup-city-db-420100-full.service")
    assert r.rc == 0, r.stdout + r.stderr
    status = json.loads(BAK.file("/var/lib/popdb-backup/city-db-420100.json").content_string)
    assert status["result"] == "ok" and status["step"] == "verify", status
    out = BAK.check_output("runuser -u pgbackrest -- pgbackrest --output=json info")
    stanzas = {s["name"]: s for s in json.loads(out)}
    assert {"prov-db01", "city-db-420100"} <= set(stanzas)  # one repository, one stanza per database
    st = stanzas["city-db-420100"]
    assert st["status"]["message"] == "ok" and st["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in st["backup"]] == ["full"]
    assert st["backup"][-1]["database"]["id"] == st["db"][-1]["id"]
    # the city database's WAL reaches its own archive (point-in-time recovery for the city)
    assert st["archive"] and st["archive"][0]["max"], st["archive"]
    assert BAK.file("/var/lib/pgbackrest/archive/city-db-420100").is_directory
    # the province stanza was not touched by the city backup
    assert [b["type"] for b in stanzas["prov-db01"]["backup"]] == ["full"]


def test_restore_latest_matches_source():
    r = playbook("-e", "drill_source=prov-db01", "-e", "drill_target=drill01")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    report = json.loads(open(sorted(glob.glob(f"{REPO}/out/restore_drill/prov-db01-*.json"))[-1]).read())
    assert report["match"] is True and report["compared"] is True
    assert report["restored"]["public.person"]["rows"] == 20000
    assert float(report["rto_seconds"]) > 0
    assert sql(DRILL, "SELECT count(*) FROM person") == "20000"


def test_destroy_then_point_in_time_restore():
    sql(DB, "CREATE TABLE ledger(id int, note text)")
    sql(DB, "INSERT INTO ledger VALUES (1, 'first')")
    before = set(glob.glob(f"{REPO}/out/restore_drill/snapshots/prov-db01-*.json"))
    r = playbook("-e", "drill_source=prov-db01", "-e", "drill_mode=snapshot")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    (snap,) = set(glob.glob(f"{REPO}/out/restore_drill/snapshots/prov-db01-*.json")) - before
    sql(DB, "INSERT INTO ledger VALUES (2, 'second')")
    sql(DB, "DROP TABLE person")  # destroy the data
    r = playbook(
        "-e", "drill_source=prov-db01", "-e", "drill_target=drill01", "-e", f"drill_snapshot_file={snap}"
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # exactly the first transaction is present, and the destroyed table is back with its checksum
    assert sql(DRILL, "SELECT string_agg(note, ',' ORDER BY id) FROM ledger") == "first"
    assert sql(DRILL, "SELECT count(*) FROM person") == "20000"
    expected = json.loads(open(snap).read())["tables"]
    report = json.loads(open(sorted(glob.glob(f"{REPO}/out/restore_drill/prov-db01-*.json"))[-1]).read())
    assert report["restored"] == expected and report["match"] is True


def test_hba_rejects_other_hosts():
    # drill01 (restored) has no entry for any login role: refused before authentication
    r = DRILL.run(
        "psql 'host=%s dbname=popdb user=popdb_report sslmode=require' -c 'select 1' </dev/null",
        _addr("prov-db01"),
    )
    assert r.rc != 0 and "no pg_hba.conf entry" in r.stderr, r.stderr


def test_retention_removes_oldest_full():
    first = info()["backup"][0]["label"]
    for _ in range(2):
        r, status = backup("full")
        assert r.rc == 0 and status["result"] == "ok", status
    labels = [b["label"] for b in info()["backup"] if b["type"] == "full"]
    assert len(labels) == 2 and first not in labels, labels


def test_unreachable_database_fails_loudly_and_alerts():
    alerts_before = BAK.check_output("wc -l < /var/log/popdb/alerts.jsonl")
    BAK.run("ip route add prohibit %s/32", _addr("prov-db01"))
    try:
        r, status = backup("diff")
    finally:
        BAK.run("ip route del prohibit %s/32", _addr("prov-db01"))
    assert r.rc != 0
    assert status["result"] == "failed" and status["step"] == "backup", status
    alerts = BAK.file("/var/log/popdb/alerts.jsonl").content_string.splitlines()
    assert len(alerts) == int(alerts_before) + 1
    assert "diff backup of prov-db01 failed" in json.loads(alerts[-1])["message"]
    hist = [
        json.loads(x) for x in BAK.file("/var/lib/popdb-backup/history.jsonl").content_string.splitlines()
    ]
    assert hist[-1]["result"] == "failed" and hist[-2]["result"] == "ok"
    assert "popdb-backup-prov-db01-diff.service" in BAK.check_output(
        "systemctl list-units --failed --plain --no-legend"
    )


def test_log_summary_and_fatal_alert():
    DB.run(
        "psql -XAtq 'host=127.0.0.1 dbname=popdb user=nosuchuser password=x sslmode=require' -c 'select 1'"
    )
    sql(DB, "SELECT pg_sleep(0.6)")
    r = BAK.run("systemctl start popdb-dblogs.service")
    summary = json.loads(BAK.file("/srv/popdb-dblogs/summary.json").content_string)
    days = summary["hosts"]["prov-db01"]["days"]
    assert sum(d["fatal"] for d in days.values()) >= 1
    assert sum(d["slow_queries"] for d in days.values()) >= 1
    assert r.rc == 0
    last = json.loads(BAK.file("/var/log/popdb/alerts.jsonl").content_string.splitlines()[-1])
    assert last["source"] == "db_logs" and "FATAL" in last["message"]
