"""The inspection report renders in real headless Chromium: amber disk cell present in DOM and pixels."""

from __future__ import annotations

from ansible.module_utils.popdb_inspection import run_report
from ansible.module_utils.popdb_report import STATUS_FILL
from chromium_render import count_colour, dump_dom, screenshot
from test_inspection import TH, _host


def test_amber_host_renders(tmp_path):
    res = run_report(
        {"prov-db01": {"data": _host(87.5, "/srv/popdb/fill"), "groups": ["databases"]},
         "web01": {"data": _host(10.0), "groups": ["web_app"]}},
        TH, str(tmp_path), run_id="20260101T000000",
    )  # fmt: skip
    dom = dump_dom(res["files"]["html"])
    assert '<td class="s-amber num">87.5%</td>' in dom
    assert "/srv/popdb/fill" in dom and "服务器巡检报告" in dom
    w, h, px = screenshot(res["files"]["html"])
    assert (w, h) == (1600, 1200)
    assert count_colour(px, STATUS_FILL["amber"]) > 500
    assert count_colour(px, STATUS_FILL["green"]) > 500
    assert count_colour(px, STATUS_FILL["red"]) == 0
