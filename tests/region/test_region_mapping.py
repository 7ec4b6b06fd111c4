"""Mapping initialization against the real national division history (../shared/data)."""

from __future__ import annotations

import os

import pytest
from ansible.module_utils import popdb_region as R
from ansible.module_utils import popdb_region_mapping as M
from openpyxl import load_workbook
from regionlib import change

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NATIONAL = os.path.join(ROOT, "..", "shared", "data", "division-codes-history.csv")

pytestmark = pytest.mark.skipif(
    not os.path.exists(NATIONAL), reason=f"national division list {NATIONAL} absent (shared data not mounted)"
)


def mapping(conn) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT provincial_code, national_code, method FROM popdb.region_mapping WHERE version = 'current'"
    ).fetchall()
    return {p: (n, m) for p, n, m in rows}


def test_national_csv_parsing_and_columns(tmp_path):
    rows, bad = M.read_national_csv(NATIONAL, province_prefix="42")
    assert not bad
    by = {(r["code"], r["status"]): r for r in rows}
    assert by[("420821000000", "弃用")]["successors"] == ["420882000000"]
    assert by[("421302000000", "弃用")]["successors"] == ["421303000000", "421321000000"]
    assert by[("429004000000", "在用")]["parent_code"] == "420000000000"  # 仙桃: directly under the province
    # configurable columns: the same list with English headers, one broken line counted, not dropped
    alt = tmp_path / "alt.csv"
    alt.write_text("id,label,lvl,state\n420100,武汉市,地级,在用\n4201X0,坏,地级,在用\n", encoding="utf-8")
    rows, bad = M.read_national_csv(
        str(alt), {"code": "id", "name": "label", "level": "lvl", "status": "state"}
    )
    assert [r["code"] for r in rows] == ["420100000000"]
    assert bad == [(3, "id", "code '4201X0' is not 6 or 12 digits")]


def test_mapping_init_five_steps(prov, tmp_path):
    # Provincial dictionary with every case: 京山 still under its retired code (successor chain),
    # 江岸区 under a local code (same name under the same parent), the generator's 421302 (retired
    # in 2009 with two successors: ambiguous), a local division the nation does not know, and a
    # manual decision on 宜昌.
    steps = [
        {"type": "rename", "code": "420806", "new_code": "420821", "name": "京山县"},
        {"type": "rename", "code": "420102", "new_code": "420188", "name": "江岸区"},
        {"type": "add", "code": "420199", "name": "测试新区"},
    ]
    R.apply_change(prov, change(change_id="PRE", steps=steps))
    prov.execute(
        "INSERT INTO popdb.region_mapping_decision (provincial_code, national_code, decided_by) "
        "VALUES ('420500000000', '420500000000', 'tester')"
    )
    prov.commit()
    out = tmp_path / "out"
    before = mapping(prov)
    res = M.run_init(prov, NATIONAL, version="2026H1", out_dir=str(out), check=True)
    assert res["steps"]["mapping"]["rows"] > 0
    assert mapping(prov) == before and not out.exists()  # check mode: nothing written

    res = M.run_init(prov, NATIONAL, version="2026H1", out_dir=str(out))
    assert res["changed"]
    m = mapping(prov)
    assert m["420821000000"] == ("420882000000", "successor")
    assert m["420188000000"] == ("420102000000", "name")
    assert m["420100000000"] == ("420100000000", "exact")
    assert m["420500000000"] == ("420500000000", "manual")
    assert "421302000000" not in m and "420199000000" not in m
    un = res["steps"]["unmatched"]
    wb = load_workbook(un["xlsx"])
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    assert list(rows[0]) == M.XLSX_HEADERS
    by_code = {r[1]: r for r in rows[1:]}
    assert by_code["421302000000"][5] == M.REASONS["ambiguous_successor"]
    assert by_code["421302000000"][6] == "421303000000;421321000000"
    assert by_code["420199000000"][5] == M.REASONS["no_match"]
    assert by_code["421321000000"][0] == "国家区划"  # national side unmapped (随县)
    assert un["rows"] == len(rows) - 1
    with open(res["report"]["html"], encoding="utf-8") as fh:
        page = fh.read()
    assert "区划映射初始化报告" in page and "未匹配区划" in page and "421302000000" in page

    # idempotent: same inputs, same version → nothing changes
    again = M.run_init(prov, NATIONAL, version="2026H1", out_dir=str(out))
    assert again["changed"] is False, again["steps"]

    # manual review: 421302 → 421303, 测试新区 → 无; a decision is added, never overwritten
    for r in ws.iter_rows(min_row=2):
        if r[1].value == "421302000000":
            r[7].value = "421303"
        if r[1].value == "420199000000":
            r[7].value = "无"
    reviewed = tmp_path / "reviewed.xlsx"
    wb.save(reviewed)
    prov.execute(
        "INSERT INTO popdb.region_mapping_decision (provincial_code, national_code, decided_by) "
        "VALUES ('420199000000', '420101000000', 'earlier')"
    )
    prov.commit()
    res2 = M.run_init(prov, NATIONAL, version="2026H2", out_dir=str(out), decisions_xlsx=str(reviewed))
    dec = res2["steps"]["decisions"]
    assert dec["added"] == 1  # 421302
    assert dec["conflicts"] == [
        {"provincial_code": "420199000000", "existing": "420101000000", "proposed": None}
    ]
    m2 = mapping(prov)
    assert m2["421302000000"] == ("421303000000", "manual")
    assert m2["420199000000"] == ("420101000000", "manual")  # the earlier decision stands
    # the previous mapping was backed up as a dated version
    backed = prov.execute(
        "SELECT count(*) FROM popdb.region_mapping WHERE version = 'backup-2026H2'"
    ).fetchone()[0]
    assert backed == len(m)
