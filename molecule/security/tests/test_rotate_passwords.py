"""playbooks/rotate_passwords.yml on a lab host: the new password works through PAM, the old one fails, the
rotation is recorded, the operator's key login survives, and a second run with the same vault values changes
nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess

import pytest
from test_security import _pam, _ssh

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OLD = "Prep-Initial-9x!Q"  # set by prepare.yml
NEW = "Rotated-Pw-2026!Kq7"
RECORD = "/var/lib/popdb/password-rotation.json"

testinfra_hosts = ["ansible://prov-db01"]


def _rotate(host, tmp_path) -> subprocess.CompletedProcess:
    extra = tmp_path / "vault.json"
    extra.write_text(json.dumps({"vault_rotate_passwords": {"rotatetest": NEW}, "rotate_hosts": "prov-db01"}))
    env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    cmd = ["ansible-playbook", "-i", host.backend.ansible_inventory, "playbooks/rotate_passwords.yml"]
    cmd += ["-e", f"@{extra}"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    return res


def _changed(out: str) -> int:
    m = re.search(r"prov-db01\s+:\s+ok=\d+\s+changed=(\d+)", out)
    assert m, out[-2000:]
    return int(m.group(1))


@pytest.fixture(scope="module")
def rotated(host, tmp_path_factory):
    host.run("faillock --user rotatetest --reset")
    assert _pam(host, "rotatetest", "authenticate", [OLD]).rc == 0, "prepare.yml sets the old password"
    tmp = tmp_path_factory.mktemp("rotate")
    first = _rotate(host, tmp)
    record = json.loads(host.file(RECORD).content_string)
    second = _rotate(host, tmp)
    return {"first": first, "second": second, "record": record}


def test_new_password_works_old_fails(host, rotated):
    assert _changed(rotated["first"].stdout) >= 1
    host.run("faillock --user rotatetest --reset")
    assert _pam(host, "rotatetest", "authenticate", [NEW]).rc == 0
    assert _pam(host, "rotatetest", "authenticate", [OLD]).rc != 0
    host.run("faillock --user rotatetest --reset")
    status = host.check_output("passwd -S rotatetest").split()
    assert status[1] == "P", status


def test_rotation_timestamp_recorded(host, rotated):
    when = dt.datetime.strptime(rotated["record"]["rotatetest"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - when).total_seconds()) < 1800
    f = host.file(RECORD)
    assert f.user == "root" and f.mode == 0o600
    # The second run (same vault values) leaves the record as it was.
    assert json.loads(f.content_string) == rotated["record"]


def test_operator_key_login_still_works(host, rotated):
    res = _ssh(host)
    assert res.returncode == 0, res.stderr


def test_second_run_changes_nothing(rotated):
    assert _changed(rotated["second"].stdout) == 0, rotated["second"].stdout[-3000:]
