"""Real Hubei division history as change files (tests/region/fixtures/).

The generated province holds today's divisions, so each test first builds the state before the
historical change with the engine itself (the reverse change), then applies the fixture file.
A pure re-code applied in reverse then forward must give back exactly the generated data.
"""

from __future__ import annotations

import os

import pytest
from ansible.module_utils import popdb_region as R
from regionlib import FIXTURES, change, person_total, references, subtree_count

DATA_TABLES = ("popdb.person", "popdb.household", "popdb.birth_event", "popdb.death_event")


def data_checksum(conn):
    sums = R.database_checksum(conn, with_dictionary=False)
    return {t: v for t, v in sums.items() if t in DATA_TABLES}


def fixture(name: str) -> R.Change:
    return R.load_change(os.path.join(FIXTURES, name))


@pytest.mark.parametrize(
    "file, old, old_name, new, new_name, source",
    [
        # the generator's 荆门/荆州 have no 420882/421088: their last county plays 京山/监利
        ("HB-2018-420821-jingshan.yml", "420821", "京山县", "420882", "京山市", "420806"),
        ("HB-2020-421023-jianli.yml", "421023", "监利县", "421088", "监利市", "421009"),
        ("HB-2014-420321-yunyang.yml", "420321", "郧县", "420304", "郧阳区", "420304"),
    ],
)
def test_recode_history(prov, file, old, old_name, new, new_name, source):
    generated = data_checksum(prov)
    n = subtree_count(prov, source)
    assert n > 0, f"the generated province has no persons under {source}"
    assert references(prov, old) == {}
    # state before the historical change
    R.apply_change(prov, change(change_id="PRE", type="rename", code=source, new_code=old, name=old_name))
    assert subtree_count(prov, old) == n and references(prov, source) == {}
    pre = R.database_checksum(prov)
    res = R.apply_change(prov, fixture(file))
    assert res["changed"]
    assert references(prov, old) == {}
    assert subtree_count(prov, new) == n
    assert person_total(prov) == generated["popdb.person"][0]
    assert (
        prov.execute("SELECT name FROM popdb.region WHERE code = %s", (new + "000000",)).fetchone()[0]
        == new_name
    )
    if source == new:
        assert data_checksum(prov) == generated  # reverse + forward = the generated data, bit for bit
    cm = dict(res["code_map"])
    assert cm[old + "000000"] == new + "000000"
    assert len(cm) == 1 + 8 + 64  # the county, its townships and villages, every code recomputed
    # rollback of the historical change returns the exact previous checksum
    R.rollback_change(prov, fixture(file).change_id)
    assert R.database_checksum(prov) == pre


def test_xiangfan_to_xiangyang_keeps_code(prov):
    R.apply_change(prov, change(change_id="PRE", type="rename", code="420600", name="襄樊市"))
    pre = R.database_checksum(prov)
    n = subtree_count(prov, "420600")
    res = R.apply_change(prov, fixture("HB-2010-420600-xiangyang.yml"))
    assert res["counts"]["province"] == {"region.renamed": 1}
    assert prov.execute("SELECT name FROM popdb.region WHERE code = '420600000000'").fetchone()[0] == "襄阳市"
    assert subtree_count(prov, "420600") == n
    assert data_checksum(prov) == {t: v for t, v in pre.items() if t in DATA_TABLES}
    R.rollback_change(prov, "HB-2010-420600")
    assert R.database_checksum(prov) == pre


def test_zengdu_split(prov):
    """Generated 随州 has counties 421302, 421303, 421304. Before 2009 there was one 曾都区 421302:
    fold 421303 into it (its townships numbered 5xx), then the 2009 split must give 421303 back the
    persons of the old 421302 and the new 随县 421321 those of the folded county."""
    total = person_total(prov)
    n_a, n_b = subtree_count(prov, "421302"), subtree_count(prov, "421303")
    assert n_a > 0 and n_b > 0
    assert references(prov, "421321") == {}
    t_b = [
        r[0]
        for r in prov.execute(
            "SELECT code FROM popdb.region WHERE parent_code = '421303000000' ORDER BY code"
        ).fetchall()
    ]
    steps = [{"type": "rename", "code": "421302", "name": "曾都区"}]
    steps += [
        {"type": "migrate", "code": t[:9], "new_parent": "421302", "new_code": f"421302{501 + i}"}
        for i, t in enumerate(t_b)
    ]
    steps += [{"type": "delete", "code": "421303", "target": "421302"}]
    R.apply_change(prov, change(change_id="PRE", steps=steps))
    assert references(prov, "421303") == {}
    assert subtree_count(prov, "421302") == n_a + n_b
    pre = R.database_checksum(prov)

    res = R.apply_change(prov, fixture("HB-2009-421302-split.yml"))
    assert references(prov, "421302") == {}
    assert subtree_count(prov, "421303") == n_a
    assert subtree_count(prov, "421321") == n_b
    assert person_total(prov) == total
    names = dict(
        prov.execute(
            "SELECT code, name FROM popdb.region WHERE code IN ('421303000000', '421321000000')"
        ).fetchall()
    )
    assert names == {"421303000000": "曾都区", "421321000000": "随县"}
    olds = {o for o, _ in res["code_map"] if o}
    assert "421302000000" in olds and len(olds) > len(t_b)
    R.rollback_change(prov, "HB-2009-421302")
    assert R.database_checksum(prov) == pre
