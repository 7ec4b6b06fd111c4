"""Push the region dictionary + mapping to downstream business systems and verify arrival.

The pushed data set is one row per division: code, name, level, parent code, national code (from
``popdb.region_mapping``). Its checksum (sha256 over the rows in code order, ``|``-separated) is
the version. A downstream is either

- ``{name, type: db, dsn, table}``: a PostgreSQL table (created when missing) replaced in one
  transaction, with the checksum kept in ``<table>_version``; arrival is verified by reading the rows
  back and recomputing the checksum;
- ``{name, type: http, url, headers, timeout}``: the JSON document ``{version, checksum, rows}`` is
  PUT to the URL; arrival is verified by GET of the same URL and recomputing the checksum of the rows
  it returns.

A downstream already holding the same checksum is left alone (changed=false). A failing downstream
does not stop the others; it is reported with its error.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request

COLUMNS = ("code", "name", "level", "parent_code", "national_code")


class DownstreamError(Exception):
    pass


def dataset(conn) -> list[list]:
    cur = conn.execute(
        "SELECT r.code, r.name, r.level, r.parent_code, "
        "(SELECT min(m.national_code) FROM popdb.region_mapping m "
        "WHERE m.provincial_code = r.code AND m.version = 'current') "
        "FROM popdb.region r ORDER BY r.code"
    )
    return [[c, n, int(lv), p, nc] for c, n, lv, p, nc in cur.fetchall()]


def checksum(rows) -> str:
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r[0]):
        h.update(("|".join("" if v is None else str(v).strip() for v in r) + "\n").encode())
    return h.hexdigest()


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", name):
        raise DownstreamError(f"table {name!r} is not a plain [schema.]table name")
    return name


def _db_push(ds: dict, rows: list, digest: str, check: bool) -> dict:
    import psycopg

    table = _ident(ds.get("table", "popdb_region_dict"))
    vtable = table + "_version"
    with psycopg.connect(ds["dsn"]) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (code char(12) PRIMARY KEY, name text NOT NULL, "
            "level smallint NOT NULL, parent_code char(12), national_code char(12))"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {vtable} (checksum text NOT NULL, pushed_at timestamptz NOT NULL)"
        )
        have = conn.execute(f"SELECT checksum FROM {vtable}").fetchone()
        if have and have[0] == digest and _db_checksum(conn, table) == digest:
            conn.rollback()
            return {"changed": False, "verified": True, "rows": len(rows)}
        if check:
            conn.rollback()
            return {"changed": True, "verified": None, "rows": len(rows)}
        conn.execute(f"DELETE FROM {table}")
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        conn.execute(f"DELETE FROM {vtable}")
        conn.execute(f"INSERT INTO {vtable} VALUES (%s, now())", (digest,))
        conn.commit()
    with psycopg.connect(ds["dsn"]) as conn:  # verify on a fresh session: what a reader sees
        got = _db_checksum(conn, table)
    if got != digest:
        raise DownstreamError(f"verification failed: table {table} holds checksum {got}, pushed {digest}")
    return {"changed": True, "verified": True, "rows": len(rows)}


def _db_checksum(conn, table: str) -> str:
    return checksum(
        [list(r) for r in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY code").fetchall()]
    )


def _http(method: str, ds: dict, body: bytes | None = None):
    req = urllib.request.Request(ds["url"], data=body, method=method)
    req.add_header("Content-Type", "application/json; charset=utf-8")
    for k, v in (ds.get("headers") or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=float(ds.get("timeout", 30))) as resp:
            data = resp.read()
            return resp.status, data
    except urllib.error.HTTPError as exc:
        if method == "GET" and exc.code == 404:
            return 404, b""
        raise DownstreamError(f"{method} {ds['url']}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownstreamError(f"{method} {ds['url']}: {getattr(exc, 'reason', exc)}") from exc


def _http_checksum(ds: dict) -> str | None:
    status, data = _http("GET", ds)
    if status == 404 or not data:
        return None
    try:
        doc = json.loads(data)
        return checksum(doc["rows"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DownstreamError(f"GET {ds['url']}: response is not a pushed region document ({exc})") from exc


def _http_push(ds: dict, rows: list, digest: str, check: bool) -> dict:
    if _http_checksum(ds) == digest:
        return {"changed": False, "verified": True, "rows": len(rows)}
    if check:
        return {"changed": True, "verified": None, "rows": len(rows)}
    body = json.dumps(
        {"version": digest[:16], "checksum": digest, "columns": list(COLUMNS), "rows": rows},
        ensure_ascii=False,
    ).encode()
    _http("PUT", ds, body)
    got = _http_checksum(ds)
    if got != digest:
        raise DownstreamError(f"verification failed: {ds['url']} returns checksum {got}, pushed {digest}")
    return {"changed": True, "verified": True, "rows": len(rows)}


def push_all(conn, downstreams: list[dict], check: bool = False) -> dict:
    rows = dataset(conn)
    digest = checksum(rows)
    results, failed = [], []
    for ds in downstreams:
        name = ds.get("name") or ds.get("url") or ds.get("table")
        try:
            if ds.get("type") == "db":
                r = _db_push(ds, rows, digest, check)
            elif ds.get("type") == "http":
                r = _http_push(ds, rows, digest, check)
            else:
                raise DownstreamError(f"type {ds.get('type')!r} must be db or http")
            results.append({"name": name, "type": ds["type"], **r})
        except Exception as exc:  # one failing downstream must not stop the others
            results.append(
                {"name": name, "type": ds.get("type"), "changed": False, "verified": False, "error": str(exc)}
            )
            failed.append(name)
    return {
        "checksum": digest,
        "rows": len(rows),
        "downstreams": results,
        "failed": failed,
        "changed": any(r["changed"] for r in results),
    }
