"""Semi-monthly consolidation on a real PostgreSQL: verified archive, retention, verified export."""

from __future__ import annotations

import gzip
import json
import os

import psycopg
import pytest
from ansible.module_utils.popdb_consolidate import ConsolidateError, archive_table, consolidate, period_of
from ansible.module_utils.popdb_generate import generate
from engine_helpers import checksum, make_dbs

CITIES = ["420100", "420500", "429021"]


@pytest.fixture()
def cdbs(pg_server, request):
    prov, dsns = make_dbs(pg_server, f"cons{request.node.name[-6:].replace('[', '_')}", CITIES)
    generate(dsns, 1500, seed=5, defects={"bad_check_digit": 0.01, "dup_cross_city": 0.01})
    return prov, dsns


def rel_exists(dsn, rel):
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT to_regclass(%s) IS NOT NULL", (rel,)).fetchone()[0]


def test_period_names():
    import datetime as dt

    assert period_of(dt.date(2026, 11, 15)) == "2026-11-1"
    assert period_of(dt.date(2026, 11, 16)) == "2026-11-2"
    assert archive_table("2026-02-2", "person") == "popdb_archive.person_202602_2"
    with pytest.raises(ConsolidateError, match="period"):
        archive_table("2026-13-1", "person")


def test_archive_verified_retention_export(cdbs, tmp_path):
    prov, dsns = cdbs
    export = str(tmp_path / "export")
    r = consolidate(prov, dsns, period="2026-10-1", retention=2, export_dir=export)
    assert not r["failed"] and r["rows"] > 1500
    # the archive holds exactly each city's rows (checksum query per city)
    for city in CITIES:
        src = checksum(dsns[city], "person")
        with psycopg.connect(prov) as c:
            cols = [x for (x,) in c.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'popdb.person'::regclass AND attnum > 0 "
                "AND NOT attisdropped AND attname <> 'city_code' ORDER BY attnum").fetchall()]  # fmt: skip
            arch = c.execute(
                "SELECT count(*), "
                "coalesce(sum(('x' || substr(md5(row(p.*)::text), 1, 15))::bit(60)::bigint), 0) "
                f"FROM (SELECT {', '.join(cols)} FROM popdb_archive.person_202610_1 WHERE src_city = %s) p",
                (city,),
            ).fetchone()
        assert tuple(arch) == src
    # re-run: verified cities are skipped; check mode writes nothing
    r = consolidate(prov, dsns, period="2026-10-1", retention=2, export_dir=export)
    assert r["rows"] == 0 and all(c["status"] == "skipped" for c in r["cities"].values())
    r = consolidate(prov, dsns, period="2026-10-2", retention=2, export_dir=export, check_mode=True)
    assert all(c["status"] == "would archive" for c in r["cities"].values())
    assert not rel_exists(prov, "popdb_archive.person_202610_2")
    consolidate(prov, dsns, period="2026-10-2", retention=2, export_dir=export)
    assert not os.path.exists(export)
    # third period: the oldest goes out (export verified, then dropped)
    r = consolidate(prov, dsns, period="2026-11-1", retention=2, export_dir=export)
    assert r["expired_periods"] == ["2026-10-1"]
    assert not rel_exists(prov, "popdb_archive.person_202610_1")
    assert rel_exists(prov, "popdb_archive.person_202610_2")
    manifest = json.load(open(os.path.join(export, "popdb_archive_2026-10-1.manifest.json")))
    with gzip.open(os.path.join(export, "popdb_archive_person_2026-10-1.tsv.gz"), "rt") as fh:
        lines = fh.read().splitlines()
    assert len(lines) == sum(v[0] for v in manifest["tables"]["person"]["cities"].values())
    with psycopg.connect(prov) as c:
        assert c.execute(
            "SELECT count(*) FROM popdb.archive_catalog WHERE period = '2026-10-1' "
            "AND dropped_at IS NOT NULL AND exported_at IS NOT NULL"
        ).fetchone() == (12,)
        jobs = c.execute(
            "SELECT count(*) FROM popdb.job_history WHERE job = 'consolidate' AND status = 'success'"
        )
        assert jobs.fetchone()[0] == 4 * 3  # 4 real runs (the check-mode run writes none)


def test_export_not_verified_keeps_archive(cdbs, tmp_path):
    prov, dsns = cdbs
    export = str(tmp_path / "export")
    consolidate(prov, dsns, period="2026-09-1", retention=1, export_dir=export)
    # the archive no longer matches its catalog: the export must not verify, nothing is dropped
    with psycopg.connect(prov) as c:
        c.execute("UPDATE popdb_archive.person_202609_1 SET name = 'X' WHERE ctid = (SELECT min(ctid) "
                  "FROM popdb_archive.person_202609_1)")  # fmt: skip
    with pytest.raises(ConsolidateError, match="export verification failed"):
        consolidate(prov, dsns, period="2026-09-2", retention=1, export_dir=export)
    assert rel_exists(prov, "popdb_archive.person_202609_1")
    with psycopg.connect(prov) as c:
        assert c.execute(
            "SELECT count(*) FROM popdb.archive_catalog WHERE period = '2026-09-1' AND dropped_at IS NULL"
        ).fetchone() == (12,)


def test_failing_city_does_not_stop_others(cdbs, tmp_path):
    prov, dsns = cdbs
    bad = dict(dsns)
    bad["429021"] = dsns["429021"].replace("dbname=", "dbname=missing_")
    r = consolidate(prov, bad, period="2026-08-1", retention=6, export_dir=str(tmp_path))
    assert r["failed"] == ["429021"]
    assert r["cities"]["420100"]["status"] == "archived" and r["cities"]["420500"]["status"] == "archived"
