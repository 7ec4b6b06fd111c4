"""Unit tests for module_utils/popdb_scap.py: XCCDF/Lynis parsing, waivers, before/after comparison."""

from __future__ import annotations

import pytest
from ansible.module_utils.popdb_scap import (
    ScanParseError,
    compare,
    fixed_by,
    lynis_rows,
    parse_lynis,
    parse_xccdf,
    tailored_out,
    validate_waivers,
)

P = "xccdf_org.ssgproject.content_rule_"


def xccdf(score: float, results: dict) -> str:
    rr = "".join(
        f'<rule-result idref="{P}{r}"><result>{v}</result></rule-result>' for r, v in results.items()
    )
    return (
        '<Benchmark xmlns="http://checklists.nist.gov/xccdf/1.2"><TestResult id="t">'
        '<profile idref="xccdf_org.ssgproject.content_profile_standard"/>'
        f'{rr}<score system="urn:xccdf:scoring:default" maximum="100">{score}</score>'
        "</TestResult></Benchmark>"
    )


def test_parse_xccdf_score_and_rules():
    got = parse_xccdf(xccdf(47.123, {"sshd_disable_root_login": "pass", "partition_for_tmp": "fail"}))
    assert got["score"] == 47.12
    assert got["rules"] == {"sshd_disable_root_login": "pass", "partition_for_tmp": "fail"}
    assert got["profile"].endswith("standard")


def test_parse_xccdf_errors_name_the_file():
    with pytest.raises(ScanParseError, match="web01/after.xml: not XML"):
        parse_xccdf("<oops", "web01/after.xml")
    with pytest.raises(ScanParseError, match="no XCCDF 1.2 TestResult"):
        parse_xccdf("<a/>", "x")


def test_parse_lynis():
    got = parse_lynis(
        "hardening_index=87\nwarning[]=SSH-7408|x|\nsuggestion[]=AUTH-9262|y|\nsuggestion[]=AUTH-9262|z|\n"
    )
    assert got == {"hardening_index": 87, "warnings": ["SSH-7408"], "suggestions": ["AUTH-9262"]}
    with pytest.raises(ScanParseError):
        parse_lynis("nothing here")


def test_compare_fixed_waived_open():
    fixes = [
        {"pattern": "^sshd_", "role": "ssh_hardening"},
        {"pattern": "^accounts_", "role": "password_policy"},
    ]
    before = parse_xccdf(
        xccdf(20, {"sshd_set_idle_timeout": "fail", "partition_for_tmp": "fail", "a_ok": "pass"})
    )
    after = parse_xccdf(
        xccdf(
            80,
            {
                "sshd_set_idle_timeout": "pass",
                "partition_for_tmp": "fail",
                "a_ok": "pass",
                "accounts_x": "fail",
            },
        )
    )
    waivers = {"partition_for_tmp": {"reason": "container: no separate partitions"}}
    got = compare(before, after, waivers, fixes)
    by = {r["rule"]: r for r in got["rows"]}
    assert by["sshd_set_idle_timeout"]["status"] == "fixed"
    assert by["sshd_set_idle_timeout"]["fixed_by"] == "ssh_hardening"
    assert by["partition_for_tmp"]["status"] == "waived"
    assert by["partition_for_tmp"]["waiver"].startswith("container")
    assert by["accounts_x"]["status"] == "open" and got["open"] == ["accounts_x"]
    assert "a_ok" not in by
    assert (got["score_before"], got["score_after"], got["fail_after"], got["pass_after"]) == (
        20.0,
        80.0,
        2,
        2,
    )
    assert fixed_by("nothing", fixes) is None


def test_waiver_needs_reason():
    assert validate_waivers({"a": {"reason": "ok"}, "b": {"reason": " "}, "c": "x"}) == ["b", "c"]


def test_waived_and_failed_counts_and_tailored_out():
    before = parse_xccdf(xccdf(20, {"a": "fail", "b": "fail", "c": "pass"}))
    after = parse_xccdf(xccdf(60, {"a": "pass", "b": "fail", "c": "pass"}))
    got = compare(before, after, {"b": {"reason": "container"}}, [])
    assert (got["fail_before"], got["fail_after"], got["waived"], got["open"]) == (2, 1, ["b"], [])
    waivers = {
        "p1": {"tailor": True, "reason": "r"},
        "p2": {"tailor": True, "profiles": ["standard"], "reason": "r"},
        "k": {"tailor": False, "reason": "r"},
    }
    assert tailored_out(waivers, "standard") == ["p1", "p2"]
    assert tailored_out(waivers, "anssi_bp28_minimal") == ["p1"]


def test_lynis_rows_waived_or_open():
    rows = lynis_rows(["FILE-6310", "SSH-7408"], {"FILE-6310": {"reason": "partitions"}})
    assert rows == [
        {"test": "FILE-6310", "status": "waived", "waiver": "partitions"},
        {"test": "SSH-7408", "status": "open", "waiver": None},
    ]
