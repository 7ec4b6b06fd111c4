"""Unit tests for module_utils/popdb_firewall.py (ss parsing, allow-list matching, unit lookup)."""

from __future__ import annotations

import pytest
from ansible.module_utils.popdb_firewall import (
    ListenerParseError,
    find_stray,
    parse_ss,
    port_allowed,
    source_allowed,
    unit_of_pid,
)

SS = """\
tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=120,fd=3))
tcp   LISTEN 0      128             [::]:22           [::]:*    users:(("sshd",pid=120,fd=4))
tcp   LISTEN 0      5            0.0.0.0:8099      0.0.0.0:*    users:(("python3",pid=777,fd=3))
tcp   LISTEN 0      244        127.0.0.1:5432      0.0.0.0:*    users:(("postgres",pid=500,fd=6))
udp   UNCONN 0      0      127.0.0.53%lo:53        0.0.0.0:*    users:(("systemd-resolve",pid=90,fd=13))
udp UNCONN 0 0 *:111 *:* users:(("rpcbind",pid=300,fd=5),("rpcbind",pid=300,fd=7))
"""
RULES = [
    {"proto": "tcp", "port": 22, "sources": ["10.203.0.1/32", "10.203.10.0/24"]},
    {"proto": "tcp", "port": 5432, "sources": []},
]


def test_parse_ss_reads_every_shape_of_address():
    got = parse_ss(SS)
    assert [(g["proto"], g["address"], g["port"]) for g in got] == [
        ("tcp", "0.0.0.0", 22),
        ("tcp", "::", 22),
        ("tcp", "0.0.0.0", 8099),
        ("tcp", "127.0.0.1", 5432),
        ("udp", "127.0.0.53", 53),
        ("udp", "0.0.0.0", 111),
    ]
    assert got[5]["processes"] == [{"name": "rpcbind", "pid": 300}, {"name": "rpcbind", "pid": 300}]


def test_parse_ss_names_the_bad_line():
    with pytest.raises(ListenerParseError, match="line 2"):
        parse_ss("tcp LISTEN 0 5 0.0.0.0:22 0.0.0.0:*\nbogus line\n")
    with pytest.raises(ListenerParseError, match="ADDRESS:PORT"):
        parse_ss("tcp LISTEN 0 5 0.0.0.0:ssh 0.0.0.0:*\n")


def test_stray_ignores_allowed_and_loopback_and_deduplicates():
    stray = find_stray(parse_ss(SS), RULES)
    assert [(s["proto"], s["port"]) for s in stray] == [("tcp", 8099), ("udp", 111)]
    assert find_stray(parse_ss(SS), RULES, [{"proto": "udp", "port": 111}])[-1]["port"] == 8099


def test_source_allowed_matches_cidrs_and_open_rules():
    assert source_allowed("10.203.0.1", "tcp", 22, RULES)
    assert source_allowed("10.203.10.7", "tcp", 22, RULES)
    assert not source_allowed("10.203.0.2", "tcp", 22, RULES)
    assert not source_allowed("10.203.0.1", "udp", 22, RULES)
    assert source_allowed("192.0.2.1", "tcp", 5432, RULES)
    assert port_allowed("tcp", 5432, RULES) and not port_allowed("tcp", 8099, RULES)


def test_unit_of_pid_reads_cgroup(tmp_path):
    (tmp_path / "777").mkdir()
    (tmp_path / "777" / "cgroup").write_text("0::/system.slice/popdb-stray.service\n")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cgroup").write_text("0::/init.scope\n")
    assert unit_of_pid(777, str(tmp_path)) == "popdb-stray.service"
    assert unit_of_pid(1, str(tmp_path)) is None
    assert unit_of_pid(4242, str(tmp_path)) is None
