"""Synthetic generator on a real PostgreSQL: valid IDs, exact defect rates, realism, determinism."""

from __future__ import annotations

import psycopg
import pytest
from ansible.module_utils.popdb_generate import check_char, city_sizes, generate, id_valid, region_rows
from ansible.module_utils.popdb_merge import merge_city
from engine_helpers import checksum, make_dbs

CITIES = ["420100", "420500", "429021"]
TOTAL = 6000
DEFECTS = {
    "bad_check_digit": 0.01,
    "missing_fields": 0.012,
    "impossible_dates": 0.005,
    "sex_mismatch": 0.008,
    "dup_cross_city": 0.01,
}


@pytest.fixture(scope="module")
def gen(pg_server):
    prov, dsns = make_dbs(pg_server, "gen", CITIES)
    manifest = generate(dsns, TOTAL, seed=11, defects=DEFECTS, province_dsn=prov)
    return prov, dsns, manifest


def q(dsn, sql):
    with psycopg.connect(dsn) as c:
        return c.execute(sql).fetchone()[0]


def test_check_digit_known_value():
    assert check_char("11010519491231002") == "X"  # GB 11643 example
    assert id_valid("11010519491231002X") and not id_valid("110105194912310021")


def test_every_clean_id_validates_and_defects_match(gen):
    _, dsns, m = gen
    sizes = city_sizes(TOTAL, CITIES)
    for kind, rate in DEFECTS.items():
        want = sum(round(rate * n) for n in sizes.values())
        assert m["defects"][kind] == want
        assert abs(want / TOTAL - rate) <= len(CITIES) / TOTAL
    counted = {k: 0 for k in DEFECTS}
    ids: dict[str, int] = {}
    for dsn in dsns.values():
        with psycopg.connect(dsn) as c:
            rows = c.execute(
                "SELECT id_no, name, sex, birth_date, hukou_region, to_char(birth_date, 'YYYYMMDD') "
                "FROM popdb.person"
            ).fetchall()
        for id_no, name, sex, bd, hukou, bds in rows:
            ids[id_no] = ids.get(id_no, 0) + 1
            if not id_valid(id_no):
                counted["bad_check_digit"] += 1
                assert id_valid(id_no[:17] + check_char(id_no[:17]))  # only the check digit is wrong
                continue
            if None in (name, sex, bd, hukou):
                counted["missing_fields"] += 1
                continue
            if bds > "20251231":
                counted["impossible_dates"] += 1
                continue
            if (int(id_no[16]) % 2 == 1) != (sex == "1"):
                counted["sex_mismatch"] += 1
                continue
            # clean record: consistent with the ID number
            assert bds == id_no[6:14] and hukou[:6] == id_no[:6]
    counted["dup_cross_city"] = sum(1 for n in ids.values() if n > 1)
    assert counted == m["defects"]


def test_realism(gen):
    prov, dsns, m = gen
    dsn = dsns["420100"]
    n = q(dsn, "SELECT count(*) FROM popdb.person")
    floating = q(dsn, "SELECT count(*) FROM popdb.person WHERE floating_region IS NOT NULL")
    assert 0.07 < floating / n < 0.11
    assert q(dsn, "SELECT count(*) FROM popdb.person WHERE floating_region IS NOT NULL "
                  "AND substr(floating_region, 1, 6) = substr(hukou_region, 1, 6)") == 0  # fmt: skip
    child = q(dsn, "SELECT count(*) FROM popdb.person WHERE birth_date > DATE '2011-01-01'")
    old = q(dsn, "SELECT count(*) FROM popdb.person WHERE birth_date < DATE '1960-12-31'")
    assert 0.08 < child / n < 0.30 and 0.10 < old / n < 0.35
    # births: mothers aged 15-49 at the birth, rates near the age-specific fertility
    births = q(dsn, "SELECT count(*) FROM popdb.birth_event")
    assert births > 0
    # (sex and birth date taken from the mother's ID number, which defects leave intact)
    mothers_ok = (
        "SELECT count(*) FROM popdb.birth_event b WHERE substr(b.mother_id_no, 17, 1)::int % 2 <> 0 "
        "OR age(b.birth_date, to_date(substr(b.mother_id_no, 7, 8), 'YYYYMMDD')) "
        "NOT BETWEEN interval '15 years' AND interval '50 years'"
    )
    assert q(dsn, mothers_ok) == 0  # fmt: skip
    women = q(
        dsn,
        "SELECT count(*) FROM popdb.person WHERE sex = '2' "
        "AND birth_date BETWEEN '1976-01-01' AND '2010-12-31'",
    )
    assert 0.01 < births / women < 0.08
    # deaths, households, dictionary
    assert 0.002 < q(dsn, "SELECT count(*) FROM popdb.death_event") / n < 0.02
    assert q(dsn, "SELECT count(*) FROM popdb.person WHERE household_id IS NULL") == 0
    unknown_region = (
        "SELECT count(*) FROM popdb.person p WHERE NOT EXISTS "
        "(SELECT 1 FROM popdb.region r WHERE r.code = p.residence_region AND r.level = 5)"
    )
    assert q(dsn, unknown_region) == 0
    assert q(prov, "SELECT count(DISTINCT substr(code, 1, 6)) FROM popdb.region WHERE level = 2") == 17
    assert len(region_rows(["420100"])) == q(dsn, "SELECT count(*) FROM popdb.region")
    assert q(dsn, "SELECT count(*) FROM popdb.fertile_women") > 0


def test_deterministic_by_seed(gen, pg_server):
    _, dsns, m = gen
    _, again = make_dbs(pg_server, "gen2", CITIES)
    m2 = generate(again, TOTAL, seed=11, defects=DEFECTS)
    assert m2 == m
    for city in CITIES:
        for t in ("person", "household", "birth_event", "death_event"):
            assert checksum(again[city], t) == checksum(dsns[city], t)
    _, other = make_dbs(pg_server, "gen3", ["429021"])
    generate(other, 300, seed=12)
    assert checksum(other["429021"], "person") != checksum(dsns["429021"], "person")


def test_merge_quarantines_exactly_the_defects(gen):
    prov, dsns, m = gen
    quarantined = conflicts = 0
    for city in CITIES:
        r = merge_city(prov, dsns[city], city)
        quarantined += r["tables"]["person"]["quarantined"]
        conflicts += r["tables"]["person"]["conflicts"]
    d = m["defects"]
    assert (
        quarantined == d["bad_check_digit"] + d["missing_fields"] + d["impossible_dates"] + d["sex_mismatch"]
    )
    assert q(prov, "SELECT count(*) FROM popdb.person_dup") == d["dup_cross_city"]
    assert q(prov, "SELECT count(DISTINCT pk) FROM popdb.merge_conflict") == d["dup_cross_city"]
    with psycopg.connect(prov) as c:
        reasons = dict(c.execute("SELECT field, count(*) FROM popdb.quarantine GROUP BY 1").fetchall())
    assert reasons["id_no"] == d["bad_check_digit"]


def test_bad_defect_config_is_named():
    with pytest.raises(ValueError, match="defects: unknown defect type"):
        generate({"420100": "dbname=none"}, 10, defects={"bogus": 0.1})
    with pytest.raises(ValueError, match="defects.sex_mismatch"):
        generate({"420100": "dbname=none"}, 10, defects={"sex_mismatch": 0.9})
