"""Nightly incremental merge of one city database into the province database, exactly once.

Design
======
Change capture (city side, ``popdb_schema`` migration 2): statement-level triggers on every
synced table (``SYNC_TABLES``) append ``(txid, tbl, pk)`` to ``popdb.change_log``, where ``txid``
is the writing transaction's 64-bit id (``pg_current_xact_id()``, xid8: no wraparound). The log
row becomes visible exactly when the writing transaction commits and vanishes if it aborts.

Watermark: the province keeps, per city, ``merge_state.last_xmin`` = the ``xmin`` of the city
snapshot used by the last successful merge. ``xmin`` is the oldest transaction still running
when the snapshot was taken, so every transaction with ``txid < xmin`` had finished (committed
or aborted) and, if committed, is visible in that snapshot. A run:

1. takes a REPEATABLE READ, READ ONLY snapshot of the city and its ``xmin = pg_snapshot_xmin(
   pg_current_snapshot())``;
2. consumes the log rows with ``last_xmin <= txid < xmin``: each such transaction is finished,
   so its rows are all there (nothing is lost), and none was consumed before because the
   previous run only took ``txid < last_xmin`` (nothing twice). A late-committing transaction
   (started before the previous run, committed after it) has ``txid >= last_xmin`` (it was
   running, so the previous ``xmin`` was at most its id) and is therefore consumed now;
3. the apply is state-based: for every touched key the row as it is in the snapshot is copied
   (or, if the key is gone, a tombstone), so applying a key twice is harmless (rows that did not
   change are not rewritten and not counted);
4. transfers with ``COPY ... TO STDOUT`` from the city into a TEMP staging table in the province
   (``COPY FROM STDIN``), validates set-based (``PROBLEMS``: bad rows go to ``popdb.quarantine``
   with the field and the reason, are counted and are not applied; the province keeps its
   previous version), then applies set-based (UPDATE changed rows, INSERT new keys, DELETE
   tombstones) and advances the watermark and finishes the job-history row in the SAME province
   transaction. A run killed at any point leaves the province as it was (the job row stays
   ``running`` and the next run marks it ``aborted``), and a re-run gives the correct result.

The first run for a city (no watermark) or ``full=True`` is a full sync: every row of the
snapshot plus tombstones for province rows of that city that the city no longer has.

Applies are serialised province-wide by an advisory lock (transfers run in parallel); two runs
of the same city are serialised by a per-city advisory lock.

Conflicts: the same key (ID number) from two cities. Rule: **the version with the newest
``updated_at`` wins; on a tie the lower city code wins.** The winner is in ``popdb.<table>``,
the losing versions in ``popdb.<table>_dup`` (so a later delete or update in either city
re-resolves correctly), and every resolution is logged in ``popdb.merge_conflict``.

The city's change log is pruned (``txid < last_xmin``) at the start of the next run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ansible.module_utils.popdb_mask import mask_id, mask_text
from ansible.module_utils.popdb_schema import SYNC_TABLES

APPLY_LOCK = 8_420_000_061
CITY_LOCK = 8_420_062
RULE = "newest updated_at wins; tie: lower city code"

_RE12 = "'^[0-9]{12}$'"
_IDRE = "'^[1-9][0-9]{16}[0-9X]$'"


def _region(col: str, required: bool) -> list[tuple[str, str, str]]:
    out = [(col, f"s.{col} IS NOT NULL AND s.{col} !~ {_RE12}", "not a 12-digit region code")]
    if required:
        out.insert(0, (col, f"s.{col} IS NULL", "missing"))
    return out


# table -> [(field, SQL condition TRUE when the row is bad, reason)]
PROBLEMS: dict[str, list[tuple[str, str, str]]] = {
    "person": [
        ("id_no", f"s.id_no !~ {_IDRE}", "not an 18-digit ID number"),
        (
            "id_no",
            f"s.id_no ~ {_IDRE} AND popdb.id_check_char(s.id_no) <> substr(s.id_no, 18, 1)",
            "bad check digit",
        ),
        ("name", "s.name IS NULL OR btrim(s.name) = ''", "missing"),
        ("sex", "s.sex IS NULL", "missing"),
        ("sex", "s.sex NOT IN ('1', '2')", "must be 1 (male) or 2 (female)"),
        (
            "sex",
            f"s.sex IN ('1', '2') AND s.id_no ~ {_IDRE} "
            "AND (substr(s.id_no, 17, 1)::int % 2 = 1) <> (s.sex = '1')",
            "contradicts the ID number",
        ),
        ("birth_date", "s.birth_date IS NULL", "missing"),
        ("birth_date", "s.birth_date > current_date", "in the future"),
        ("birth_date", "s.birth_date < DATE '1890-01-01'", "before 1890"),
        (
            "birth_date",
            f"s.id_no ~ {_IDRE} AND to_char(s.birth_date, 'YYYYMMDD') <> substr(s.id_no, 7, 8)",
            "contradicts the ID number",
        ),
        *_region("hukou_region", True),
        *_region("residence_region", False),
        *_region("floating_region", False),
        *_region("mgmt_unit", False),
        ("status", "s.status NOT IN ('1', '2', '3')", "must be 1, 2 or 3"),
    ],
    "household": [*_region("region_code", True)],
    "birth_event": [
        (
            "mother_id_no",
            "NOT coalesce(popdb.id_valid(s.mother_id_no), false)",
            "missing or invalid ID number",
        ),
        ("birth_date", "s.birth_date IS NULL OR s.birth_date > current_date", "missing or in the future"),
        *_region("birth_place", False),
    ],
    "death_event": [
        ("id_no", "NOT popdb.id_valid(s.id_no)", "invalid ID number"),
        ("death_date", "s.death_date IS NULL OR s.death_date > current_date", "missing or in the future"),
        *_region("death_place", False),
    ],
}


class MergeError(Exception):
    pass


@dataclass
class TableResult:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    quarantined: int = 0
    conflicts: int = 0
    quarantine_samples: list = field(default_factory=list)


def _reason_sql(table: str) -> str:
    parts = [f"CASE WHEN {cond} THEN '{fld}: {why}' END" for fld, cond, why in PROBLEMS.get(table, [])]
    if not parts:
        return "NULL::text"
    return f"NULLIF(concat_ws('; ', {', '.join(parts)}), '')"


def _columns(conn, table: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (f"popdb.{table}",),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _xid(v) -> int:
    s = str(v)
    if not s.isdigit():
        raise MergeError(f"unexpected transaction id {s!r}")
    return int(s)


def _mark_aborted(prov, city: str) -> int:
    cur = prov.execute(
        "UPDATE popdb.job_history j SET status = 'aborted', finished_at = clock_timestamp(), "
        "error = 'the run ended without finishing (killed or connection lost); nothing was applied' "
        "WHERE job = 'merge' AND city_code = %s AND status = 'running' AND NOT EXISTS ("
        "SELECT 1 FROM pg_stat_activity a WHERE a.pid = j.backend_pid AND a.backend_start <= j.started_at)",
        (city,),
    )
    return cur.rowcount


def merge_city(
    province_dsn: str,
    city_dsn: str,
    city: str,
    check_mode: bool = False,
    full: bool = False,
    tables: list[str] | None = None,
    sample_limit: int = 5,
    _pause_hook=None,
) -> dict:
    """Merge one city's changes since its watermark. Returns a masked result dict."""
    import psycopg

    if not (len(city) == 6 and city.isdigit()):
        raise MergeError(f"city: must be a 6-digit city code, got {city!r}")
    tables = list(tables or SYNC_TABLES)
    for t in tables:
        if t not in SYNC_TABLES:
            raise MergeError(f"tables: {t!r} is not a synced table ({', '.join(SYNC_TABLES)})")
    started = time.monotonic()
    result: dict = {"city": city, "check_mode": check_mode, "status": "failed", "tables": {}}
    prov_admin = psycopg.connect(province_dsn, autocommit=True)
    run_id = None
    try:
        result["aborted_marked"] = 0 if check_mode else _mark_aborted(prov_admin, city)
        if not check_mode:
            run_id = prov_admin.execute(
                "INSERT INTO popdb.job_history (job, city_code) VALUES ('merge', %s) RETURNING run_id",
                (city,),
            ).fetchone()[0]
        result["run_id"] = run_id
        prev = prov_admin.execute(
            "SELECT last_xmin FROM popdb.merge_state WHERE city_code = %s", (city,)
        ).fetchone()
        with psycopg.connect(city_dsn, autocommit=True) as cityc:
            if prev is not None and not check_mode:
                pruned = cityc.execute(
                    "DELETE FROM popdb.change_log WHERE txid < %s::xid8", (str(prev[0]),)
                ).rowcount
                result["change_log_pruned"] = pruned
            args = (check_mode, full, tables, run_id, result, sample_limit, _pause_hook)
            _run(prov_admin, province_dsn, cityc, city, *args)
        result["status"] = "success" if not check_mode else "check"
    except Exception as exc:  # noqa: BLE001 - recorded, masked, re-raised as MergeError
        msg = mask_text(f"{type(exc).__name__}: {exc}")
        result["error"] = msg
        if run_id is not None:
            try:
                prov_admin.execute(
                    "UPDATE popdb.job_history SET status = 'failed', finished_at = clock_timestamp(), "
                    "error = %s WHERE run_id = %s AND status = 'running'",
                    (msg, run_id),
                )
            except Exception:  # noqa: BLE001, S110 - province unreachable: the next run marks it aborted
                pass
        raise MergeError(f"city {city}: merge failed: {msg}") from None
    finally:
        prov_admin.close()
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _run(
    prov_admin, province_dsn, cityc, city, check_mode, full, tables, run_id, result, sample_limit, pause
):
    import psycopg

    with psycopg.connect(province_dsn) as prov:
        prov.execute("SET temp_buffers = '512MB'")
        prov.execute("SET LOCAL work_mem = '256MB'")
        prov.execute("SELECT pg_advisory_xact_lock(%s, %s)", (CITY_LOCK, int(city)))
        row = prov.execute("SELECT last_xmin FROM popdb.merge_state WHERE city_code = %s", (city,)).fetchone()
        prev = _xid(row[0]) if row else None
        full = full or prev is None
        cityc.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap = cityc.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())").fetchone()
        cur_xmin = _xid(snap[0])
        if prev is not None and cur_xmin < prev:
            raise MergeError(
                f"the city's transaction ids went backwards (watermark {prev}, now {cur_xmin}): "
                "was the city database restored or re-created? run with full=true"
            )
        result["mode"] = "full" if full else "incremental"
        result["watermark_from"] = None if prev is None else str(prev)
        result["watermark_to"] = str(cur_xmin)
        totals = TableResult()
        staged = {}
        for t in tables:
            staged[t] = _transfer(prov, cityc, t, city, full, prev, cur_xmin)
            if pause:
                pause("transferred", t)
        cityc.execute("COMMIT")
        prov.execute("SELECT pg_advisory_xact_lock(%s)", (APPLY_LOCK,))
        for t in tables:
            r = _apply(prov, t, staged[t], city, full, run_id, sample_limit)
            result["tables"][t] = {k: v for k, v in r.__dict__.items() if k != "quarantine_samples"}
            result["tables"][t]["quarantine_samples"] = r.quarantine_samples
            for k in ("read", "inserted", "updated", "deleted", "quarantined", "conflicts"):
                setattr(totals, k, getattr(totals, k) + getattr(r, k))
            if pause:
                pause("applied", t)
        for k in ("read", "inserted", "updated", "deleted", "quarantined", "conflicts"):
            result[k] = getattr(totals, k)
        if check_mode:
            prov.rollback()
            return
        prov.execute(
            "INSERT INTO popdb.merge_state (city_code, last_xmin, last_run_id, last_success) "
            "VALUES (%s, %s::text::xid8, %s, now()) ON CONFLICT (city_code) DO UPDATE SET "
            "last_xmin = EXCLUDED.last_xmin, last_run_id = EXCLUDED.last_run_id, last_success = now()",
            (city, str(cur_xmin), run_id),
        )
        prov.execute(
            "UPDATE popdb.job_history SET status = 'success', finished_at = clock_timestamp(), "
            "rows_read = %s, inserted = %s, updated = %s, deleted = %s, quarantined = %s, conflicts = %s, "
            "watermark_from = %s, watermark_to = %s, details = %s::jsonb WHERE run_id = %s",
            (
                totals.read,
                totals.inserted,
                totals.updated,
                totals.deleted,
                totals.quarantined,
                totals.conflicts,
                result["watermark_from"],
                result["watermark_to"],
                _json(
                    {
                        t: {k: v for k, v in d.items() if k != "quarantine_samples"}
                        for t, d in result["tables"].items()
                    }
                ),
                run_id,
            ),
        )
        if pause:
            pause("before_commit", None)
        prov.commit()


def _json(obj) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)


def _transfer(prov, cityc, table, city, full, prev, cur_xmin) -> dict:
    """COPY the touched rows (or all rows) from the city snapshot into a TEMP staging table."""
    pk = SYNC_TABLES[table]
    cols = _columns(prov, table)
    names = [c for c, _ in cols]
    stage = f"stage_{table}"
    prov.execute(f"DROP TABLE IF EXISTS {stage}")
    ddl = ", ".join(f"{_q(c)} {typ}" for c, typ in cols)
    prov.execute(f"CREATE TEMP TABLE {stage} (_pk text, _present boolean, {ddl}) ON COMMIT DROP")
    sel = ", ".join(f"t.{_q(c)}" for c in names)
    if full:
        src = f"SELECT t.{_q(pk)}::text, true, {sel} FROM popdb.{table} t"
    else:
        src = (
            f"SELECT k.pk, t.{_q(pk)} IS NOT NULL, {sel} FROM (SELECT DISTINCT pk FROM popdb.change_log "
            f"WHERE tbl = '{table}' AND txid >= '{prev}'::xid8 AND txid < '{cur_xmin}'::xid8) k "
            f"LEFT JOIN popdb.{table} t ON t.{_q(pk)} = k.pk"
        )
    with cityc.cursor().copy(f"COPY ({src}) TO STDOUT") as out:
        with prov.cursor().copy(f"COPY {stage} FROM STDIN") as inp:
            for data in out:
                inp.write(data)
    if full:  # tombstones for province rows of this city the city no longer has
        prov.execute(
            f"INSERT INTO {stage} (_pk, _present) SELECT x.pk, false FROM ("
            f"SELECT {_q(pk)}::text AS pk FROM popdb.{table} WHERE city_code = %s UNION "
            f"SELECT {_q(pk)}::text FROM popdb.{table}_dup WHERE city_code = %s) x "
            f"WHERE NOT EXISTS (SELECT 1 FROM {stage} s WHERE s._pk = x.pk)",
            (city, city),
        )
    prov.execute(f"ANALYZE {stage}")
    return {"stage": stage, "cols": names, "pk": pk}


def _apply(prov, table, st, city, full, run_id, sample_limit) -> TableResult:
    r = TableResult()
    stage, cols, pk = st["stage"], st["cols"], st["pk"]
    qpk = _q(pk)
    lit_city = f"'{city}'::char(6)"
    vals = ", ".join(lit_city if c == "city_code" else f"s.{_q(c)}" for c in cols)
    collist = ", ".join(_q(c) for c in cols)
    r.read = prov.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]
    # 1. validation -> quarantine (field + reason), keys remembered in qk
    bad = f"_bad_{table}"
    prov.execute(f"DROP TABLE IF EXISTS {bad}")
    prov.execute(
        f"CREATE TEMP TABLE {bad} ON COMMIT DROP AS SELECT * FROM ("
        f"SELECT s._pk, {_reason_sql(table)} AS reason, to_jsonb(s) - '_pk' - '_present' AS row_data "
        f"FROM {stage} s WHERE s._present) x WHERE reason IS NOT NULL"
    )
    r.quarantined = prov.execute(f"SELECT count(*) FROM {bad}").fetchone()[0]
    if r.quarantined:
        prov.execute(
            "INSERT INTO popdb.quarantine (run_id, city_code, tbl, pk, field, reason, row_data) "
            f"SELECT %s, %s, %s, _pk, split_part(reason, ':', 1), reason, row_data FROM {bad}",
            (run_id, city, table),
        )
        for pkv, reason in prov.execute(
            f"SELECT _pk, reason FROM {bad} ORDER BY _pk LIMIT %s", (sample_limit,)
        ).fetchall():
            r.quarantine_samples.append({"key": mask_id(pkv), "reason": mask_text(reason)})
    good = f"s._present AND NOT EXISTS (SELECT 1 FROM {bad} b WHERE b._pk = s._pk)"
    # keys that were quarantined before and now arrive valid (or deleted) are resolved
    prov.execute(
        f"UPDATE popdb.quarantine q SET resolved_at = now() FROM {stage} s WHERE q.city_code = %s "
        f"AND q.tbl = %s AND q.resolved_at IS NULL AND q.pk = s._pk AND (NOT s._present OR "
        f"NOT EXISTS (SELECT 1 FROM {bad} b WHERE b._pk = s._pk)) AND q.run_id IS DISTINCT FROM %s",
        (city, table, run_id),
    )
    # 2. keys in conflict with another city (decided before anything is written)
    ck = f"_ck_{table}"
    prov.execute(f"DROP TABLE IF EXISTS {ck}")
    prov.execute(
        f"CREATE TEMP TABLE {ck} ON COMMIT DROP AS "
        f"SELECT s._pk FROM {stage} s JOIN popdb.{table} t ON t.{qpk} = s._pk AND t.city_code <> {lit_city} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {bad} b WHERE b._pk = s._pk) "
        f"UNION SELECT s._pk FROM {stage} s JOIN popdb.{table}_dup d ON d.{qpk} = s._pk "
        f"WHERE NOT EXISTS (SELECT 1 FROM {bad} b WHERE b._pk = s._pk)"
    )
    nck = prov.execute(f"SELECT count(*) FROM {ck}").fetchone()[0]
    not_ck = f"NOT EXISTS (SELECT 1 FROM {ck} c WHERE c._pk = s._pk)" if nck else "true"
    # 3. plain path: this city's own keys
    distinct = " OR ".join(
        f"t.{_q(c)} IS DISTINCT FROM s.{_q(c)}" for c in cols if c not in (pk, "city_code")
    )
    sets = ", ".join(f"{_q(c)} = s.{_q(c)}" for c in cols if c not in (pk, "city_code"))
    r.updated = prov.execute(
        f"UPDATE popdb.{table} t SET {sets} FROM {stage} s WHERE t.{qpk} = s._pk "
        f"AND t.city_code = {lit_city} AND {good} AND {not_ck} AND ({distinct})"
    ).rowcount
    r.inserted = prov.execute(
        f"INSERT INTO popdb.{table} ({collist}) SELECT {vals} FROM {stage} s WHERE {good} AND {not_ck} "
        f"AND NOT EXISTS (SELECT 1 FROM popdb.{table} t WHERE t.{qpk} = s._pk)"
    ).rowcount
    r.deleted = prov.execute(
        f"DELETE FROM popdb.{table} t USING {stage} s WHERE t.{qpk} = s._pk AND NOT s._present "
        f"AND t.city_code = {lit_city} AND {not_ck}"
    ).rowcount
    if nck:
        _resolve(prov, table, stage, ck, cols, pk, city, good, run_id, r)
    return r


def _resolve(prov, table, stage, ck, cols, pk, city, good, run_id, r: TableResult) -> None:
    """Re-decide the keys that exist in more than one city (RULE) and log the decision."""
    qpk = _q(pk)
    lit_city = f"'{city}'::char(6)"
    collist = ", ".join(_q(c) for c in cols)
    svals = ", ".join(f"{lit_city} AS city_code" if c == "city_code" else f"s.{_q(c)}" for c in cols)
    cand = f"_cand_{table}"
    prov.execute(f"DROP TABLE IF EXISTS {cand}")
    prov.execute(
        f"CREATE TEMP TABLE {cand} ON COMMIT DROP AS SELECT *, row_number() OVER (PARTITION BY {qpk} "
        f"ORDER BY updated_at DESC, city_code ASC) AS rk FROM ("
        f"SELECT {svals} FROM {stage} s JOIN {ck} c ON c._pk = s._pk WHERE {good} "
        f"UNION ALL SELECT {collist} FROM popdb.{table} t WHERE t.{qpk} IN (SELECT _pk FROM {ck}) "
        f"AND t.city_code <> {lit_city} "
        f"UNION ALL SELECT {collist} FROM popdb.{table}_dup d WHERE d.{qpk} IN (SELECT _pk FROM {ck}) "
        f"AND d.city_code <> {lit_city}) x"
    )
    own_before = prov.execute(
        f"SELECT count(*) FROM popdb.{table} t JOIN {ck} c ON c._pk = t.{qpk} WHERE t.city_code = {lit_city}"
    ).fetchone()[0]
    prov.execute(f"DELETE FROM popdb.{table} t USING {ck} c WHERE t.{qpk} = c._pk")
    prov.execute(f"DELETE FROM popdb.{table}_dup d USING {ck} c WHERE d.{qpk} = c._pk")
    prov.execute(f"INSERT INTO popdb.{table} ({collist}) SELECT {collist} FROM {cand} WHERE rk = 1")
    prov.execute(f"INSERT INTO popdb.{table}_dup ({collist}) SELECT {collist} FROM {cand} WHERE rk > 1")
    own_after = prov.execute(
        f"SELECT count(*) FROM popdb.{table} t JOIN {ck} c ON c._pk = t.{qpk} WHERE t.city_code = {lit_city}"
    ).fetchone()[0]
    logged = prov.execute(
        "INSERT INTO popdb.merge_conflict (run_id, tbl, pk, winner_city, loser_city, winner_updated_at, "
        f"loser_updated_at, rule) SELECT %s, %s, w.{qpk}, w.city_code, l.city_code, w.updated_at, "
        "l.updated_at, %s "
        f"FROM {cand} w JOIN {cand} l ON l.{qpk} = w.{qpk} AND l.rk > 1 WHERE w.rk = 1",
        (run_id, table, RULE),
    ).rowcount
    r.conflicts += logged
    if own_after > own_before:
        r.inserted += own_after - own_before
    elif own_before > own_after:
        r.deleted += own_before - own_after


def job_history(province_dsn: str, city: str | None = None, limit: int = 20) -> list[dict]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(province_dsn, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT run_id, job, city_code, started_at, finished_at, rows_read, inserted, updated, deleted, "
            "quarantined, conflicts, status, error FROM popdb.job_history WHERE job = 'merge' "
            "AND (%s::text IS NULL OR city_code = %s) ORDER BY run_id DESC LIMIT %s",
            (city, city, limit),
        ).fetchall()
    return rows
