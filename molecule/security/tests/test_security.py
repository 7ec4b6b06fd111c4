"""Security scenario: real PAM, real sshd, real nftables seen from the controller, real ClamAV."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest
import testinfra

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
STRONG = "Str0ng-Verify!Pw9"

testinfra_hosts = ["ansible://all"]


def _vars(host) -> dict:
    return host.ansible.get_variables()


def _addr(host) -> str:
    v = _vars(host)
    return v.get("ansible_host", v["inventory_hostname"])


def _other(host, name: str):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=host.backend.ansible_inventory)


def _pam(host, user: str, action: str, answers: list[str]):
    feed = "\\n".join(answers) + "\\n"
    return host.run(f"printf '{feed}' | pamtester popdb-test {user} {action}")


@pytest.fixture
def db(host):
    if host.backend.get_hostname() != "prov-db01":
        pytest.skip("PAM tests run on prov-db01")
    return host


def test_weak_password_rejected_strong_accepted(db):
    weak = _pam(db, "pwtest", "chauthtok", ["abc123"] * 6)
    assert weak.rc != 0, weak.stdout + weak.stderr
    short = _pam(db, "pwtest", "chauthtok", ["Ab1!short"] * 6)
    assert short.rc != 0
    strong = _pam(db, "pwtest", "chauthtok", [STRONG, STRONG])
    assert strong.rc == 0, strong.stdout + strong.stderr
    assert _pam(db, "pwtest", "authenticate", [STRONG]).rc == 0
    # pam_pwhistory: the password just set cannot be set again.
    again = _pam(db, "pwtest", "chauthtok", [STRONG] * 6)
    assert again.rc != 0


def test_faillock_locks_after_deny_failures(db):
    db.run("faillock --user locktest --reset")
    assert _pam(db, "locktest", "authenticate", ["Prep-Initial-9x!Q"]).rc == 0
    for _ in range(5):
        assert _pam(db, "locktest", "authenticate", ["wrong-password"]).rc != 0
    locked = _pam(db, "locktest", "authenticate", ["Prep-Initial-9x!Q"])
    assert locked.rc != 0, "the correct password must be refused while the account is locked"
    assert db.run("faillock --user locktest").stdout.count("V") >= 5
    db.run("faillock --user locktest --reset")
    assert _pam(db, "locktest", "authenticate", ["Prep-Initial-9x!Q"]).rc == 0


def test_password_aging_on_existing_human_accounts(db):
    out = db.run("chage -l pwtest").stdout
    assert "Maximum number of days between password change\t\t: 90" in out
    assert "Minimum number of days between password change\t\t: 1" in out
    assert "PASS_MAX_DAYS\t90" in db.file("/etc/login.defs").content_string


def test_sshd_effective_settings(host):
    cfg, multi = {}, {}
    for line in host.check_output("sshd -T -C user=root,host=x,addr=127.0.0.1").splitlines():
        k, _, v = line.partition(" ")
        cfg[k] = v
        multi.setdefault(k, []).append(v)
    assert cfg["passwordauthentication"] == "no"
    assert cfg["kbdinteractiveauthentication"] == "no"
    assert cfg["permitrootlogin"] == "without-password"
    assert cfg["maxauthtries"] == "3"
    assert cfg["clientaliveinterval"] == "300"
    assert cfg["clientalivecountmax"] == "1"
    assert {"root", "popdb-ops"} <= set(multi["allowgroups"])
    assert set(cfg["ciphers"].split(",")) <= {
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    }
    assert not any(m in cfg["macs"] for m in ("hmac-sha1", "md5", "umac-64"))
    assert "diffie-hellman-group1-sha1" not in cfg["kexalgorithms"]
    # The foreign drop-in was moved out and cannot override the hardening.
    assert not host.file("/etc/ssh/sshd_config.d/zz-foreign.conf").exists
    assert host.file("/etc/ssh/sshd_config.d.disabled-by-popdb/zz-foreign.conf").exists
    if host.backend.get_hostname() == "prov-db01":
        assert "postgres" in multi["allowgroups"]


def _ssh(host, *opts: str) -> subprocess.CompletedProcess:
    """A fresh SSH connection from the controller with the operator's own settings (no multiplexing)."""
    v = _vars(host)
    cmd = ["ssh", "-o", "ControlPath=none", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    cmd += shlex.split(v.get("ansible_ssh_common_args", ""))
    if v.get("ansible_ssh_private_key_file"):
        cmd += ["-i", v["ansible_ssh_private_key_file"]]
    if v.get("ansible_port"):
        cmd += ["-p", str(v["ansible_port"])]
    cmd += [*opts, f"{v.get('ansible_user', 'root')}@{_addr(host)}", "true"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_key_login_works_and_password_login_is_refused(host):
    ok = _ssh(host)
    assert ok.returncode == 0, f"key login failed: {ok.stderr}"
    pw = _ssh(
        host, "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"
    )
    assert pw.returncode != 0
    assert "Permission denied (publickey)" in pw.stderr, pw.stderr


def _nmap_open(addr: str, ports: str) -> set[int]:
    out = subprocess.run(
        ["nmap", "-Pn", "-sT", "-n", "-T4", "--max-retries", "1", "-p", ports, "-oG", "-", addr],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    opened = set()
    for line in out.splitlines():
        if "Ports:" in line:
            for entry in line.split("Ports:", 1)[1].split(","):
                fields = entry.strip().split("/")
                if len(fields) > 1 and fields[1] == "open":
                    opened.add(int(fields[0]))
    return opened


def test_nmap_from_controller_sees_only_allowed_ports(host):
    """Listening in the lab: sshd everywhere, the mirror (8081) on mgmt01, the kept stray (8098) on web01."""
    assert host.socket("tcp://0.0.0.0:22").is_listening
    opened = _nmap_open(_addr(host), "1-1024,3142,5432,8000-8100,9000-9100")
    assert opened == {22}, f"open ports {sorted(opened)}, expected only 22"


def test_allow_list_lets_clients_through(host):
    """web01 may reach prov-db01:5432 (refused: allowed by the firewall, nothing listening)."""
    if host.backend.get_hostname() != "web01":
        pytest.skip("client side runs on web01")
    target = _addr(_other(host, "prov-db01"))
    probe = (
        "import socket,sys\ns=socket.socket();s.settimeout(5)\n"
        f"try:\n s.connect(('{target}',5432));print('open')\n"
        "except ConnectionRefusedError: print('refused')\nexcept OSError as e: print('dropped',e)\n"
    )
    assert host.check_output(f'python3 -c "{probe}"') == "refused"


def test_stray_listener_reported_and_closed(host):
    if host.backend.get_hostname() != "web01":
        pytest.skip("stray listeners run on web01")
    stray = host.service("popdb-stray")
    assert not stray.is_running
    # A local unit in /etc/systemd/system cannot be masked; it is stopped and disabled.
    assert host.run("systemctl is-enabled popdb-stray.service").stdout.strip() == "disabled"
    assert not host.socket("tcp://0.0.0.0:8099").is_listening
    assert "popdb-stray.service" in host.file("/var/log/popdb/firewall-disabled.log").content_string
    # Not in the disable list: keeps listening, is reported, and the firewall drops it.
    assert host.socket("tcp://0.0.0.0:8098").is_listening
    with open(os.path.join(ROOT, "out", "firewall", "web01.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    assert [s["port"] for s in report["监听但未放行端口"]] == [8098]
    assert report["监听但未放行端口"][0]["unit"] == "popdb-stray-keep.service"


def test_clamav_detects_eicar(host):
    host.run("install -d /tmp/avtest && rm -f /tmp/avtest/*")
    host.run(f"printf '%s' '{EICAR}' > /tmp/avtest/eicar.txt && echo clean > /tmp/avtest/clean.txt")
    res = host.run("clamscan -r -i --no-summary /tmp/avtest")
    assert res.rc == 1, res.stdout + res.stderr
    assert "/tmp/avtest/eicar.txt: Eicar-Test-Signature-popdb" in res.stdout
    assert "clean.txt" not in res.stdout
    assert host.service("clamav-freshclam").is_enabled is False


def test_special_period_full_scan_report(host):
    if host.backend.get_hostname() != "web01":
        pytest.skip("special period is on for web01 only")
    assert host.service("popdb-clamscan-full.timer").is_enabled
    with open(os.path.join(ROOT, "out", "antivirus", "web01.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    assert report["感染文件数"] == 1
    assert report["发现"][0]["文件"] == "/srv/incoming/eicar.com"


def test_security_updates_security_origin_only_no_reboot(host):
    dump = host.check_output("apt-config dump Unattended-Upgrade")
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in dump
    origins = [
        line for line in dump.splitlines() if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")
    ]
    assert origins and all("Debian-Security" in o for o in origins), origins


def test_firewall_table_default_drop(host):
    rules = host.check_output("nft list chain inet popdb_filter input")
    assert "policy drop" in rules
    assert 'log prefix "popdb-fw-drop: "' in rules and "limit rate" in rules


def test_os_hardening(host):
    """Core dumps off, umask 027, idle timeout, modules blacklisted, net sysctls, fail2ban watching sshd."""
    assert host.check_output("bash -lc 'ulimit -c'") == "0"
    assert host.check_output("bash -lc umask") == "0027"
    assert "readonly TMOUT" in host.file("/etc/profile.d/popdb-tmout.sh").content_string
    assert "install usb-storage /bin/true" in host.file("/etc/modprobe.d/popdb-blacklist.conf").content_string
    assert host.sysctl("net.ipv4.conf.all.accept_redirects") == 0
    assert host.sysctl("net.ipv4.conf.all.log_martians") == 1
    assert host.file("/etc/crontab").mode == 0o600
    assert "Banned IP list" in host.check_output("fail2ban-client status sshd")
    # The controller's address is never banned (the operator cannot lock himself out).
    assert "ignoreip" in host.file("/etc/fail2ban/jail.local").content_string
    for pkg in ("libpam-tmpdir", "needrestart", "debsums", "aide", "usbguard", "sysstat"):
        assert host.package(pkg).is_installed, pkg
    # No USB bus in a container: the USBGuard daemon stays masked, its policy is in place.
    assert host.run("systemctl is-enabled usbguard.service").stdout.strip() == "masked"
    assert not host.package("exim4-daemon-light").is_installed
