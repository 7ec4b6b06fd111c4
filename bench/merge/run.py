#!/usr/bin/env python3
"""Benchmark of the data engine (not part of `make test`).

1. Incremental merge: N (default 1,000,000) changed persons in one city merged by popdb_merge
   (all synced tables; the city also has households, births, deaths) vs two baselines measured
   in the same run on the same rows:
   (a) floor: plain COPY of the same person rows from the city into an empty province table with
       the same definition and indexes (``LIKE popdb.person INCLUDING ALL``);
   (b) naive: row-by-row upsert (one INSERT ... ON CONFLICT per row, one transaction), on a 50k
       subset, scaled to N.
   Two merge cases: the first load of the city (all inserts) and a night where every person changed
   (all updates, incremental through the change log).
2. Consolidation: 17 cities holding 5.8M persons in total (10% of Hubei), rows per second.

  .venv/bin/python bench/merge/run.py [--persons 1000000] [--naive 50000] [--consolidate 5800000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import ansible.module_utils  # noqa: E402

ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))
import psycopg  # noqa: E402
from ansible.module_utils.popdb_consolidate import consolidate  # noqa: E402
from ansible.module_utils.popdb_generate import CITIES, generate, generate_city  # noqa: E402
from ansible.module_utils.popdb_merge import merge_city  # noqa: E402
from ansible.module_utils.popdb_schema import migrate  # noqa: E402
from pgserver import start_server  # noqa: E402

CITY = "420100"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def fresh(server, name, role):
    dsn = server.create_db(name)
    with psycopg.connect(dsn, autocommit=True) as c:
        migrate(c, role)
    return dsn


def floor_copy(prov, city_dsn, cols):
    """(a) plain COPY of the city's person rows into an empty table with the same definition and indexes."""
    with psycopg.connect(prov, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS public.floor_person")
        c.execute("CREATE TABLE public.floor_person (LIKE popdb.person INCLUDING ALL)")
    collist = ", ".join(cols)

    def run():
        with psycopg.connect(city_dsn) as src, psycopg.connect(prov) as dst:
            with src.cursor().copy(f"COPY (SELECT {collist} FROM popdb.person) TO STDOUT") as out:
                with dst.cursor().copy(f"COPY public.floor_person ({collist}) FROM STDIN") as inp:
                    for data in out:
                        inp.write(data)
            dst.commit()

    t, _ = timed(run)
    with psycopg.connect(prov, autocommit=True) as c:
        n = c.execute("SELECT count(*) FROM public.floor_person").fetchone()[0]
        c.execute("DROP TABLE public.floor_person")
    return t, n


def naive_upsert(prov, city_dsn, cols, limit):
    """(b) row-by-row upsert of `limit` rows (what a naive nightly job does)."""
    with psycopg.connect(prov, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS public.naive_person")
        c.execute("CREATE TABLE public.naive_person (LIKE popdb.person INCLUDING ALL)")
    collist = ", ".join(cols)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "id_no")
    sql = (
        f"INSERT INTO public.naive_person ({collist}) VALUES ({', '.join(['%s'] * len(cols))}) "
        f"ON CONFLICT (id_no) DO UPDATE SET {sets}"
    )

    def run():
        with psycopg.connect(city_dsn) as src, psycopg.connect(prov) as dst:
            rows = src.execute(f"SELECT {collist} FROM popdb.person LIMIT %s", (limit,)).fetchall()
            for row in rows:
                dst.execute(sql, row)
            dst.commit()

    t, _ = timed(run)
    with psycopg.connect(prov, autocommit=True) as c:
        c.execute("DROP TABLE public.naive_person")
    return t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--naive", type=int, default=50_000)
    ap.add_argument("--consolidate", type=int, default=5_800_000, help="0 to skip")
    a = ap.parse_args()
    server = start_server()
    try:
        prov = fresh(server, "bench_prov", "province")
        city_dsn = fresh(server, "bench_city", "city")
        t, m = timed(lambda: generate_city(city_dsn, CITY, a.persons, seed=1, capture=False))
        print(f"generated {m['persons']:,} persons, {m['households']:,} households, {m['births']:,} births, "
              f"{m['deaths']:,} deaths in {t:.1f} s ({m['persons'] / t:,.0f} persons/s)")  # fmt: skip
        with psycopg.connect(prov) as c:
            cols = [r[0] for r in c.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'popdb.person'::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum").fetchall()]  # fmt: skip
        with psycopg.connect(city_dsn, autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        t_floor, n_floor = floor_copy(prov, city_dsn, cols)
        print(f"(a) floor: COPY {n_floor:,} person rows into an empty indexed table: {t_floor:.2f} s")
        # merge 1: first load of the city (inserts)
        t_ins, r = timed(lambda: merge_city(prov, city_dsn, CITY, tables=["person"]))
        print(f"merge (first load, person only): {r['inserted']:,} inserted in {t_ins:.2f} s "
              f"-> {t_ins / t_floor:.2f}x floor")  # fmt: skip
        # merge 2: every person changed (incremental via the change log)
        with psycopg.connect(city_dsn, autocommit=True) as c:
            flip = "UPDATE popdb.person SET education = CASE education WHEN '90' THEN '80' ELSE '90' END"
            t_upd, _ = timed(lambda: c.execute(flip))
            c.execute("VACUUM ANALYZE popdb.person")
            nlog = c.execute("SELECT count(*) FROM popdb.change_log").fetchone()[0]
        print(f"city: {nlog:,} persons changed in one UPDATE ({t_upd:.1f} s incl. change capture)")
        with psycopg.connect(prov, autocommit=True) as c:
            c.execute("VACUUM ANALYZE popdb.person")
        t_chg, r = timed(lambda: merge_city(prov, city_dsn, CITY, tables=["person"]))
        print(f"merge (incremental, {r['read']:,} changed persons): {r['updated']:,} updated "
              f"in {t_chg:.2f} s -> {t_chg / t_floor:.2f}x floor")  # fmt: skip
        t_naive = naive_upsert(prov, city_dsn, cols, a.naive)
        scaled = t_naive * a.persons / a.naive
        print(f"(b) naive row-by-row upsert: {a.naive:,} rows in {t_naive:.2f} s, scaled to {a.persons:,}: "
              f"{scaled:.1f} s")  # fmt: skip
        print("RATIOS")
        print(f"  merge first load / floor          = {t_ins / t_floor:.2f}  (target <= 2.0)")
        print(f"  merge all-changed / floor         = {t_chg / t_floor:.2f}  (target <= 2.0)")
        print(f"  naive / merge first load          = {scaled / t_ins:.1f}x slower")
        print(f"  naive / merge all-changed         = {scaled / t_chg:.1f}x slower")
        # whole-city merge incl. households, births, deaths (full sync of a second province)
        prov2 = fresh(server, "bench_prov2", "province")
        t_all, r = timed(lambda: merge_city(prov2, city_dsn, CITY))
        print(f"merge all tables (full, {r['read']:,} rows): {t_all:.2f} s, {r['read'] / t_all:,.0f} rows/s")
        for name in ("bench_prov", "bench_prov2"):
            with psycopg.connect(server.dsn(), autocommit=True) as c:
                c.execute(f"DROP DATABASE {name} WITH (FORCE)")
        if a.consolidate:
            dsns = {c: fresh(server, f"bench_c{c}", "city") for c in CITIES}
            provc = fresh(server, "bench_provc", "province")
            t, m = timed(lambda: generate(dsns, a.consolidate, seed=2, capture=False))
            print(f"generated {m['persons']:,} persons in 17 cities in {t:.1f} s ({m['persons'] / t:,.0f}/s)")
            t, r = timed(lambda: consolidate(provc, dsns, period="2026-11-1", retention=6))
            persons = sum(c["tables"]["person"]["rows"] for c in r["cities"].values())
            ok = not r["failed"]
            print(f"consolidation of 17 cities: {persons:,} persons, {r['rows']:,} rows in {t:.1f} s "
                  f"= {persons / t:,.0f} persons/s, {r['rows'] / t:,.0f} rows/s (ok: {ok})")  # fmt: skip
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
