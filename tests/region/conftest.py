"""Fixtures of the division-change tests: one generated province (~20k persons) per session,
copied per test with CREATE DATABASE ... TEMPLATE (real PostgreSQL, no mocks)."""

from __future__ import annotations

import psycopg
import pytest
from regionlib import SEED, _clone, city_sizes, copy_tables


@pytest.fixture(scope="session")
def province_template(pg_server):
    """All 17 cities generated (data engine's generator, clean data) and loaded into a province DB."""
    from ansible.module_utils import popdb_generate as G
    from ansible.module_utils import popdb_schema

    src = pg_server.create_db("region_src")
    for city, n in city_sizes().items():
        G.generate_city(src, city, n, seed=SEED, capture=False)
    name = "region_tpl"
    dsn = pg_server.create_db(name)
    with psycopg.connect(src) as s, psycopg.connect(dsn) as d:
        popdb_schema.migrate(d, "province")
        G.load_regions(d, list(G.CITIES))
        d.commit()
        copy_tables(
            s, d, {f"popdb.{t}": "true" for t in ("person", "household", "birth_event", "death_event")}
        )
        d.commit()
    with psycopg.connect(pg_server.dsn(), autocommit=True) as c:
        c.execute('DROP DATABASE "region_src" WITH (FORCE)')
    return name


@pytest.fixture
def prov_dsn(pg_server, province_template):
    return _clone(pg_server, province_template, "prov")


@pytest.fixture
def prov(prov_dsn):
    conn = psycopg.connect(prov_dsn)
    yield conn
    conn.close()
