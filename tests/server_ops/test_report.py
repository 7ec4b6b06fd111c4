"""popdb_report: HTML and xlsx content, colours, masking, bad input."""

from __future__ import annotations

import pytest
from ansible.module_utils.popdb_report import STATUS_FILL, cell, render_html, worst, write_report
from openpyxl import load_workbook

SECTIONS = [
    {
        "title": "主机",
        "columns": [("host", "主机"), ("disk", "磁盘%"), ("note", "备注")],
        "rows": [
            {"host": "web01", "disk": cell(91.5, "red", "91.5%"), "note": "身份证 420102199001011234 异常"},
            {"host": "web02", "disk": cell(50, "green"), "note": ""},
        ],
    }
]


def test_html_has_chinese_status_colours_and_masks_ids():
    page = render_html("巡检报告", SECTIONS, generated_at="2026-01-01 00:00:00")
    assert '<html lang="zh-CN">' in page
    assert '<td class="s-red num">91.5%</td>' in page
    assert '<td class="s-green num">50</td>' in page
    assert "420102199001011234" not in page
    assert "420***********1234" in page
    assert f"#{STATUS_FILL['red']}" in page


def test_xlsx_cells_values_and_fills(tmp_path):
    files = write_report(str(tmp_path / "r"), "巡检报告", SECTIONS)
    wb = load_workbook(files["xlsx"])
    ws = wb["主机"]
    assert ws["A3"].value == "主机"
    assert ws["A4"].value == "web01"
    assert ws["B4"].value == "91.5%"
    assert ws["B4"].fill.fgColor.rgb.endswith(STATUS_FILL["red"])
    assert ws["B5"].value == 50
    assert ws["B5"].fill.fgColor.rgb.endswith(STATUS_FILL["green"])
    assert "420102199001011234" not in str(ws["C4"].value)
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_bad_status_names_section_row_and_field():
    bad = [{"title": "t", "columns": [("a", "A")], "rows": [{"a": {"value": 1, "status": "purple"}}]}]
    with pytest.raises(ValueError, match=r"'t' row 0 field 'a'.*purple"):
        render_html("x", bad)
    with pytest.raises(ValueError, match="needs 'columns' and 'rows'"):
        render_html("x", [{"title": "t"}])


def test_worst():
    assert worst(["green", "amber", "grey"]) == "amber"
    assert worst(["green", "red", "amber"]) == "red"
    assert worst([]) == "grey"
