"""popdb_cleanup on real files: old matches go, young/unmatched/protected/symlinked stay."""

from __future__ import annotations

import os
import time

import pytest
from ansible.module_utils.popdb_cleanup import RuleError, execute, plan, validate_rules


def _mk(path, age_days, size=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - age_days * 86400
    os.utime(path, (t, t))
    return path


def test_plan_and_execute(tmp_path):
    logs, data = tmp_path / "log", tmp_path / "data"
    old = _mk(logs / "syslog.3.gz", 30, 500)
    young = _mk(logs / "syslog.1.gz", 1)
    live = _mk(logs / "syslog", 30)
    nested = _mk(logs / "app" / "app.log.2.gz", 40, 50)
    keep_data = _mk(data / "base.1.gz", 400)
    os.symlink(keep_data, logs / "link.9.gz")
    rules = [{"name": "rotated", "paths": [str(logs)], "patterns": ["*.gz"], "age_days": 14, "recurse": True}]
    files = plan(rules, [str(data)])
    assert [f["path"] for f in files] == [str(nested), str(old)]
    removed, errors = execute(files)
    assert sum(f["size"] for f in removed) == 550 and not errors
    assert young.exists() and live.exists() and keep_data.exists() and not old.exists()


def test_protected_paths_refused(tmp_path):
    data = tmp_path / "var" / "lib" / "postgresql"
    data.mkdir(parents=True)
    with pytest.raises(RuleError, match="'pg'.*inside protected"):
        validate_rules([{"name": "pg", "paths": [str(data / "15")], "patterns": ["*"]}], [str(data)])
    # A protected directory inside a recursive rule is pruned, not an error.
    _mk(data / "15" / "main" / "old.1.gz", 100)
    _mk(tmp_path / "var" / "log" / "old.1.gz", 100)
    rule = {"name": "varlib", "paths": [str(tmp_path / "var")], "patterns": ["*.gz"], "recurse": True}
    assert [f["path"] for f in plan([rule], [str(data)])] == [str(tmp_path / "var" / "log" / "old.1.gz")]
    with pytest.raises(RuleError, match="'x': field 'patterns' is empty"):
        validate_rules([{"name": "x", "paths": ["/tmp"], "patterns": []}], [])
    with pytest.raises(RuleError, match="'/' is never cleanable"):
        validate_rules([{"name": "root", "paths": ["/"], "patterns": ["*"]}], [])
