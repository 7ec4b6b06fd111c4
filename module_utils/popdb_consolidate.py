"""Semi-monthly consolidation: a consistent snapshot of every city into a province archive.

Period: ``YYYY-MM-1`` (days 1-15) or ``YYYY-MM-2`` (16-end). For every city and period the
synced tables are copied from ONE REPEATABLE READ, READ ONLY snapshot of the city (COPY TO
STDOUT -> COPY FROM STDIN) into ``popdb_archive.<table>_<yyyymm>_<half>`` (same columns plus
``src_city``) in the province. In the same province transaction the archive is verified: row
count and an order-independent checksum (sum of the first 60 bits of md5 of every row, computed
by the city over the same snapshot and by the province over the archived rows) must match, or
the city's archive for the period is rolled back. The verified counts and checksums are
recorded in ``popdb.archive_catalog``. Re-running a verified (period, city) is a no-op unless
``force``.

Retention: periods older than the newest ``retention`` are exported to ``export_dir`` (one
gzip COPY file per table and period plus a JSON manifest), the export is verified by loading
it back into a temporary table and recomputing counts and checksums per city, and only then is
the archive table dropped (catalog: ``exported_at``, ``export_path``, ``dropped_at``). Moving the
files to the backup-storage host is the playbook's job (``playbooks/consolidate.yml``).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import time

from ansible.module_utils.popdb_mask import mask_text
from ansible.module_utils.popdb_schema import SYNC_TABLES

PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})-([12])$")
CHECKSUM_EXPR = "coalesce(sum(('x' || substr(md5(row({cols})::text), 1, 15))::bit(60)::bigint), 0)::text"


class ConsolidateError(Exception):
    pass


def period_of(day: dt.date) -> str:
    return f"{day:%Y-%m}-{1 if day.day <= 15 else 2}"


def _check_period(period: str) -> tuple[str, str, str]:
    m = PERIOD_RE.match(period or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ConsolidateError(f"period: must look like 2026-11-1 or 2026-11-2, got {period!r}")
    return m.group(1), m.group(2), m.group(3)


def archive_table(period: str, table: str) -> str:
    y, mth, half = _check_period(period)
    return f"popdb_archive.{table}_{y}{mth}_{half}"


def _cols(conn, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        (f"popdb.{table}",),
    ).fetchall()
    return [r[0] for r in rows]


def _checksum(conn, relation: str, cols: list[str], where: str = "", params=()) -> tuple[int, str]:
    expr = CHECKSUM_EXPR.format(cols=", ".join(f't."{c}"' for c in cols))
    row = conn.execute(f"SELECT count(*), {expr} FROM {relation} t {where}", params).fetchone()
    return int(row[0]), str(row[1])


def consolidate_city(prov, city_dsn: str, city: str, period: str, tables, force: bool = False) -> dict:
    """Archive one city for ``period`` in the province connection ``prov`` (its own transaction)."""
    import psycopg

    out = {"city": city, "tables": {}, "status": "skipped"}
    done = prov.execute(
        "SELECT count(*) FROM popdb.archive_catalog WHERE period = %s AND city_code = %s AND verified "
        "AND dropped_at IS NULL AND tbl = ANY(%s)",
        (period, city, list(tables)),
    ).fetchone()[0]
    prov.commit()
    if done == len(tables) and not force:
        return out
    with psycopg.connect(city_dsn, autocommit=True) as cityc:
        cityc.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with prov.transaction():
            for t in tables:
                cols = _cols(prov, t)
                arch = archive_table(period, t)
                prov.execute(f"CREATE TABLE IF NOT EXISTS {arch} (src_city char(6) NOT NULL, LIKE popdb.{t})")
                prov.execute(f"CREATE INDEX IF NOT EXISTS {arch.split('.')[1]}_src_idx ON {arch} (src_city)")
                prov.execute(f"DELETE FROM {arch} WHERE src_city = %s", (city,))
                collist = ", ".join(f'"{c}"' for c in cols)
                src_n, src_sum = _checksum(cityc, f"popdb.{t}", cols)
                with cityc.cursor().copy(
                    f"COPY (SELECT '{city}', {collist} FROM popdb.{t}) TO STDOUT"
                ) as src:
                    with prov.cursor().copy(f"COPY {arch} (src_city, {collist}) FROM STDIN") as dst:
                        for data in src:
                            dst.write(data)
                n, s = _checksum(prov, arch, cols, "WHERE t.src_city = %s", (city,))
                if (n, s) != (src_n, src_sum):
                    raise ConsolidateError(
                        f"city {city} table {t}: archive verification failed "
                        f"(city {src_n} rows/{src_sum}, archive {n} rows/{s})"
                    )
                prov.execute(
                    "INSERT INTO popdb.archive_catalog (period, city_code, tbl, rows, checksum, verified) "
                    "VALUES (%s, %s, %s, %s, %s, true) ON CONFLICT (period, city_code, tbl) DO UPDATE SET "
                    "rows = EXCLUDED.rows, checksum = EXCLUDED.checksum, verified = true, "
                    "created_at = now(), "
                    "export_path = NULL, exported_at = NULL, dropped_at = NULL",
                    (period, city, t, n, s),
                )
                out["tables"][t] = {"rows": n, "checksum": s}
        cityc.execute("COMMIT")
    out["status"] = "archived"
    return out


def export_period(prov, period: str, export_dir: str, check_mode: bool = False) -> dict:
    """Export a period's archive tables to files, verify by reloading, then drop them."""
    rows = prov.execute(
        "SELECT tbl, city_code, rows, checksum FROM popdb.archive_catalog "
        "WHERE period = %s AND dropped_at IS NULL "
        "ORDER BY tbl, city_code",
        (period,),
    ).fetchall()
    prov.commit()
    by_table: dict[str, dict[str, tuple[int, str]]] = {}
    for t, city, n, s in rows:
        by_table.setdefault(t, {})[city] = (int(n), str(s))
    out = {"period": period, "files": [], "tables": sorted(by_table)}
    if check_mode:
        return out
    os.makedirs(export_dir, exist_ok=True)
    manifest = {"period": period, "tables": {}}
    for t, cities in by_table.items():
        arch = archive_table(period, t)
        exists = prov.execute("SELECT to_regclass(%s) IS NOT NULL", (arch,)).fetchone()[0]
        if not exists:
            raise ConsolidateError(f"period {period}: archive table {arch} is missing (catalog says present)")
        cols = _cols(prov, t)
        collist = ", ".join(f'"{c}"' for c in cols)
        path = os.path.join(export_dir, f"popdb_archive_{t}_{period}.tsv.gz")
        tmp = path + ".part"
        with gzip.open(tmp, "wb", compresslevel=3) as fh:
            with prov.cursor().copy(f"COPY (SELECT src_city, {collist} FROM {arch}) TO STDOUT") as cp:
                for data in cp:
                    fh.write(data)
        prov.commit()
        # verify: load the file back and recompute counts and checksums per city
        with prov.transaction():
            prov.execute(f"CREATE TEMP TABLE _verify (src_city char(6), LIKE popdb.{t}) ON COMMIT DROP")
            with (
                gzip.open(tmp, "rb") as fh,
                prov.cursor().copy(f"COPY _verify (src_city, {collist}) FROM STDIN") as cp,
            ):
                while chunk := fh.read(1 << 20):
                    cp.write(chunk)
            for city, want in cities.items():
                got = _checksum(prov, "_verify", cols, "WHERE t.src_city = %s", (city,))
                if got != want:
                    raise ConsolidateError(
                        f"period {period} table {t} city {city}: export verification failed "
                        f"(catalog {want[0]} rows/{want[1]}, file {got[0]} rows/{got[1]}); archive kept"
                    )
        os.replace(tmp, path)
        manifest["tables"][t] = {
            "file": os.path.basename(path),
            "cities": {c: list(v) for c, v in cities.items()},
        }
        out["files"].append(path)
    mpath = os.path.join(export_dir, f"popdb_archive_{period}.manifest.json")
    with open(mpath, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, indent=1)
    out["files"].append(mpath)
    with prov.transaction():
        for t in by_table:
            prov.execute(f"DROP TABLE {archive_table(period, t)}")
            prov.execute(
                "UPDATE popdb.archive_catalog SET export_path = %s, exported_at = now(), dropped_at = now() "
                "WHERE period = %s AND tbl = %s AND dropped_at IS NULL",
                (os.path.join(export_dir, f"popdb_archive_{t}_{period}.tsv.gz"), period, t),
            )
    return out


def consolidate(
    province_dsn: str,
    city_dsns: dict[str, str],
    period: str | None = None,
    tables=None,
    retention: int = 6,
    export_dir: str | None = None,
    check_mode: bool = False,
    force: bool = False,
) -> dict:
    """Archive every city for ``period`` (default: the current half-month), then apply retention."""
    import psycopg

    period = period or period_of(dt.date.today())
    _check_period(period)
    tables = list(tables or SYNC_TABLES)
    if retention < 1:
        raise ConsolidateError("retention: keep at least 1 period")
    started = time.monotonic()
    res: dict = {
        "period": period,
        "cities": {},
        "failed": [],
        "rows": 0,
        "exported": [],
        "check_mode": check_mode,
    }
    with psycopg.connect(province_dsn) as prov:
        for city in sorted(city_dsns):
            if check_mode:
                done = prov.execute(
                    "SELECT count(*) FROM popdb.archive_catalog WHERE period = %s AND city_code = %s "
                    "AND verified AND dropped_at IS NULL",
                    (period, city),
                ).fetchone()[0]
                res["cities"][city] = {
                    "status": "skipped" if done >= len(tables) and not force else "would archive"
                }
                prov.rollback()
                continue
            run_id = prov.execute(
                "INSERT INTO popdb.job_history (job, city_code, details) "
                "VALUES ('consolidate', %s, %s::jsonb) "
                "RETURNING run_id",
                (city, json.dumps({"period": period})),
            ).fetchone()[0]
            prov.commit()
            try:
                r = consolidate_city(prov, city_dsns[city], city, period, tables, force)
                n = sum(v["rows"] for v in r["tables"].values())
                res["rows"] += n
                prov.execute(
                    "UPDATE popdb.job_history SET status = 'success', finished_at = clock_timestamp(), "
                    "rows_read = %s, inserted = %s WHERE run_id = %s",
                    (n, n, run_id),
                )
                prov.commit()
                res["cities"][city] = r
            except Exception as exc:  # noqa: BLE001 - one city failing does not stop the others
                prov.rollback()
                msg = mask_text(f"{type(exc).__name__}: {exc}")
                prov.execute(
                    "UPDATE popdb.job_history SET status = 'failed', finished_at = clock_timestamp(), "
                    "error = %s WHERE run_id = %s",
                    (msg, run_id),
                )
                prov.commit()
                res["cities"][city] = {"status": "failed", "error": msg}
                res["failed"].append(city)
        # retention
        periods = [
            p
            for (p,) in prov.execute(
                "SELECT DISTINCT period FROM popdb.archive_catalog WHERE dropped_at IS NULL"
            ).fetchall()
        ]
        prov.commit()
        keep = sorted(periods, key=_check_period, reverse=True)[:retention]
        old = sorted(p for p in periods if p not in keep)
        res["expired_periods"] = old
        if old and not export_dir:
            raise ConsolidateError(
                f"periods {old} are beyond the retention of {retention} but no export_dir is configured"
            )
        for p in old:
            res["exported"].append(export_period(prov, p, export_dir, check_mode))
    res["seconds"] = round(time.monotonic() - started, 3)
    res["rows_per_second"] = round(res["rows"] / res["seconds"]) if res["seconds"] else None
    return res
