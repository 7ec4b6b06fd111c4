"""popdb_patching: apt simulation parsing, scope and hold selection, version diff."""

from __future__ import annotations

import pytest
from ansible.module_utils.popdb_patching import parse_simulation, render_text, select, version_diff

SIM = """NOTE: This is only a simulation!
Inst libssl3 [3.0.11-1~deb12u1] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable-updates [all])
Inst postgresql-15 [15.8-0+deb12u1] (15.13-0+deb12u1 Debian-Security:12/stable-security [amd64])
Inst newdep (1.0 Debian:12.11/stable [amd64])
Conf libssl3 (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])
"""


def test_parse():
    ups = parse_simulation(SIM)
    assert [u["name"] for u in ups] == ["libssl3", "tzdata", "postgresql-15", "newdep"]
    assert ups[0]["from"] == "3.0.11-1~deb12u1" and ups[0]["to"] == "3.0.15-1~deb12u1" and ups[0]["security"]
    assert not ups[1]["security"] and ups[3]["new"]


def test_select_scope_and_hold():
    ups = parse_simulation(SIM)
    assert [u["name"] for u in select(ups, "security", ["postgresql*"])] == ["libssl3"]
    assert [u["name"] for u in select(ups, "full", ["postgresql*"])] == ["libssl3", "tzdata"]
    assert [u["name"] for u in select(ups, "full", [])] == ["libssl3", "tzdata", "postgresql-15"]
    with pytest.raises(ValueError, match="scope 'all'"):
        select(ups, "all", [])


def test_version_diff_and_text():
    d = version_diff({"a": "1", "b": "1", "c": "1"}, {"a": "2", "b": "1", "n": "1"})
    assert d == [
        {"name": "a", "before": "1", "after": "2", "action": "upgraded"},
        {"name": "c", "before": "1", "after": None, "action": "removed"},
        {"name": "n", "before": None, "after": "1", "action": "installed"},
    ]
    txt = render_text(
        {
            "host": "h",
            "time": "t",
            "scope": "full",
            "reboot_policy": "never",
            "reboot_required": True,
            "rebooted": False,
            "held": ["postgresql-15"],
            "changes": d,
        }  # fmt: skip
    )
    assert "需要重启: 是" in txt and "a: 1 -> 2 (upgraded)" in txt
