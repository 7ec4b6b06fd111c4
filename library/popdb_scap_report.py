#!/usr/bin/python
"""Before/after vulnerability-scan report per host (OpenSCAP profiles + Lynis), Chinese HTML + xlsx."""

from __future__ import annotations

DOCUMENTATION = r"""
module: popdb_scap_report
short_description: Before/after OpenSCAP and Lynis report for one host
description:
  - Reads the fetched scan results of one host (C(<dir>/<phase>/<profile>.xml) and
    C(<dir>/<phase>/lynis-report.dat) for phases C(before) and C(after); C(before) is optional),
    compares them, and writes C(<dir>/report.html), C(<dir>/report.xlsx) and C(<dir>/summary.json).
  - Every rule that still fails is either covered by a waiver with its reason or listed as open.
  - Runs on the controller. In check mode nothing is written.
options:
  host:
    description: Inventory name of the scanned host.
    type: str
    required: true
  dir:
    description: Controller directory holding the host's results (out/vuln_scan/<host>).
    type: path
    required: true
  profiles:
    description: Profile short names (C(standard), C(anssi_bp28_minimal), ...).
    type: list
    elements: str
    required: true
  waivers:
    description: Rule (short id) -> {reason, ...}; a waiver without a reason is an error.
    type: dict
    default: {}
  fixes:
    description: List of {pattern, role}: which role fixes the rules matching the regex.
    type: list
    elements: dict
    default: []
  lynis_waivers:
    description: Lynis test id -> {reason, ...} for suggestions that stay (e.g. impossible in a container).
    type: dict
    default: {}
author: popdb-ops
"""

EXAMPLES = r"""
- name: Report
  popdb_scap_report:
    host: web01
    dir: out/vuln_scan/web01
    profiles: [standard, anssi_bp28_minimal]
    waivers: "{{ vuln_scan_waivers }}"
    fixes: "{{ vuln_scan_fixes }}"
    lynis_waivers: "{{ vuln_scan_lynis_waivers }}"
  delegate_to: localhost
"""

RETURN = r"""
summary:
  description: >-
    Per profile score before/after, fails before/after, waived and tailored-out rules, open rules;
    Lynis index before/after, suggestions left, waived and open suggestions.
  type: dict
  returned: always
files:
  description: Paths of the written HTML, xlsx and JSON files.
  type: dict
  returned: when not in check mode
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_report import cell, write_report
from ansible.module_utils.popdb_scap import (
    ScanParseError,
    compare,
    lynis_rows,
    parse_lynis,
    parse_xccdf,
    tailored_out,
    validate_waivers,
)

STATUS_TEXT = {"fixed": ("已修复", "green"), "waived": ("豁免", "amber"), "open": ("未解决", "red")}


def _read(path: str) -> str | None:
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read()


def build(
    host: str, d: str, profiles: list, waivers: dict, fixes: list, lynis_waivers: dict | None = None
) -> tuple[dict, list]:
    summary = {"host": host, "profiles": {}, "lynis": {}}
    sections = []
    overview = []
    for prof in profiles:
        after_txt = _read(os.path.join(d, "after", f"{prof}.xml"))
        if after_txt is None:
            raise ScanParseError(f"{host}: no results for profile {prof} in {d}/after")
        after = parse_xccdf(after_txt, f"{host}/after/{prof}.xml")
        before_txt = _read(os.path.join(d, "before", f"{prof}.xml"))
        before = parse_xccdf(before_txt, f"{host}/before/{prof}.xml") if before_txt else None
        cmp = compare(before, after, waivers, fixes)
        keys = ("score_before", "score_after", "open", "fail_before", "fail_after", "pass_after", "waived")
        summary["profiles"][prof] = {k: cmp[k] for k in keys}
        summary["profiles"][prof]["tailored_out"] = tailored_out(waivers, prof)
        overview.append(
            {
                "item": f"OpenSCAP {prof}",
                "before": cmp["score_before"],
                "after": cmp["score_after"],
                "open": cell(len(cmp["open"]), "red" if cmp["open"] else "green"),
            }
        )
        rows = []
        for r in cmp["rows"]:
            text, status = STATUS_TEXT[r["status"]]
            rows.append(
                {
                    "rule": r["rule"],
                    "before": r["before"] or "-",
                    "after": r["after"] or "-",
                    "status": cell(r["status"], status, text),
                    "fixed_by": r["fixed_by"] or "-",
                    "waiver": r["waiver"] or "-",
                }
            )
        sections.append(
            {
                "title": f"{prof}: 失败规则（修复前/后）",
                "columns": [
                    ("rule", "规则"),
                    ("before", "修复前"),
                    ("after", "修复后"),
                    ("status", "状态"),
                    ("fixed_by", "负责修复的角色"),
                    ("waiver", "豁免理由"),
                ],
                "rows": rows,
            }
        )
    lyn = {}
    for phase in ("before", "after"):
        txt = _read(os.path.join(d, phase, "lynis-report.dat"))
        if txt:
            lyn[phase] = parse_lynis(txt)
    summary["lynis"] = {p: v["hardening_index"] for p, v in lyn.items()}
    if lyn:
        idx = summary["lynis"].get("after")
        overview.append(
            {
                "item": "Lynis 加固指数",
                "before": summary["lynis"].get("before"),
                "after": cell(idx, "green" if idx is not None and idx >= 85 else "amber"),
                "open": len(lyn.get("after", {}).get("warnings", [])),
            }
        )
        if "after" in lyn:
            lrows = lynis_rows(lyn["after"]["suggestions"], lynis_waivers or {})
            summary["lynis"]["suggestions_after"] = len(lrows)
            summary["lynis"]["waived"] = [r["test"] for r in lrows if r["status"] == "waived"]
            summary["lynis"]["open"] = [r["test"] for r in lrows if r["status"] == "open"]
            sections.append(
                {
                    "title": "Lynis 建议（修复后）",
                    "columns": [("id", "建议编号"), ("status", "状态"), ("waiver", "豁免理由")],
                    "rows": [
                        {
                            "id": r["test"],
                            "status": cell(r["status"], *reversed(STATUS_TEXT[r["status"]])),
                            "waiver": r["waiver"] or "-",
                        }
                        for r in lrows
                    ],
                }
            )
    sections.insert(
        0,
        {
            "title": "得分概览",
            "columns": [
                ("item", "项目"),
                ("before", "修复前"),
                ("after", "修复后"),
                ("open", "未解决/警告数"),
            ],
            "rows": overview,
        },
    )
    return summary, sections


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "dir": {"type": "path", "required": True},
            "profiles": {"type": "list", "elements": "str", "required": True},
            "waivers": {"type": "dict", "default": {}},
            "fixes": {"type": "list", "elements": "dict", "default": []},
            "lynis_waivers": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    p = module.params
    missing = validate_waivers(p["waivers"]) + validate_waivers(p["lynis_waivers"])
    if missing:
        module.fail_json(msg=f"waivers without a reason: {', '.join(missing)}")
    for i, fx in enumerate(p["fixes"]):
        if not fx.get("pattern") or not fx.get("role"):
            module.fail_json(msg=f"fixes[{i}]: fields 'pattern' and 'role' are required")
    try:
        summary, sections = build(
            p["host"], p["dir"], p["profiles"], p["waivers"], p["fixes"], p["lynis_waivers"]
        )
    except ScanParseError as exc:
        module.fail_json(msg=str(exc))
    if module.check_mode:
        module.exit_json(changed=False, summary=summary)
    files = write_report(
        os.path.join(p["dir"], "report"),
        f"{p['host']} 漏洞扫描报告（OpenSCAP + Lynis，修复前/后）",
        sections,
        subtitle="等保2.0 DJCP-8.1.4.4e：发现并修补已知漏洞",
    )
    files["json"] = os.path.join(p["dir"], "summary.json")
    with open(files["json"], "w", encoding="utf-8") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=2)
    module.exit_json(changed=True, summary=summary, files=files)


if __name__ == "__main__":
    main()
