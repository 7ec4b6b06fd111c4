"""The module through Ansible, for real: playbooks/region_change.yml in check mode, then applied,
then rolled back (-e rollback=true)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
from ansible.module_utils import popdb_region as R
from regionlib import FIXTURES, change, references, subtree_count

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def playbook(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.timer",
        "ANSIBLE_FACT_CACHING": "memory",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
        "-i", "localhost,", "-c", "local",
        "-e", f"ansible_python_interpreter={sys.executable}",
        os.path.join(ROOT, "playbooks", "region_change.yml"),
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)


def task_result(proc, name: str) -> dict:
    doc, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{") :])
    for play in doc["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                return task["hosts"]["localhost"]
    raise AssertionError(f"task {name} not in output")


def test_region_change_playbook_check_apply_rollback(pg_server, prov, prov_dsn):
    R.apply_change(
        prov, change(change_id="PRE", type="rename", code="420304", new_code="420321", name="郧县")
    )
    pre = R.database_checksum(prov)
    n = subtree_count(prov, "420321")
    prov.commit()
    fixture = os.path.join(FIXTURES, "HB-2014-420321-yunyang.yml")
    biz = pg_server.create_db(f"biz_ansible_{os.getpid()}")
    downstreams = [{"name": "业务库", "type": "db", "dsn": biz, "table": "public.region_dict"}]
    args = (
        "-e", f"change_file={fixture}",
        "-e", f"popdb_region_province_dsn='{prov_dsn}'",
        "-e", json.dumps({"popdb_region_downstreams": downstreams}),
    )  # fmt: skip
    pushed = "SELECT name FROM public.region_dict WHERE code = '420304000000'"

    proc = playbook(*args, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = task_result(proc, "Apply or roll back the change")
    assert res["changed"] is True
    assert res["counts"]["province"]["person.residence_region"] == n
    assert "420321000000 郧县" in res["diff"]["before"]
    assert R.database_checksum(prov) == pre  # check mode wrote nothing
    assert task_result(proc, "Push dictionary and mapping to the business systems")["changed"] is True
    with psycopg.connect(biz) as c:
        assert c.execute("SELECT to_regclass('public.region_dict')").fetchone()[0] is None

    proc = playbook(*args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert task_result(proc, "Apply or roll back the change")["changed"] is True
    assert references(prov, "420321") == {} and subtree_count(prov, "420304") == n
    push = task_result(proc, "Push dictionary and mapping to the business systems")
    assert push["downstreams"][0]["verified"] is True
    with psycopg.connect(biz) as c:
        assert c.execute(pushed).fetchone()[0] == "郧阳区"

    proc = playbook(*args)
    assert task_result(proc, "Apply or roll back the change")["changed"] is False

    proc = playbook(*args, "-e", "rollback=true")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert R.database_checksum(prov) == pre
    with psycopg.connect(biz) as c:  # the business system follows the rollback too
        assert c.execute(pushed).fetchone() is None
