"""The modules and playbooks through Ansible for real, against the real PostgreSQL fixture."""

from __future__ import annotations

import json
import os
import subprocess

import psycopg
import pytest
import yaml
from engine_helpers import make_dbs
from test_merge import insert, person_row

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {
    **os.environ,
    "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
    "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_CACHE_PLUGIN_CONNECTION": "/tmp/popdb-engine-facts",
}
BIN = os.path.join(ROOT, ".venv", "bin")


def ansible(*args, inventory=None):
    cmd = [os.path.join(BIN, args[0]), *args[1:]]
    if inventory:
        cmd += ["-i", inventory]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def adhoc(args, *extra):
    py = os.path.join(BIN, "python")
    interp = f"ansible_python_interpreter={py}"
    return ansible("ansible", "localhost", "-i", "localhost,", "-c", "local", "-e", interp,
                   "-m", "popdb_merge", "-a", args, *extra)  # fmt: skip


@pytest.fixture(scope="module")
def ans_dbs(pg_server):
    return pg_server, *make_dbs(pg_server, "ans", ["420100", "420500"])


def test_popdb_merge_module_check_then_apply(ans_dbs, tmp_path):
    _, prov, dsns = ans_dbs
    city = "420100"
    rows = [person_row(city, m) for m in range(12)]
    insert(dsns[city], rows)
    args = json.dumps(
        {"province_dsn": prov, "city_dsn": dsns[city], "city": city, "city_password": "s3cret-pw"}
    )
    r = adhoc(args, "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CHANGED" in r.stdout and '"inserted": 12' in r.stdout, r.stdout
    assert "s3cret-pw" not in r.stdout
    with psycopg.connect(prov) as c:
        assert c.execute("SELECT count(*) FROM popdb.person").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM popdb.job_history").fetchone() == (0,)
    r = adhoc(args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert '"inserted": 12' in r.stdout
    for row in rows:  # no ID number or name in the output
        assert row[0] not in r.stdout and row[1] not in r.stdout
    r = adhoc(args)
    assert r.returncode == 0 and "SUCCESS" in r.stdout and "CHANGED" not in r.stdout, r.stdout
    with psycopg.connect(prov) as c:
        assert c.execute("SELECT count(*) FROM popdb.person").fetchone() == (12,)


def test_sync_playbook_failing_city_reported_and_rerun(ans_dbs, tmp_path):
    server, prov, dsns = ans_dbs
    insert(dsns["420500"], [person_row("420500", m) for m in range(7)])
    insert(dsns["420100"], [person_row("420100", m) for m in range(100, 105)])

    def host(db):
        return {"ansible_host": server.host, "ansible_connection": "local", "popdb_db_port": server.port,
                "popdb_db_name": db}  # fmt: skip

    inv = {
        "all": {
            "vars": {
                "popdb_sync_user": server.user,
                "ansible_python_interpreter": os.path.join(BIN, "python"),
                "popdb_sync_report_dir": str(tmp_path / "out"),
            },
            "children": {
                "province_db": {"hosts": {"prov-db01": {**host("ans_prov"), "popdb_db_role": "primary"}}},
                "city_db": {
                    "hosts": {
                        "city-db-420100": {
                            **host("ans_420100"),
                            "city_code": "420100",
                            "city_name": "武汉市",
                        },
                        "city-db-420500": {
                            **host("ans_420500"),
                            "city_code": "420500",
                            "city_name": "宜昌市",
                        },
                        "city-db-429021": {
                            **host("no_such_db"),
                            "city_code": "429021",
                            "city_name": "神农架林区",
                        },
                    }
                },
            },
        }
    }
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(inv, allow_unicode=True))
    r = ansible("ansible-playbook", "playbooks/sync.yml", inventory=str(path))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "合并失败的城市: 429021" in out
    assert "420500 宜昌市: 成功 读取 7 新增 7" in " ".join(out.split())
    # the Chinese operator report (HTML + xlsx), no ID number in it
    reports = sorted((tmp_path / "out").glob("sync-*.html"))
    assert len(reports) == 1 and (tmp_path / "out" / (reports[0].stem + ".xlsx")).exists()
    page = reports[0].read_text(encoding="utf-8")
    assert "全员人口库夜间增量合并报告" in page and "神农架林区" in page and "失败" in page
    assert person_row("420500", 3)[0] not in page
    with psycopg.connect(prov) as c:
        got = dict(c.execute("SELECT city_code, count(*) FROM popdb.person GROUP BY 1").fetchall())
        assert got == {"420100": 17, "420500": 7}
        jobs = c.execute("SELECT city_code, status FROM popdb.job_history ORDER BY run_id").fetchall()
    assert ("429021", "success") not in jobs
    # re-run one city only
    insert(dsns["420100"], [person_row("420100", m) for m in range(200, 203)])
    r = ansible("ansible-playbook", "playbooks/sync.yml", "-e", "city=420100", inventory=str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "429021" not in r.stdout and "420500" not in r.stdout
    with psycopg.connect(prov) as c:
        assert c.execute("SELECT count(*) FROM popdb.person WHERE city_code = '420100'").fetchone() == (20,)


def test_consolidate_playbook(ans_dbs, tmp_path):
    server, prov, dsns = ans_dbs

    def host(db):
        return {"ansible_host": server.host, "popdb_db_port": server.port, "popdb_db_name": db}

    inv = {
        "all": {
            "vars": {
                "popdb_sync_user": server.user,
                "ansible_python_interpreter": os.path.join(BIN, "python"),
                "ansible_connection": "local",
            },
            "children": {
                "province_db": {"hosts": {"prov-db01": {**host("ans_prov"), "popdb_db_role": "primary"}}},
                "city_db": {
                    "hosts": {
                        "city-db-420100": {**host("ans_420100"), "city_code": "420100"},
                        "city-db-420500": {**host("ans_420500"), "city_code": "420500"},
                    }
                },
            },
        }
    }
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(inv, allow_unicode=True))
    export = str(tmp_path / "export")
    extra = ["-e", f"popdb_consolidate_export_dir={export}", "-e", "popdb_consolidate_retention=1"]
    r = ansible("ansible-playbook", "playbooks/consolidate.yml", "-e", "period=2026-10-1", "--check", *extra,
                inventory=str(path))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    with psycopg.connect(prov) as c:
        assert c.execute("SELECT count(*) FROM popdb.archive_catalog").fetchone() == (0,)
    for period in ("2026-10-1", "2026-10-2"):
        r = ansible("ansible-playbook", "playbooks/consolidate.yml", "-e", f"period={period}", *extra,
                    inventory=str(path))  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
    assert "导出并删除的过期期间 2026-10-1" in r.stdout
    assert os.path.exists(os.path.join(export, "popdb_archive_person_2026-10-1.tsv.gz"))
    with psycopg.connect(prov) as c:
        assert c.execute(
            "SELECT count(*) FROM popdb.archive_catalog WHERE verified AND dropped_at IS NULL"
        ).fetchone() == (8,)
