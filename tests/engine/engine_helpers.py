"""Shared helpers of the data-engine tests: databases, checksums, expected province state."""

from __future__ import annotations

import psycopg
from ansible.module_utils.popdb_schema import SYNC_TABLES, migrate


def make_dbs(pg_server, prefix: str, cities: list[str]) -> tuple[str, dict[str, str]]:
    prov = pg_server.create_db(f"{prefix}_prov")
    with psycopg.connect(prov, autocommit=True) as c:
        migrate(c, "province")
    dsns = {}
    for city in cities:
        dsns[city] = pg_server.create_db(f"{prefix}_{city}")
        with psycopg.connect(dsns[city], autocommit=True) as c:
            migrate(c, "city")
    return prov, dsns


def _cols(conn, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attname <> 'city_code' ORDER BY attnum",
        (f"popdb.{table}",),
    ).fetchall()
    return [r[0] for r in rows]


def rows_of(dsn: str, table: str, where: str = "true") -> dict[str, tuple]:
    """pk -> full row (without city_code), as text."""
    with psycopg.connect(dsn) as c:
        cols = _cols(c, table)
        pk = SYNC_TABLES[table]
        sel = ", ".join(f"{x}::text" for x in cols)
        out = {}
        for row in c.execute(f"SELECT {pk}, {sel} FROM popdb.{table} WHERE {where}").fetchall():
            out[row[0]] = tuple(row[1:])
        return out


def expected_province(city_dsns: dict[str, str], table: str, valid_where: str = "true"):
    """The documented rule applied to the union of the cities: newest updated_at, tie lower city."""
    best: dict[str, tuple] = {}
    losers: dict[str, set] = {}
    with_city: dict[str, list] = {}
    for city, dsn in city_dsns.items():
        with psycopg.connect(dsn) as c:
            cols = _cols(c, table)
            ui = cols.index("updated_at")
            pk = SYNC_TABLES[table]
            sel = ", ".join(f"{x}::text" for x in cols)
            for row in c.execute(
                f"SELECT {pk}, extract(epoch from updated_at), {sel} FROM popdb.{table} s WHERE {valid_where}"
            ).fetchall():
                with_city.setdefault(row[0], []).append((-float(row[1]), city, tuple(row[2:])))
    del ui
    for key, versions in with_city.items():
        versions.sort()
        best[key] = (versions[0][1], versions[0][2])
        losers[key] = {v[1] for v in versions[1:]}
    return best, losers


def province_state(prov_dsn: str, table: str):
    with psycopg.connect(prov_dsn) as c:
        cols = _cols(c, table)
        pk = SYNC_TABLES[table]
        sel = ", ".join(f"{x}::text" for x in cols)
        main = {
            r[0]: (r[1], tuple(r[2:]))
            for r in c.execute(f"SELECT {pk}, city_code, {sel} FROM popdb.{table}").fetchall()
        }
        dups: dict[str, set] = {}
        for k, city in c.execute(f"SELECT {pk}, city_code FROM popdb.{table}_dup").fetchall():
            dups.setdefault(k, set()).add(city)
        return main, dups


CHECKSUM = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(row(p.*)::text), 1, 15))::bit(60)::bigint), 0) "
    "FROM (SELECT {cols} FROM popdb.{table} {where}) p"
)


def checksum(dsn: str, table: str, where: str = "") -> tuple[int, int]:
    """Order-independent checksum query (count, sum of row hashes), city_code excluded."""
    with psycopg.connect(dsn) as c:
        cols = ", ".join(_cols(c, table))
        return tuple(c.execute(CHECKSUM.format(cols=cols, table=table, where=where)).fetchone())
