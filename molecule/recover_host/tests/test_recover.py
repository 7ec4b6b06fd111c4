"""recover_host: wipe the host's upper layer with the lab tool, re-converge, verify the baseline is back,
and find the diagnostics bundle on the controller."""

from __future__ import annotations

import glob
import os
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
LAB = os.path.join(ROOT, "bin", "lab")
LAB_ID = os.environ.get("POPDB_LAB_ID", "0")
SCENARIO_DIR = os.path.dirname(os.path.dirname(__file__))
testinfra_hosts = ["ansible://web01"]


def _env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), POPDB_LAB_ID=LAB_ID)


def _run(cmd, timeout=900):
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stdout[-4000:]}\n{p.stderr[-2000:]}"
    return p.stdout


def _inventory():
    # The scenario's inventory directory (lab host vars, parent groups and group_vars), not the bare file.
    inv = os.environ.get("MOLECULE_INVENTORY_FILE")
    inv = os.path.dirname(inv) if inv else None
    return ["-i", inv] if inv else []


def _stat(path):
    cmd = ["ansible", *_inventory(), "web01", "-b", "-m", "ansible.builtin.stat", "-a", f"path={path}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=ROOT).stdout


def _rebuild_web01():
    """A fresh upper layer for web01: the lab's rebuild action if it has one, else down + up."""
    helptext = subprocess.run([LAB, "--help"], capture_output=True, text=True, env=_env()).stdout
    if "rebuild" in helptext:
        _run([LAB, "rebuild", "web01", "--id", LAB_ID])
        return
    spec = os.path.join(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"), "recover-spec.yml")
    with open(spec, "w", encoding="utf-8") as fh:
        fh.write("hosts:\n  - {name: web01, groups: [web_app, servers]}\n")
    _run([LAB, "down", "--id", LAB_ID])
    _run([LAB, "up", "--spec", spec, "--id", LAB_ID])


@pytest.fixture(scope="module")
def recovered():
    # Leave a marker in the upper layer; after the rebuild it must be gone (the layer really was wiped).
    _run(["ansible", *_inventory(), "web01", "-b", "-m", "ansible.builtin.copy",
          "-a", "dest=/root/popdb-recover-marker content=before mode=0600"])  # fmt: skip
    _rebuild_web01()
    wiped = _stat("/etc/chrony/chrony.conf")
    marker = _stat("/root/popdb-recover-marker")
    assert '"exists": false' in marker, marker
    before = sorted(glob.glob(os.path.join(ROOT, "out", "recover", "web01", "*")))
    _run(["ansible-playbook", *_inventory(), os.path.join(ROOT, "playbooks", "recover_host.yml"),
          "-e", "recover_target=web01", "-e", "recover_security=false"], timeout=1200)  # fmt: skip
    after = sorted(glob.glob(os.path.join(ROOT, "out", "recover", "web01", "*")))
    return {"wiped": wiped, "new_bundles": [b for b in after if b not in before]}


def test_rebuild_wiped_the_baseline(recovered):
    assert '"exists": false' in recovered["wiped"]


def test_baseline_back_after_recovery(recovered, host):
    assert host.service("chrony").is_running
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Asia/Shanghai"
    out = host.check_output("sshd -T -C user=root,host=x,addr=127.0.0.1")
    assert "usedns no" in out.splitlines()
    assert host.file("/etc/ssh/sshd_config.d/50-popdb-baseline.conf").contains("^DebianBanner no")
    assert host.user("opsadmin").exists
    assert host.check_output("sysctl -n net.core.somaxconn") == "4096"


def test_diagnostics_bundle_on_controller(recovered):
    assert len(recovered["new_bundles"]) == 1
    bundle = recovered["new_bundles"][0]
    for name in ("journal.txt", "dmesg.txt", "units.txt", "units-failed.txt", "disk.txt", "system.txt"):
        assert os.path.getsize(os.path.join(bundle, name)) > 0, name
    with open(os.path.join(bundle, "units.txt"), encoding="utf-8") as fh:
        assert "chrony.service" in fh.read()
    with open(os.path.join(bundle, "disk.txt"), encoding="utf-8") as fh:
        assert "Filesystem" in fh.read()
