"""popdb_merge on a real PostgreSQL: exactly once, deletes, conflicts, quarantine, check mode, kills."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from ansible.module_utils.popdb_generate import check_char, region_tree
from ansible.module_utils.popdb_merge import MergeError, merge_city
from engine_helpers import checksum, expected_province, make_dbs, province_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CITIES = ["420100", "420500", "429021"]
HERE = os.path.dirname(os.path.abspath(__file__))
PERSON_COLS = (
    "id_no, name, sex, birth_date, ethnicity, marital_status, education, household_id, hukou_region, "
    "residence_region, mgmt_unit, status, city_code, created_at, updated_at"
)


def make_id(county: str, n: int, sex: str) -> str:
    birth = dt.date(1950, 1, 1) + dt.timedelta(days=n * 37 % 25000)
    seq = (n % 400) * 2 + (1 if sex == "1" else 2)
    f17 = f"{county}{birth:%Y%m%d}{seq:03d}"
    return f17 + check_char(f17)


def person_row(city: str, n: int, version: int = 0, ts: dt.datetime | None = None, county_city=None):
    tree = region_tree(county_city or city)
    county = tree.counties[n % len(tree.counties)]
    sex = "1" if n % 2 else "2"
    id_no = make_id(county, n, sex)
    village = tree.villages[county][n % len(tree.villages[county])]
    birth = f"{id_no[6:10]}-{id_no[10:12]}-{id_no[12:14]}"
    ts = ts or dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=version)
    return (id_no, f"张{n}v{version}", sex, birth, "01", "20", "70", f"{county}{n:010d}", village, village,
            village[:9] + "000", "1", city, ts, ts)  # fmt: skip


def insert(dsn: str, rows) -> None:
    with psycopg.connect(dsn) as c:
        with c.cursor() as cur:
            cur.executemany(
                f"INSERT INTO popdb.person ({PERSON_COLS}) VALUES ({', '.join(['%s'] * 15)})", rows
            )


def reset(prov: str, dsns: dict[str, str]) -> None:
    for dsn in dsns.values():
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(
                "TRUNCATE popdb.person, popdb.household, popdb.birth_event, popdb.death_event, "
                "popdb.change_log"
            )
    with psycopg.connect(prov, autocommit=True) as c:
        c.execute(
            "TRUNCATE popdb.person, popdb.household, popdb.birth_event, popdb.death_event, popdb.person_dup, "
            "popdb.merge_state, popdb.merge_conflict, popdb.job_history, popdb.quarantine"
        )


def assert_province_is_union(prov: str, dsns: dict[str, str]) -> None:
    """Province == the rule applied to the union of the cities (row by row and by checksum query)."""
    best, losers = expected_province(dsns, "person")
    main, dups = province_state(prov, "person")
    assert {k: v for k, v in main.items()} == best
    assert {k: v for k, v in dups.items() if v} == {k: v for k, v in losers.items() if v}
    # checksum query: province vs the winning rows of each city
    total = [0, 0]
    for city, dsn in dsns.items():
        keys = [k for k, (c, _) in best.items() if c == city]
        if keys:
            n, s = checksum(
                dsn, "person", "WHERE id_no = ANY(ARRAY[" + ",".join(f"'{k}'" for k in keys) + "])"
            )
            total[0] += n
            total[1] += s
    assert tuple(total) == checksum(prov, "person")


@pytest.fixture(scope="module")
def dbs(pg_server):
    return make_dbs(pg_server, "merge", CITIES)


# ------------------------------------------------------------------ property-based
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.sampled_from(CITIES), st.integers(0, 40), st.integers(1, 6)),
        st.tuples(st.just("update"), st.sampled_from(CITIES), st.integers(0, 40), st.integers(1, 6)),
        st.tuples(st.just("delete"), st.sampled_from(CITIES), st.integers(0, 40), st.integers(1, 4)),
        st.tuples(st.just("dup"), st.sampled_from(CITIES), st.integers(0, 40), st.integers(-2, 2)),
        st.tuples(st.just("merge"), st.sampled_from(CITIES), st.just(0), st.just(0)),
        st.tuples(st.just("killed_merge"), st.sampled_from(CITIES), st.integers(0, 3), st.just(0)),
    ),
    min_size=3,
    max_size=14,
)


def run_op(op, dsns, version):
    kind, city, n, k = op
    dsn = dsns[city]
    if kind == "insert":
        rows = [person_row(city, m, version) for m in range(n, n + k)]
        with psycopg.connect(dsn) as c:
            with c.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO popdb.person ({PERSON_COLS}) VALUES ({', '.join(['%s'] * 15)}) "
                    "ON CONFLICT (id_no) DO NOTHING",
                    rows,
                )
    elif kind == "update":
        with psycopg.connect(dsn) as c:
            c.execute(
                "UPDATE popdb.person SET name = %s, education = '60' WHERE id_no IN "
                "(SELECT id_no FROM popdb.person ORDER BY id_no OFFSET %s LIMIT %s)",
                (f"李{version}", n % 7, k),
            )
    elif kind == "delete":
        with psycopg.connect(dsn) as c:
            c.execute(
                "DELETE FROM popdb.person WHERE id_no IN (SELECT id_no FROM popdb.person ORDER BY id_no "
                "OFFSET %s LIMIT %s)",
                (n % 5, k),
            )
    elif kind == "dup":  # the same person registered in the next city, older/newer/same updated_at
        other = CITIES[(CITIES.index(city) + 1) % len(CITIES)]
        ts = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=version + k)
        row = person_row(other, n, version, ts=ts, county_city=city)
        with psycopg.connect(dsns[other]) as c:
            c.execute(
                f"INSERT INTO popdb.person ({PERSON_COLS}) VALUES ({', '.join(['%s'] * 15)}) "
                "ON CONFLICT (id_no) DO NOTHING",
                row,
            )
    elif kind == "merge":
        merge_city(PROV[0], dsn, city)
    elif kind == "killed_merge":  # a merge SIGKILLed inside its province transaction
        kill_merge_at(PROV[0], dsn, city, KILL_POINTS[n])


KILL_POINTS = ["transferred:person", "applied:person", "applied:birth_event", "before_commit:"]


def kill_merge_at(prov, dsn, city, stage):
    import tempfile

    marker = os.path.join(tempfile.mkdtemp(prefix="popdb-kill-"), "reached")
    proc = _child(prov, dsn, city, stage, marker)
    deadline = time.monotonic() + 60
    while not os.path.exists(marker):
        assert proc.poll() is None, "merge child exited before reaching the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.unlink(marker)
    os.rmdir(os.path.dirname(marker))


PROV: list[str] = []


@settings(
    max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
@given(ops=OPS)
def test_property_province_equals_union(dbs, ops):
    prov, dsns = dbs
    PROV[:] = [prov]
    reset(prov, dsns)
    for version, op in enumerate(ops, 1):
        run_op(op, dsns, version)
    for city in CITIES:
        merge_city(prov, dsns[city], city)
    assert_province_is_union(prov, dsns)
    # a further round changes nothing (nothing applied twice)
    for city in CITIES:
        r = merge_city(prov, dsns[city], city)
        assert (r["inserted"], r["updated"], r["deleted"]) == (0, 0, 0)
    assert_province_is_union(prov, dsns)


# ------------------------------------------------------------------ kills
def _child(prov, dsn, city, stage=None, marker=None):
    args = [sys.executable, os.path.join(HERE, "merge_child.py"), prov, dsn, city]
    if stage:
        args += [stage, marker]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize(
    "stage", ["transferred:person", "applied:person", "applied:death_event", "before_commit:"]
)
def test_kill_mid_apply_then_rerun(dbs, tmp_path, stage):
    prov, dsns = dbs
    reset(prov, dsns)
    city = "420100"
    insert(dsns[city], [person_row(city, m) for m in range(60)])
    merge_city(prov, dsns[city], city)
    with psycopg.connect(dsns[city]) as c:
        c.execute(
            "UPDATE popdb.person SET name = name || '改' WHERE id_no IN "
            "(SELECT id_no FROM popdb.person ORDER BY id_no LIMIT 20)"
        )
        c.execute(
            "DELETE FROM popdb.person WHERE id_no IN "
            "(SELECT id_no FROM popdb.person ORDER BY id_no DESC LIMIT 7)"
        )
    insert(dsns[city], [person_row(city, m) for m in range(100, 130)])
    before = checksum(prov, "person")
    marker = str(tmp_path / "reached")
    proc = _child(prov, dsns[city], city, stage, marker)
    deadline = time.monotonic() + 60
    while not os.path.exists(marker):
        assert proc.poll() is None, "merge child exited before reaching the kill point"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)  # the server notices the dead client and rolls back
    assert checksum(prov, "person") == before  # nothing half-applied
    r = merge_city(prov, dsns[city], city)
    assert r["aborted_marked"] == 1
    assert (r["inserted"], r["updated"], r["deleted"]) == (30, 20, 7)
    assert_province_is_union(prov, {city: dsns[city]})
    with psycopg.connect(prov) as c:
        statuses = [
            s for (s,) in c.execute("SELECT status FROM popdb.job_history ORDER BY run_id").fetchall()
        ]
    assert statuses == ["success", "aborted", "success"]


def test_kill_at_random_points(dbs):
    prov, dsns = dbs
    reset(prov, dsns)
    rnd = random.Random(6)
    city = "420500"
    for round_ in range(4):
        insert(dsns[city], [person_row(city, m, round_) for m in range(round_ * 500, round_ * 500 + 500)])
        with psycopg.connect(dsns[city]) as c:
            c.execute("UPDATE popdb.person SET education = %s WHERE random() < 0.3", (f"{round_ + 1}0",))
            c.execute("DELETE FROM popdb.person WHERE random() < 0.05")
        proc = _child(prov, dsns[city], city)
        time.sleep(rnd.uniform(0.2, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(0.3)
    merge_city(prov, dsns[city], city)
    assert_province_is_union(prov, {city: dsns[city]})


# ------------------------------------------------------------------ late commit
def test_late_committing_transaction_is_not_lost(dbs):
    prov, dsns = dbs
    reset(prov, dsns)
    city = "420100"
    insert(dsns[city], [person_row(city, m) for m in range(10)])
    merge_city(prov, dsns[city], city)
    late = psycopg.connect(dsns[city])
    try:
        late_row = person_row(city, 500)
        late.execute(f"INSERT INTO popdb.person ({PERSON_COLS}) VALUES ({', '.join(['%s'] * 15)})", late_row)
        late.execute("UPDATE popdb.person SET name = '晚提交' WHERE id_no = %s", (person_row(city, 3)[0],))
        # a later transaction commits while the first is still open
        insert(dsns[city], [person_row(city, 600)])
        r1 = merge_city(prov, dsns[city], city)  # the run happens while the late transaction is open
        main, _ = province_state(prov, "person")
        assert late_row[0] not in main
        late.commit()  # ... and commits after the run
    finally:
        late.close()
    r2 = merge_city(prov, dsns[city], city)
    main, _ = province_state(prov, "person")
    assert late_row[0] in main
    assert main[person_row(city, 3)[0]][1][1] == "晚提交"
    assert person_row(city, 600)[0] in main
    assert r1["inserted"] + r2["inserted"] == 2 and r2["updated"] == 1
    assert_province_is_union(prov, {city: dsns[city]})


# ------------------------------------------------------------------ conflicts
def test_duplicate_id_across_cities_resolved_and_logged(dbs):
    prov, dsns = dbs
    reset(prov, dsns)
    a, b = "420100", "420500"
    t0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    old = person_row(a, 7, ts=t0)
    new = person_row(b, 7, ts=t0 + dt.timedelta(days=1), county_city=a)
    assert old[0] == new[0]
    insert(dsns[a], [old])
    insert(dsns[b], [new])
    merge_city(prov, dsns[a], a)
    r = merge_city(prov, dsns[b], b)
    assert r["conflicts"] == 1
    main, dups = province_state(prov, "person")
    assert main[old[0]][0] == b and dups[old[0]] == {a}
    with psycopg.connect(prov) as c:
        log = c.execute("SELECT winner_city, loser_city, rule FROM popdb.merge_conflict").fetchall()
    assert log == [(b, a, "newest updated_at wins; tie: lower city code")]
    # the winner is deleted in its city: the other version takes over
    with psycopg.connect(dsns[b]) as c:
        c.execute("DELETE FROM popdb.person WHERE id_no = %s", (old[0],))
    merge_city(prov, dsns[b], b)
    main, dups = province_state(prov, "person")
    assert main[old[0]][0] == a and not dups
    # tie on updated_at: the lower city code wins
    insert(dsns[b], [person_row(b, 7, ts=t0, county_city=a)])
    merge_city(prov, dsns[b], b)
    main, dups = province_state(prov, "person")
    assert main[old[0]][0] == a and dups[old[0]] == {b}
    assert_province_is_union(prov, {a: dsns[a], b: dsns[b]})


# ------------------------------------------------------------------ quarantine
def test_malformed_rows_quarantined_with_reason(dbs):
    prov, dsns = dbs
    reset(prov, dsns)
    city = "420100"
    good = [person_row(city, m) for m in range(5)]
    bad_check = list(person_row(city, 10))
    bad_check[0] = bad_check[0][:17] + ("0" if bad_check[0][17] != "0" else "1")
    no_name = list(person_row(city, 11))
    no_name[1] = None
    sex_wrong = list(person_row(city, 12))
    sex_wrong[2] = "2" if sex_wrong[2] == "1" else "1"
    future = list(person_row(city, 13))
    future[3] = "2099-01-01"
    insert(dsns[city], good + [tuple(bad_check), tuple(no_name), tuple(sex_wrong), tuple(future)])
    r = merge_city(prov, dsns[city], city)
    assert r["quarantined"] == 4 and r["inserted"] == 5
    with psycopg.connect(prov) as c:
        q = dict(
            c.execute("SELECT pk, reason FROM popdb.quarantine WHERE city_code = %s", (city,)).fetchall()
        )
        jh = c.execute("SELECT quarantined, status FROM popdb.job_history").fetchall()
    assert q[bad_check[0]] == "id_no: bad check digit"
    assert q[no_name[0]] == "name: missing"
    assert q[sex_wrong[0]] == "sex: contradicts the ID number"
    assert q[future[0]].startswith("birth_date: in the future")
    assert jh == [(4, "success")]
    main, _ = province_state(prov, "person")
    assert set(main) == {g[0] for g in good}
    # samples in the result are masked
    for s in r["tables"]["person"]["quarantine_samples"]:
        assert "*" in s["key"] and s["key"] not in q
    # fixing the row in the city resolves the quarantine entry and applies the row
    with psycopg.connect(dsns[city]) as c:
        c.execute("UPDATE popdb.person SET name = '王五' WHERE id_no = %s", (no_name[0],))
    r = merge_city(prov, dsns[city], city)
    assert r["inserted"] == 1
    with psycopg.connect(prov) as c:
        assert c.execute(
            "SELECT resolved_at IS NOT NULL FROM popdb.quarantine WHERE pk = %s", (no_name[0],)
        ).fetchone() == (True,)


# ------------------------------------------------------------------ check mode
def _province_fingerprint(prov):
    with psycopg.connect(prov) as c:
        out = {}
        for t in (
            "person",
            "person_dup",
            "household",
            "job_history",
            "quarantine",
            "merge_state",
            "merge_conflict",
        ):
            q = "SELECT count(*), md5(coalesce(string_agg(x::text, '' ORDER BY x::text), '')) FROM popdb.{} x"
            out[t] = c.execute(q.format(t)).fetchone()
        return out


def test_check_mode_writes_nothing(dbs):
    prov, dsns = dbs
    reset(prov, dsns)
    city = "420100"
    insert(dsns[city], [person_row(city, m) for m in range(20)])
    merge_city(prov, dsns[city], city)
    insert(dsns[city], [person_row(city, m) for m in range(20, 30)])
    bad = list(person_row(city, 40))
    bad[1] = ""
    insert(dsns[city], [tuple(bad)])
    with psycopg.connect(dsns[city]) as c:
        c.execute("DELETE FROM popdb.person WHERE id_no = %s", (person_row(city, 0)[0],))
        log_before = c.execute("SELECT count(*) FROM popdb.change_log").fetchone()
    before = _province_fingerprint(prov)
    r = merge_city(prov, dsns[city], city, check_mode=True)
    assert (r["inserted"], r["deleted"], r["quarantined"]) == (10, 1, 1)
    assert _province_fingerprint(prov) == before
    with psycopg.connect(dsns[city]) as c:
        assert c.execute("SELECT count(*) FROM popdb.change_log").fetchone() == log_before
    r = merge_city(prov, dsns[city], city)
    assert (r["inserted"], r["deleted"], r["quarantined"]) == (10, 1, 1)


# ------------------------------------------------------------------ masking of failures
def test_failure_recorded_masked(dbs):
    prov, dsns = dbs
    reset(prov, dsns)
    city = "420100"
    row = person_row(city, 1)
    insert(dsns[city], [row])
    with psycopg.connect(prov, autocommit=True) as c:
        c.execute(f"ALTER TABLE popdb.person ADD CONSTRAINT test_reject CHECK (id_no <> '{row[0]}')")
    try:
        with pytest.raises(MergeError) as ei:
            merge_city(prov, dsns[city], city)
    finally:
        with psycopg.connect(prov, autocommit=True) as c:
            c.execute("ALTER TABLE popdb.person DROP CONSTRAINT test_reject")
    masked = row[0][:3] + "*" * 11 + row[0][-4:]
    assert row[0] not in str(ei.value) and masked in str(ei.value)
    with psycopg.connect(prov) as c:
        status, error = c.execute("SELECT status, error FROM popdb.job_history").fetchone()
    assert status == "failed" and row[0] not in error and masked in error
    assert merge_city(prov, dsns[city], city)["inserted"] == 1
