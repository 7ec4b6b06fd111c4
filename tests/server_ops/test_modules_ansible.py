"""The server-ops modules and filters through real ansible-playbook runs on the local machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _play(tmp_path, tasks, *args, name="p"):
    pb = tmp_path / f"{name}.yml"
    pb.write_text(
        yaml.safe_dump([{"name": "t", "hosts": "localhost", "gather_facts": False, "tasks": tasks}])
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.timer",
        ANSIBLE_LIBRARY=os.path.join(ROOT, "library"),
        ANSIBLE_MODULE_UTILS=os.path.join(ROOT, "module_utils"),
        ANSIBLE_FILTER_PLUGINS=os.path.join(ROOT, "filter_plugins"),
    )
    p = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(pb), *args],  # fmt: skip
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert "{" in p.stdout, p.stdout + p.stderr
    out, _ = json.JSONDecoder().raw_decode(p.stdout[p.stdout.index("{") :])
    return p.returncode, [t["hosts"]["localhost"] for t in out["plays"][0]["tasks"]]


def _old(path, days, size=10):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - days * 86400
    os.utime(path, (t, t))


def test_disk_cleanup_check_diff_then_real_then_refusal(tmp_path):
    logs, data = tmp_path / "log", tmp_path / "log" / "pgdata"
    _old(logs / "a.log.2.gz", 30, 300)
    _old(data / "wal.1.gz", 30, 100)
    task = {
        "popdb_disk_cleanup": {
            "rules": [
                {
                    "name": "rotated",
                    "paths": [str(logs)],
                    "patterns": ["*.gz"],
                    "age_days": 14,
                    "recurse": True,
                }
            ],
            "protected_paths": [str(data)],
            "usage_paths": [str(tmp_path)],
        }
    }
    rc, res = _play(tmp_path, [task], "--check", "--diff", name="c")
    assert rc == 0, res
    assert res[0]["changed"] and res[0]["freed_bytes"] == 300
    assert (logs / "a.log.2.gz").exists(), "check mode removed a file"
    diff = res[0]["diff"][0] if isinstance(res[0]["diff"], list) else res[0]["diff"]
    assert str(logs / "a.log.2.gz") in diff["before"]
    rc, res = _play(tmp_path, [task], name="r")
    assert (
        rc == 0 and res[0]["changed"] and not (logs / "a.log.2.gz").exists() and (data / "wal.1.gz").exists()
    )
    rc, res = _play(tmp_path, [task], name="r2")
    assert rc == 0 and not res[0]["changed"] and res[0]["freed_bytes"] == 0
    bad = {"popdb_disk_cleanup": {"rules": [{"name": "pg", "paths": [str(data)], "patterns": ["*"]}],
                                  "protected_paths": [str(data)]}}  # fmt: skip
    rc, res = _play(tmp_path, [bad], name="b")
    assert rc != 0 and "cleanup rule 'pg'" in res[0]["msg"] and (data / "wal.1.gz").exists()


def test_inspect_and_report_modules(tmp_path):
    out = tmp_path / "insp"
    tasks = [
        {"popdb_inspect": {"interval": 0.3}, "register": "c"},
        {
            "popdb_inspection_report": {
                "hosts": {"here": "{{ c.inspection }}", "gone": None},
                "groups": {"here": ["servers"]},
                "thresholds": {"disk_used_pct": {"amber": 80, "red": 90}},
                "out_dir": str(out),
            }
        },
        {
            "popdb_report": {
                "dest": str(tmp_path / "cl" / "r"),
                "title": "磁盘清理报告",
                "sections": "{{ {'web01': {'freed_bytes': 2048, 'freed_by_area': {'rotated_logs': 2048},"
                " 'expansion_needed': [{'path': '/srv', 'used_pct': 91.0, 'avail': 1, 'size': 10}]}}"
                " | popdb_cleanup_sections }}",
            }
        },
    ]
    rc, res = _play(tmp_path, tasks)
    assert rc == 0, res
    assert res[0]["inspection"]["cpu_count"] >= 1
    assert "gone" in res[1]["summary"]["red"] and not res[1]["changed"]
    assert "here" in sum(res[1]["summary"].values(), [])
    assert os.path.exists(res[1]["files"]["html"]) and os.path.exists(res[1]["files"]["xlsx"])
    html = (tmp_path / "cl" / "r.html").read_text(encoding="utf-8")
    assert "2.0 KiB" in html and '<td class="s-red' in html and "/srv" in html
    rc, res = _play(tmp_path, tasks[:2], "--check", name="chk")
    assert rc == 0 and res[1]["files"] == {}
