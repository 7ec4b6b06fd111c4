"""The scheduler's default jobs (nightly sync, daily backup check, weekly inspection) point at real playbooks,
and each job's tags select real tasks against the production inventory."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((ROOT / "roles/scheduler/defaults/main.yml").read_text())
JOBS = DEFAULTS["scheduler_jobs"]
PLAYBOOK_BIN = str(Path(sys.executable).with_name("ansible-playbook"))


def test_the_three_contract_jobs_are_scheduled():
    assert {j["name"] for j in JOBS} == {"nightly_sync", "backup_check", "weekly_inspection"}
    assert {j["playbook"] for j in JOBS} == {
        "playbooks/sync.yml",
        "playbooks/database.yml",
        "playbooks/inspection.yml",
    }


@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_job_selects_real_tasks(job):
    assert (ROOT / job["playbook"]).is_file(), f"{job['name']}: playbook {job['playbook']} is missing"
    cmd = [PLAYBOOK_BIN, "-i", str(ROOT / DEFAULTS["scheduler_inventory"]), job["playbook"], *job["args"]]
    out = subprocess.run([*cmd, "--list-tasks"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{job['name']}: {out.stderr[-2000:]}"
    # task lines, not play lines, and not the `always` tasks (argument validation) every selection includes
    tasks = [
        ln
        for ln in out.stdout.splitlines()
        if "TAGS:" in ln and "play #" not in ln and ln.split("TAGS:")[1].strip() != "[always]"
    ]
    assert tasks, f"{job['name']}: its playbook and args select no task:\n{out.stdout[-2000:]}"
