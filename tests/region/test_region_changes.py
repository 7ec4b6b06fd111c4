"""Each change type on a generated province (real PostgreSQL): cascades, conservation of persons,
check mode, idempotence, exact rollback, rejections that write nothing, province + city DB."""

from __future__ import annotations

import psycopg
import pytest
from ansible.module_utils import popdb_region as R
from regionlib import change, make_city_db, person_total, references, subtree_count


def own_rows(conn) -> dict[str, int]:
    out = {
        t: conn.execute(f"SELECT count(*) FROM popdb.{t}").fetchone()[0]
        for t in ("region_change_log", "region_change_undo", "region_change_archive", "region_code_map")
    }
    q = "SELECT count(*) FROM pg_tables WHERE schemaname = 'popdb_region_undo'"
    out["undo tables"] = conn.execute(q).fetchone()[0]
    return out


def dictionary_consistent(conn) -> None:
    """Every division has an existing parent and its code starts with the parent's prefix."""
    bad = conn.execute(
        "SELECT r.code, r.parent_code, p.level FROM popdb.region r "
        "LEFT JOIN popdb.region p ON p.code = r.parent_code "
        "WHERE r.parent_code IS NOT NULL AND (p.code IS NULL OR left(r.code, "
        "CASE p.level WHEN 1 THEN 2 WHEN 2 THEN 4 WHEN 3 THEN 6 WHEN 4 THEN 9 ELSE 12 END) <> "
        "left(p.code, CASE p.level WHEN 1 THEN 2 WHEN 2 THEN 4 WHEN 3 THEN 6 WHEN 4 THEN 9 ELSE 12 END))"
    ).fetchall()
    assert bad == []


def counties(conn, city: str) -> list[str]:
    rows = conn.execute(
        "SELECT r.code FROM popdb.region r WHERE r.parent_code = %s AND r.level = 3 "
        "AND EXISTS (SELECT 1 FROM popdb.region t WHERE t.parent_code = r.code) ORDER BY r.code",
        (R.norm_code(city, "city"),),
    ).fetchall()
    return [r[0] for r in rows]


def townships(conn, county: str) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT code FROM popdb.region WHERE parent_code = %s ORDER BY code", (county,)
        ).fetchall()
    ]


def test_add_then_rollback(prov):
    before = R.database_checksum(prov)
    county = counties(prov, "420100")[0]
    res = R.apply_change(prov, change(type="add", code=county[:6] + "998", name="新设街道"))
    assert res["counts"]["province"] == {"region.inserted": 1}
    row = prov.execute(
        "SELECT name, level, parent_code FROM popdb.region WHERE code = %s", (county[:6] + "998000",)
    ).fetchone()
    assert row == ("新设街道", 4, county)
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == before


def test_rename_keeps_code_idempotent_and_diff(prov):
    before = R.database_checksum(prov)
    ch = change(type="rename", code="420600", name="襄樊市")
    res = R.apply_change(prov, ch)
    assert res["changed"] and res["counts"]["province"] == {"region.renamed": 1}
    assert "420600000000 襄阳市" in res["diff"]["before"] and "420600000000 襄樊市" in res["diff"]["after"]
    again = R.apply_change(prov, ch)
    assert again["changed"] is False
    assert person_total(prov) == before["popdb.person"][0]
    with pytest.raises(R.RegionChangeError, match="different content"):
        R.apply_change(prov, change(type="rename", code="420600", name="别的名字"))
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == before
    assert R.rollback_change(prov, "T-1")["changed"] is False


def test_migrate_county_to_another_city(prov):
    before = R.database_checksum(prov)
    county = counties(prov, "420800")[0]
    n_res = subtree_count(prov, county)
    sub = R.Tree(
        [
            {"code": c, "parent_code": p, "level": lv}
            for c, p, lv in prov.execute("SELECT code, parent_code, level FROM popdb.region").fetchall()
        ]
    ).subtree(county)
    res = R.apply_change(prov, change(type="migrate", code=county, new_parent="421000"))
    new_code = dict(res["code_map"])[county]
    assert new_code.startswith("4210") and R.code_level(new_code) == 3
    assert len(res["code_map"]) == len(sub)
    assert all(new.startswith(new_code[:6]) for old, new in res["code_map"])
    assert references(prov, county) == {}
    assert subtree_count(prov, new_code) == n_res > 0
    assert person_total(prov) == before["popdb.person"][0]
    dictionary_consistent(prov)
    # per-column counts are reported and equal what moved
    counts = res["counts"]["province"]
    assert counts["person.residence_region"] == n_res
    assert counts["region.inserted"] == counts["region.deleted"] == len(sub)
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == before
    assert own_rows(prov)["region_change_undo"] == 0


def test_merge_two_counties_into_new_one(prov):
    before = R.database_checksum(prov)
    a, b = counties(prov, "420100")[:2]
    na, nb = subtree_count(prov, a), subtree_count(prov, b)
    res = R.apply_change(prov, change(type="merge", codes=[a, b], into="420199", name="合并区"))
    assert references(prov, a) == {} and references(prov, b) == {}
    assert subtree_count(prov, "420199") == na + nb
    assert person_total(prov) == before["popdb.person"][0]
    dictionary_consistent(prov)
    # colliding township suffixes of b were renumbered: every new township code is unique
    twn = townships(prov, "420199000000")
    assert len(twn) == len(townships_before := set(twn)) and len(townships_before) > 0
    assert res["counts"]["province"]["region.deleted"] > 0
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == before


def test_merge_into_existing_renumbers_collisions(prov):
    before = R.database_checksum(prov)
    a, b = counties(prov, "420500")[:2]
    ta, tb = townships(prov, a), townships(prov, b)
    na, nb = subtree_count(prov, a), subtree_count(prov, b)
    res = R.apply_change(prov, change(type="merge", codes=[b], into=a))
    assert res["undo_modes"]["province"] == ["rows"]  # a's rows were there before: row-level undo
    assert own_rows(prov)["undo tables"] > 0
    assert references(prov, b) == {}
    assert subtree_count(prov, a) == na + nb
    assert len(townships(prov, a)) == len(ta) + len(tb)
    dictionary_consistent(prov)
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == before
    assert own_rows(prov)["undo tables"] == 0


def test_delete_with_target_archives_dictionary(prov):
    before = R.database_checksum(prov)
    county = counties(prov, "421100")[0]
    twn = townships(prov, county)
    gone, target = twn[0], twn[1]
    n_gone, n_target = subtree_count(prov, gone), subtree_count(prov, target)
    res = R.apply_change(prov, change(type="delete", code=gone, target=target))
    assert references(prov, gone) == {}
    assert subtree_count(prov, target) == n_gone + n_target
    assert person_total(prov) == before["popdb.person"][0]
    archived = prov.execute(
        "SELECT count(*) FROM popdb.region_change_archive WHERE tbl = 'region'"
    ).fetchone()[0]
    assert archived == res["counts"]["province"]["region.deleted"] > 1
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == before


def test_delete_purge_archives_everything_removed(prov):
    before = R.database_checksum(prov)
    county = counties(prov, "421200")[0]
    gone = townships(prov, county)[0]
    res = R.apply_change(prov, change(type="delete", code=gone, purge=True))
    removed = before["popdb.person"][0] - person_total(prov)
    assert removed > 0 and res["counts"]["province"]["person.purged"] == removed
    archived = prov.execute(
        "SELECT count(*) FROM popdb.region_change_archive WHERE tbl = 'popdb.person'"
    ).fetchone()[0]
    assert archived == removed  # nothing lost: every removed person is in the archive
    assert references(prov, gone) == {}
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == before


def test_check_mode_reports_and_writes_nothing(prov):
    before = R.database_checksum(prov)
    county = counties(prov, "420900")[0]
    res = R.apply_change(prov, change(type="migrate", code=county, new_parent="421100"), check=True)
    counts = res["counts"]["province"]
    assert counts["person.residence_region"] == subtree_count(prov, county) > 0
    assert counts["household.region_code"] > 0
    assert R.database_checksum(prov) == before
    assert own_rows(prov) == dict.fromkeys(own_rows(prov), 0)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "rename", "code": "429999", "name": "不存在"}, "unknown region code 429999"),
        ({"type": "migrate", "code": "420800", "new_parent": "@child"}, "cycle"),
        ({"type": "delete", "code": "@county"}, "needs a target .* or an explicit purge"),
    ],
)
def test_rejections_write_nothing(prov, spec, message):
    before = R.database_checksum(prov)
    county = counties(prov, "420800")[0]
    spec = {k: (county if v in ("@child", "@county") else v) for k, v in spec.items()}
    with pytest.raises(R.RegionChangeError, match=message):
        R.apply_change(prov, change(**spec))
    # the engine refuses it too when the file check is bypassed
    raw = {k: R.norm_code(v, k) if k in ("code", "new_parent") else v for k, v in spec.items()}
    if raw["type"] == "migrate":
        raw["codes"] = [raw.pop("code")]
    with pytest.raises(R.RegionChangeError, match=message):
        R.apply_change(prov, R.Change("T-2", "测试", "2026-01-01", "", [raw]))
    assert R.database_checksum(prov) == before
    assert own_rows(prov) == dict.fromkeys(own_rows(prov), 0)


def test_rollback_refuses_out_of_order(prov):
    R.apply_change(prov, change(type="rename", code="420600", name="甲"))
    R.apply_change(
        prov,
        R.load_change(
            {
                "change_id": "T-2",
                "directive": "x",
                "effective_date": "2026-02-01",
                "type": "rename",
                "code": "420600",
                "name": "乙",
            }
        ),
    )
    with pytest.raises(R.RegionChangeError, match="T-2 was applied after T-1"):
        R.rollback_change(prov, "T-1")
    R.rollback_change(prov, "T-2")
    R.rollback_change(prov, "T-1")
    assert prov.execute("SELECT name FROM popdb.region WHERE code = '420600000000'").fetchone()[0] == "襄阳市"


def test_province_and_city_stay_consistent(pg_server, prov_dsn):
    city_dsn = make_city_db(pg_server, "420500")
    other_dsn = make_city_db(pg_server, "420700")  # another city: may hold references, not the division
    with (
        psycopg.connect(prov_dsn) as prov,
        psycopg.connect(city_dsn) as city,
        psycopg.connect(other_dsn) as other,
    ):
        pbefore, cbefore, obefore = (R.database_checksum(c) for c in (prov, city, other))
        county = counties(prov, "420500")[0]
        n_city = subtree_count(city, county)
        assert n_city > 0 and n_city == subtree_count(prov, county)
        ch = change(type="rename", code=county, new_code=county[:4] + "97", name="新市")
        cities = {"420500": city, "420700": other}
        # a city that cannot take the change: the province is not written either
        city.execute(
            "INSERT INTO popdb.region_change_log (change_id, spec, spec_sha, plan, undo_modes, counts, "
            "status) VALUES ('T-1', '{}', 'other', '[]', '[]', '{}', 'applied')"
        )
        city.commit()
        with pytest.raises(R.RegionChangeError, match="city 420500"):
            R.apply_change(prov, ch, cities)
        assert R.database_checksum(prov) == pbefore and R.database_checksum(other) == obefore
        city.execute("DELETE FROM popdb.region_change_log")
        city.commit()
        # province committed alone (as after a crash between the commits) ...
        R.apply_change(prov, ch)
        captured = "SELECT count(*) FROM popdb.change_log WHERE tbl = 'person'"
        cl0 = city.execute(captured).fetchone()[0]
        # ... the same change again brings the cities level and leaves the province alone
        res = R.apply_change(prov, ch, cities)
        assert res["databases"] == ["city 420500", "city 420700"]
        new = county[:4] + "97000000"
        for conn in (prov, city, other):
            assert references(conn, county) == {}
        assert subtree_count(city, new) == n_city
        # the dictionary follows where it belongs: the holder has the new rows, the other city not
        q = "SELECT count(*) FROM popdb.region WHERE code = %s"
        assert [c.execute(q, (new,)).fetchone()[0] for c in (prov, city, other)] == [1, 1, 0]
        # city rows changed by the cascade went through the city's change capture (nightly merge)
        moved = res["counts"]["city 420500"]["person.*rows"]
        assert moved >= n_city and city.execute(captured).fetchone()[0] - cl0 == moved
        assert R.apply_change(prov, ch, cities)["changed"] is False
        res = R.rollback_change(prov, "T-1", cities)
        assert res["databases"] == ["province", "city 420500", "city 420700"]
        assert [R.database_checksum(c) for c in (prov, city, other)] == [pbefore, cbefore, obefore]


def test_sequence_of_changes_rolls_back_to_the_start(prov):
    """Five changes of every kind stacked, then undone newest first: the exact starting state."""
    start = R.database_checksum(prov)
    a, b, c = counties(prov, "421100")[:3]
    t = townships(prov, b)  # b absorbs c and keeps its own township codes
    seq = [
        {"type": "migrate", "code": a, "new_parent": "421200"},
        {"type": "merge", "codes": [b, c], "into": b},
        {"type": "delete", "code": t[0], "target": t[1]},
        {"type": "rename", "code": "421100", "name": "黄州专区"},
        {
            "steps": [
                {"type": "add", "code": "421198", "name": "新区"},
                {"type": "migrate", "code": t[2][:9], "new_parent": "421198"},
            ]
        },
    ]
    for i, spec in enumerate(seq):
        R.apply_change(prov, change(change_id=f"S-{i}", **spec))
        assert person_total(prov) == start["popdb.person"][0]
        dictionary_consistent(prov)
    for i in reversed(range(len(seq))):
        R.rollback_change(prov, f"S-{i}")
    assert R.database_checksum(prov) == start


def test_mapping_in_force_follows_the_change(prov):
    a, b = counties(prov, "420500")[:2]
    prov.execute(
        "INSERT INTO popdb.region_mapping (provincial_code, national_code, method, version) VALUES "
        "(%s, %s, 'exact', 'current'), (%s, %s, 'exact', 'backup-2026H1'), (%s, %s, 'exact', 'current')",
        (a, a, a, a, b, b),
    )
    prov.commit()
    start = R.database_checksum(prov)
    new = a[:4] + "97000000"
    res = R.apply_change(prov, change(type="rename", code=a, new_code=new[:6], name="新市"))
    assert res["counts"]["province"]["region_mapping.provincial_code"] == 1
    rows = prov.execute(
        "SELECT provincial_code, national_code, version FROM popdb.region_mapping ORDER BY 3, 1"
    )
    assert rows.fetchall() == [(a, a, "backup-2026H1"), (b, b, "current"), (new, a, "current")]
    # merged into a division that is mapped already: the existing mapping row stands
    R.apply_change(
        prov,
        R.load_change(
            {
                "change_id": "T-2",
                "directive": "x",
                "effective_date": "2026-02-01",
                "type": "merge",
                "codes": [new[:6]],
                "into": b[:6],
            }
        ),
    )
    q = "SELECT provincial_code FROM popdb.region_mapping WHERE version = 'current' ORDER BY 1"
    assert [r[0] for r in prov.execute(q).fetchall()] == [b]
    R.rollback_change(prov, "T-2")
    R.rollback_change(prov, "T-1")
    assert R.database_checksum(prov) == start
