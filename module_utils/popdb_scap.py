"""OpenSCAP (XCCDF 1.2 results) and Lynis (report.dat) parsing, waivers and the before/after comparison.

Used by library/popdb_scap_report.py (playbooks/vuln_scan.yml) and bench/security/run.py.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

XCCDF_NS = "http://checklists.nist.gov/xccdf/1.2"
RULE_PREFIX = "xccdf_org.ssgproject.content_rule_"
FAILING = ("fail", "error", "unknown")


class ScanParseError(ValueError):
    """A results file that is not what the scanner writes."""


def short_rule(rule_id: str) -> str:
    return rule_id[len(RULE_PREFIX) :] if rule_id.startswith(RULE_PREFIX) else rule_id


def parse_xccdf(text: str | bytes, source: str = "results") -> dict:
    """Score and per-rule results of the (last) TestResult in an XCCDF 1.2 results or ARF document."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ScanParseError(f"{source}: not XML ({exc})") from exc
    results = list(root.iter(f"{{{XCCDF_NS}}}TestResult"))
    if not results:
        raise ScanParseError(f"{source}: no XCCDF 1.2 TestResult element")
    tr = results[-1]
    score_el = tr.find(f"{{{XCCDF_NS}}}score")
    if score_el is None or score_el.text is None:
        raise ScanParseError(f"{source}: TestResult has no score")
    profile_el = tr.find(f"{{{XCCDF_NS}}}profile")
    rules = {}
    for rr in tr.iter(f"{{{XCCDF_NS}}}rule-result"):
        res = rr.find(f"{{{XCCDF_NS}}}result")
        if res is None or not rr.get("idref"):
            raise ScanParseError(f"{source}: rule-result without idref or result")
        rules[short_rule(rr.get("idref"))] = res.text.strip()
    return {
        "score": round(float(score_el.text), 2),
        "profile": profile_el.get("idref") if profile_el is not None else None,
        "rules": rules,
    }


def parse_lynis(text: str) -> dict:
    """hardening_index, warnings and suggestions from /var/log/lynis-report.dat."""
    index = None
    warnings, suggestions = [], []
    for line in text.splitlines():
        if line.startswith("hardening_index="):
            index = int(line.split("=", 1)[1])
        elif line.startswith("warning[]="):
            warnings.append(line.split("=", 1)[1].split("|")[0])
        elif line.startswith("suggestion[]="):
            suggestions.append(line.split("=", 1)[1].split("|")[0])
    if index is None:
        raise ScanParseError("lynis report: no hardening_index line")
    return {"hardening_index": index, "warnings": warnings, "suggestions": sorted(set(suggestions))}


def lynis_rows(suggestions: list[str], waivers: dict) -> list[dict]:
    """Each Lynis suggestion (test id) left after hardening, with its waiver reason or status open."""
    rows = []
    for test in suggestions:
        w = waivers.get(test)
        rows.append({"test": test, "status": "waived" if w else "open", "waiver": (w or {}).get("reason")})
    return rows


def tailored_out(waivers: dict, profile: str) -> list[str]:
    """Rules the tailoring file removes from a profile (waivers with tailor: true)."""
    return sorted(
        r
        for r, w in waivers.items()
        if w.get("tailor") and (w.get("profiles") is None or profile in w["profiles"])
    )


def fixed_by(rule: str, fixes: list[dict]) -> str | None:
    """The role that fixes a rule: first entry of fixes ({pattern, role}) whose regex matches."""
    for fx in fixes:
        if re.search(fx["pattern"], rule):
            return fx["role"]
    return None


def validate_waivers(waivers: dict) -> list[str]:
    """Every waiver needs a non-empty reason; returns the rules that lack one."""
    return sorted(
        r for r, w in waivers.items() if not isinstance(w, dict) or not str(w.get("reason", "")).strip()
    )


def compare(before: dict | None, after: dict, waivers: dict, fixes: list[dict]) -> dict:
    """Rows for the report: each rule that failed before or fails after, with status, fixer and waiver."""
    rows = []
    b_rules = (before or {}).get("rules", {})
    for rule in sorted(set(b_rules) | set(after["rules"])):
        b, a = b_rules.get(rule), after["rules"].get(rule)
        if b not in FAILING and a not in FAILING:
            continue
        w = waivers.get(rule)
        if a in FAILING:
            status = "waived" if w else "open"
        else:
            status = "fixed"
        rows.append(
            {
                "rule": rule,
                "before": b,
                "after": a,
                "status": status,
                "fixed_by": fixed_by(rule, fixes),
                "waiver": (w or {}).get("reason"),
            }
        )
    open_rules = [r["rule"] for r in rows if r["status"] == "open"]
    return {
        "score_before": (before or {}).get("score"),
        "score_after": after["score"],
        "rows": rows,
        "open": open_rules,
        "waived": [r["rule"] for r in rows if r["status"] == "waived"],
        "fail_before": sum(1 for r in b_rules.values() if r in FAILING) if before else None,
        "fail_after": sum(1 for r in after["rules"].values() if r in FAILING),
        "pass_after": sum(1 for r in after["rules"].values() if r == "pass"),
    }
