"""Root-side operations of the lab: base image, bridges, netns, overlays, nspawn, apt proxy, guard."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from . import model

CACHE = "/var/cache/popdb-lab"
BASE = os.path.join(CACHE, "base-bookworm")
BASE_STAMP = os.path.join(BASE, ".popdb-lab-base")
ACNG_CACHE = os.path.join(CACHE, "acng")
STATE = "/var/lib/popdb-lab"
RUN = "/run/popdb-lab"
ACNG_PORT = 3142
CGROUP_HIERARCHIES = ("systemd", "unified", "memory")
BASE_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,iproute2,sudo,cron,procps,iputils-ping"
PREREQS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "apt-cacher-ng": "apt-cacher-ng",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
SSH_DIR = os.path.join(model.ROOT, ".cache", "lab", "ssh")
SSH_KEY = os.path.join(SSH_DIR, "id_ed25519")


class LabError(RuntimeError):
    """An operator-facing failure (printed without a traceback)."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], check: bool = True, quiet: bool = False, input: str | None = None) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise LabError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}")
    return p.stdout


def preflight(need: tuple[str, ...] = tuple(PREREQS)) -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root (network namespaces, bridges, overlay mounts, systemd-nspawn)")
    missing = [f"{c} (Debian package {PREREQS[c]})" for c in need if shutil.which(c) is None]
    if missing:
        raise LabError("missing prerequisite(s): " + ", ".join(missing) + " — run `make apt`")
    for h in CGROUP_HIERARCHIES:
        if not os.path.isdir(f"/sys/fs/cgroup/{h}"):
            raise LabError(f"cgroup hierarchy /sys/fs/cgroup/{h} missing (the lab expects cgroup v1 hybrid)")


@contextlib.contextmanager
def locked(name: str):
    os.makedirs(RUN, exist_ok=True)
    with open(os.path.join(RUN, f"{name}.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------- mirror
def apt_mirrors() -> dict[str, str]:
    """The Debian archive and security URIs this machine's apt uses (http only)."""
    texts = []
    for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        with contextlib.suppress(OSError):
            with open(f, encoding="utf-8") as fh:
                texts.append(fh.read())
    uris = []
    for t in texts:
        uris += re.findall(r"^\s*URIs:\s*(\S+)", t, re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", t, re.M)
    archive = next((u for u in uris if re.search(r"/debian/?$", u)), None)
    security = next((u for u in uris if re.search(r"/debian-security/?$", u)), None)
    if archive is None:
        raise LabError("no Debian archive (…/debian) found in /etc/apt/sources.list(.d)")
    archive = archive.rstrip("/").replace("https://", "http://")
    if security is None:
        security = archive + "-security"
    return {"archive": archive, "security": security.rstrip("/").replace("https://", "http://")}


# ------------------------------------------------------------------------------------------ build
def ensure_ssh_key() -> str:
    if not os.path.exists(SSH_KEY):
        os.makedirs(SSH_DIR, mode=0o700, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "popdb-lab-controller", "-f", SSH_KEY])
    return SSH_KEY


def base_ready() -> bool:
    return os.path.exists(BASE_STAMP)


def build(force: bool = False) -> float:
    """Debootstrap the base image once (reused while its stamp exists). Returns seconds spent."""
    preflight(("debootstrap",))
    t0 = time.monotonic()
    with locked("build"):
        if base_ready() and not force:
            log(f"base image {BASE} is ready (remove it or use --force to rebuild)")
            return 0.0
        mirrors = apt_mirrors()
        tmp = BASE + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(CACHE, exist_ok=True)
        log(f"debootstrap bookworm from {mirrors['archive']} (about 90 s)")
        p = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                tmp,
                mirrors["archive"],
            ],
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
            raise LabError(f"debootstrap failed:\n{tail}")
        _prepare_base(tmp, mirrors)
        if os.path.exists(BASE):
            shutil.rmtree(BASE)
        os.rename(tmp, BASE)
        with open(BASE_STAMP, "w") as fh:  # written last: its presence means the base is complete
            json.dump({"packages": BASE_PACKAGES, "mirrors": mirrors, "built": time.time()}, fh)
    dt = time.monotonic() - t0
    log(f"base image built in {dt:.1f} s")
    return dt


def _write(path: str, text: str, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # never write through a symlink of the image
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(path, mode)


def _prepare_base(root: str, mirrors: dict[str, str]) -> None:
    _write(f"{root}/etc/machine-id", "")  # per-host id is written into each upper layer
    for k in glob.glob(f"{root}/etc/ssh/ssh_host_*"):
        os.unlink(k)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{root}/etc/hostname")
    _write(f"{root}/etc/ssh/sshd_config.d/lab.conf", "HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\n")
    _write(f"{root}/etc/resolv.conf", "# lab: no DNS; apt goes through the lab proxy\n")
    _write(
        f"{root}/etc/apt/sources.list",
        f"deb {mirrors['archive']} bookworm main\n"
        f"deb {mirrors['archive']} bookworm-updates main\n"
        f"deb {mirrors['security']} bookworm-security main\n",
    )
    for f in glob.glob(f"{root}/etc/apt/sources.list.d/*"):
        os.unlink(f)
    os.makedirs(f"{root}/root/.ssh", mode=0o700, exist_ok=True)
    with open(ensure_ssh_key() + ".pub", encoding="utf-8") as fh:
        _write(f"{root}/root/.ssh/authorized_keys", fh.read(), 0o600)
    shutil.rmtree(f"{root}/var/cache/apt/archives", ignore_errors=True)
    os.makedirs(f"{root}/var/cache/apt/archives/partial", exist_ok=True)


# ------------------------------------------------------------------------------------- lab state
def lab_dir(lab_id: int) -> str:
    return os.path.join(STATE, str(lab_id))


def out_dir(lab_id: int) -> str:
    return os.path.join(model.ROOT, ".cache", "lab", str(lab_id))


def host_dir(lab_id: int, name: str) -> str:
    return os.path.join(lab_dir(lab_id), "hosts", name)


def cgroup_root(lab_id: int) -> str:
    return f"popdb-lab{lab_id}"


def read_pid(lab_id: int, name: str) -> int | None:
    try:
        with open(os.path.join(host_dir(lab_id, name), "pid")) as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_is_host(pid, lab_id, name) else None


def pid_is_host(pid: int, lab_id: int, name: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return (
        b"systemd-nspawn" in os.path.basename(argv[0])
        and os.path.join(host_dir(lab_id, name), "root").encode() in argv
    )


def nspawn_pids(lab_id: int) -> list[int]:
    """Every systemd-nspawn process of this lab id, found by its root directory."""
    prefix = (lab_dir(lab_id) + "/hosts/").encode()
    out = []
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(p, "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and b"systemd-nspawn" in os.path.basename(argv[0])
            and any(a.startswith(prefix) for a in argv)
        ):
            out.append(int(p.split("/")[2]))
    return out


def links() -> dict[str, dict[str, Any]]:
    return {li["ifname"]: li for li in json.loads(run(["ip", "-j", "-d", "addr", "show"]) or "[]")}


def netns_list() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mounts") as fh:
        return [line.split()[1] for line in fh if line.split()[1].startswith(path.rstrip("/") + "/")]


def ssh_ok(address: str, timeout: int = 3) -> bool:
    p = subprocess.run(
        [
            "ssh",
            "-i",
            SSH_KEY,
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            f"ConnectTimeout={timeout}",
            f"root@{address}",
            "true",
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout + 10,
    )
    return p.returncode == 0


# ---------------------------------------------------------------------------------------- network
def ensure_bridge(name: str, addr: str, have: dict[str, dict[str, Any]]) -> None:
    if name not in have:
        run(["ip", "link", "add", name, "type", "bridge"])
        with contextlib.suppress(OSError):
            with open(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "w") as fh:
                fh.write("1")
    cur = have.get(name, {})
    if not any(
        f"{a['local']}/{a['prefixlen']}" == addr for a in cur.get("addr_info", []) if a["family"] == "inet"
    ):
        run(["ip", "addr", "replace", addr, "dev", name])
    run(["ip", "link", "set", name, "up"])


def guard_rules(lab: model.Lab) -> str:
    """nft guard: the root namespace never forwards lab traffic, and lab hosts reach only the
    controller's own lab addresses (never its other addresses)."""
    t = f"popdb_lab{lab.lab_id}"
    brs = ", ".join(f'"{b}"' for b in lab.bridges())
    addrs = ", ".join(a.split("/")[0] for a in lab.bridges().values())
    return (
        f"table inet {t}\n"
        f"delete table inet {t}\n"
        f"table inet {t} {{\n"
        f"  chain forward {{\n"
        f"    type filter hook forward priority -10; policy accept;\n"
        f"    iifname {{ {brs} }} drop\n"
        f"    oifname {{ {brs} }} drop\n"
        f"  }}\n"
        f"  chain input {{\n"
        f"    type filter hook input priority -10; policy accept;\n"
        f"    iifname {{ {brs} }} meta nfproto ipv6 drop\n"
        f"    iifname {{ {brs} }} ip daddr != {{ {addrs} }} drop\n"
        f"  }}\n"
        f"}}\n"
    )


# ------------------------------------------------------------------------------------ apt proxy
def acng_pid() -> int | None:
    try:
        with open(os.path.join(RUN, "acng.pid")) as fh:
            pid = int(fh.read())
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if b"apt-cacher-ng" not in fh.read():
                return None
        return pid
    except (OSError, ValueError):
        return None


def lab_bridge_addresses() -> list[str]:
    """Controller addresses on every lab bridge of every running lab id."""
    out = []
    for name, li in sorted(links().items()):
        if re.match(r"^plb\d+(w|l\d+)$", name):
            out += [a["local"] for a in li.get("addr_info", []) if a["family"] == "inet"]
    return out


def acng_config(addresses: list[str], mirrors: dict[str, str]) -> str:
    def hostpath(u: str) -> str:
        return re.sub(r"^https?://", "", u)

    a, s = mirrors["archive"], mirrors["security"]
    return (
        "# popdb lab apt proxy: only the Debian archive and security mirror this machine uses.\n"
        f"CacheDir: {ACNG_CACHE}\n"
        f"LogDir: {RUN}/acng-log\n"
        "SupportDir: /usr/lib/apt-cacher-ng\n"
        f"BindAddress: {' '.join(addresses)}\n"
        f"Port: {ACNG_PORT}\n"
        f"Remap-debrep: {hostpath(a)} ; {a}/\n"
        f"Remap-secdeb: {hostpath(s)} ; {s}/\n"
        "ForceManaged: 1\n"
        "ExThreshold: 4\n"
        "PassThroughPattern: ^$\n"
    )


def acng_sync() -> None:
    """One apt-cacher-ng for all running lab ids, bound to exactly their bridge addresses."""
    with locked("acng"):
        addresses = lab_bridge_addresses()
        conf_dir = os.path.join(RUN, "acng")
        conf = acng_config(addresses, apt_mirrors()) if addresses else ""
        pid = acng_pid()
        current = ""
        with contextlib.suppress(OSError):
            with open(os.path.join(conf_dir, "acng.conf")) as fh:
                current = fh.read()
        if pid and conf == current:
            return
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not addresses:
            shutil.rmtree(conf_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(RUN, "acng.pid"))
            log("apt proxy stopped (no lab left)")
            return
        os.makedirs(conf_dir, exist_ok=True)
        os.makedirs(ACNG_CACHE, exist_ok=True)
        os.makedirs(os.path.join(RUN, "acng-log"), exist_ok=True)
        _write(os.path.join(conf_dir, "acng.conf"), conf)
        with open(os.path.join(RUN, "acng-log", "stdout"), "ab") as out:
            p = subprocess.Popen(
                ["apt-cacher-ng", "-c", conf_dir, "ForeGround=1"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with open(os.path.join(RUN, "acng.pid"), "w") as fh:
            fh.write(str(p.pid))
        import socket

        for _ in range(100):
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex((addresses[0], ACNG_PORT)) == 0:
                    break
            if p.poll() is not None:
                raise LabError(f"apt-cacher-ng exited ({p.returncode}); see {RUN}/acng-log/")
            time.sleep(0.1)
        log(f"apt proxy on {', '.join(addresses)} port {ACNG_PORT}")


# ------------------------------------------------------------------------------------------ hosts
def _identity(lab: model.Lab, h: model.Host, root: str) -> None:
    _write(f"{root}/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
    _write(f"{root}/etc/hostname", h.name + "\n")
    _write(f"{root}/etc/hosts", f"127.0.0.1 localhost\n{h.address} {h.name}\n::1 localhost ip6-localhost\n")
    key = f"{root}/etc/ssh/ssh_host_ed25519_key"
    for f in (key, key + ".pub"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.name, "-f", key])
    with open(SSH_KEY + ".pub", encoding="utf-8") as fh:
        _write(f"{root}/root/.ssh/authorized_keys", fh.read(), 0o600)
    _write(
        f"{root}/etc/apt/apt.conf.d/01popdb-lab-proxy",
        f'Acquire::http::Proxy "http://{lab.proxy_ip(h)}:{ACNG_PORT}";\nAcquire::Retries "5";\n',
    )


def _network(lab: model.Lab, h: model.Host) -> None:
    ns = lab.netns(h)
    if ns in netns_list():
        run(["ip", "netns", "del", ns])
    run(["ip", "netns", "add", ns])
    ip = ["ip", "-n", ns]
    run([*ip, "link", "set", "lo", "up"])
    if h.wan_ip:
        v = lab.veth(h, "w")
        run(["ip", "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", v, "master", lab.wan_bridge, "up"])
        run([*ip, "addr", "add", f"{h.wan_ip}/24", "dev", "eth0"])
        run([*ip, "link", "set", "eth0", "up"])
    if h.lan_ip:
        v = lab.veth(h, "l")
        dev = "eth1" if h.wan_ip else "eth0"
        run(["ip", "link", "add", v, "type", "veth", "peer", "name", dev, "netns", ns])
        run(["ip", "link", "set", v, "master", lab.lan_bridge(h.lan_index), "up"])  # type: ignore[arg-type]
        run([*ip, "addr", "add", f"{h.lan_ip}/24", "dev", dev])
        run([*ip, "link", "set", dev, "up"])
        if h.gateway_ip:
            run([*ip, "route", "add", "default", "via", h.gateway_ip])


def start_host(lab: model.Lab, h: model.Host) -> None:
    d = host_dir(lab.lab_id, h.name)
    root = os.path.join(d, "root")
    stop_host(lab.lab_id, h.name, quiet=True)  # leftovers of a crashed host
    for sub in ("upper", "work", "root"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={BASE},upperdir={d}/upper,workdir={d}/work",
            root,
        ]
    )
    _identity(lab, h, root)
    _network(lab, h)
    cg = f"{cgroup_root(lab.lab_id)}/{h.name}"
    for hier in CGROUP_HIERARCHIES:
        os.makedirs(f"/sys/fs/cgroup/{hier}/{cg}", exist_ok=True)

    def enter_cgroup() -> None:
        for hier in CGROUP_HIERARCHIES:
            with open(f"/sys/fs/cgroup/{hier}/{cg}/cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))

    with open(os.path.join(d, "console.log"), "wb") as out:
        p = subprocess.Popen(
            [
                "systemd-nspawn",
                "-q",
                "-D",
                root,
                "-M",
                f"{h.name}-{lab.lab_id}"[:64],
                "--hostname",
                h.name,
                "--register=no",
                "--keep-unit",
                "-b",
                "--private-network",
                f"--network-namespace-path=/run/netns/{lab.netns(h)}",
                "--link-journal=no",
                "--resolv-conf=off",
                "--timezone=off",
                "--console=read-only",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=enter_cgroup,  # noqa: PLW1509 - needed: each host in its own cgroup before exec
        )
    with open(os.path.join(d, "pid"), "w") as fh:
        fh.write(str(p.pid))


def stop_host(lab_id: int, name: str, quiet: bool = False) -> None:
    d = host_dir(lab_id, name)
    pid = read_pid(lab_id, name)
    if pid:
        _terminate([pid])
    root = os.path.join(d, "root")
    for m in sorted(mounts_under(d), key=len, reverse=True):
        run(["umount", m], check=False)
    if os.path.ismount(root):
        run(["umount", "-l", root], check=False)
    ns = f"popdb{lab_id}-{name}"
    if ns in netns_list():
        run(["ip", "netns", "del", ns], check=False)
    _rm_cgroups(f"{cgroup_root(lab_id)}/{name}")
    shutil.rmtree(d, ignore_errors=True)


def _terminate(pids: list[int], timeout: float = 20.0) -> None:
    """SIGTERM to nspawn powers the container off cleanly; SIGKILL after the timeout."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.1)
        for p in pids:  # reap if they happen to be our children
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(p, os.WNOHANG)
    for pid in pids:
        if os.path.exists(f"/proc/{pid}"):
            log(f"pid {pid} did not power off in {timeout:.0f} s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _rm_cgroups(rel: str) -> None:
    for hier in CGROUP_HIERARCHIES:
        top = f"/sys/fs/cgroup/{hier}/{rel}"
        if not os.path.isdir(top):
            continue
        dirs = [dp for dp, _, _ in os.walk(top)]
        for dp in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
            for _ in range(50):
                try:
                    os.rmdir(dp)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # processes still leaving


# ------------------------------------------------------------------------------------ up / down
def _no_bridge_netfilter() -> None:
    """With br_netfilter loaded and bridge-nf-call-* = 1, frames between two hosts on the SAME lab bridge
    go through the root namespace's IP hooks and hit the guard (it drops all lab forwarding), so lab hosts
    could not reach each other. The per-bridge switch cannot override the global one: turn the global off."""
    for key in ("iptables", "ip6tables", "arptables"):
        path = f"/proc/sys/net/bridge/bridge-nf-call-{key}"
        try:
            with open(path) as fh:
                on = fh.read().strip() == "1"
        except OSError:
            continue  # br_netfilter not loaded: nothing to do
        if on:
            print(f"lab: br_netfilter is loaded; setting net.bridge.bridge-nf-call-{key}=0 (lab bridges)")
            run(["sysctl", "-qw", f"net.bridge.bridge-nf-call-{key}=0"])


def up(lab: model.Lab, wait: float = 180.0) -> dict[str, float]:
    preflight()
    if not base_ready():
        build()
    ensure_ssh_key()
    times: dict[str, float] = {}
    t0 = time.monotonic()
    with locked(f"lab{lab.lab_id}"):
        with open("/proc/sys/fs/inotify/max_user_instances") as fh:
            if int(fh.read()) < 1024:
                run(["sysctl", "-qw", "fs.inotify.max_user_instances=1024"])
        _no_bridge_netfilter()
        previous = _load_state(lab.lab_id)
        wanted = {h.name: h for h in lab.hosts}
        # Hosts of a previous spec that are gone or moved are stopped; unchanged running ones stay.
        keep: set[str] = set()
        for ph in previous.get("hosts", []):
            h = wanted.get(ph["name"])
            same = h is not None and _host_key(lab, h) == ph.get("key")
            if same and read_pid(lab.lab_id, ph["name"]):
                keep.add(ph["name"])
            else:
                stop_host(lab.lab_id, ph["name"])
        have = links()
        # bridges of LANs no longer wanted go away
        for name in list(have):
            if re.match(rf"^plb{lab.lab_id}(w|l\d+)$", name) and name not in lab.bridges():
                run(["ip", "link", "del", name], check=False)
        for br, addr in lab.bridges().items():
            ensure_bridge(br, addr, have)
        run(["nft", "-f", "-"], input=guard_rules(lab))
        acng_sync()
        os.makedirs(lab_dir(lab.lab_id), exist_ok=True)
        todo = [h for h in lab.hosts if h.name not in keep]
        for h in todo:
            start_host(lab, h)
        _save_state(lab)
        times["start"] = time.monotonic() - t0
        _write_outputs(lab)
        if todo:
            log(
                f"lab {lab.lab_id}: started {len(todo)} host(s), {len(keep)} already running; waiting for ssh"
            )
        else:
            log(f"lab {lab.lab_id}: all {len(keep)} host(s) already running")
        failed = _wait_ssh(lab, [h for h in lab.hosts], wait)
        times["ssh_ready"] = time.monotonic() - t0
        if failed:
            raise LabError(
                f"ssh not ready after {wait:.0f} s on: {', '.join(failed)} "
                f"(console logs: {lab_dir(lab.lab_id)}/hosts/<name>/console.log)"
            )
    log(f"lab {lab.lab_id}: {len(lab.hosts)} host(s) up, ssh ready in {times['ssh_ready']:.1f} s")
    return times


def _host_key(lab: model.Lab, h: model.Host) -> str:
    return json.dumps([h.wan_ip, h.lan_ip, h.gateway_ip, lab.veth(h, "w"), lab.veth(h, "l")])


def _wait_ssh(lab: model.Lab, hosts: list[model.Host], wait: float) -> list[str]:
    end = time.monotonic() + wait

    def one(h: model.Host) -> str | None:
        while time.monotonic() < end:
            if ssh_ok(h.address, timeout=2):
                return None
            if not read_pid(lab.lab_id, h.name):
                return f"{h.name} (nspawn exited)"
            time.sleep(0.5)
        return h.name

    with ThreadPoolExecutor(max_workers=16) as ex:
        return [r for r in ex.map(one, hosts) if r]


def _state_path(lab_id: int) -> str:
    return os.path.join(lab_dir(lab_id), "state.json")


def _load_state(lab_id: int) -> dict[str, Any]:
    try:
        with open(_state_path(lab_id)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _save_state(lab: model.Lab) -> None:
    st = {"lab_id": lab.lab_id, "hosts": [{"name": h.name, "key": _host_key(lab, h)} for h in lab.hosts]}
    st["spec"] = [
        {
            k: v
            for k, v in {
                "name": h.name,
                "groups": h.groups,
                "lan": h.is_gateway,
                "behind": h.behind,
                "vars": h.vars,
            }.items()
            if v
        }
        for h in lab.hosts
    ]
    _write(_state_path(lab.lab_id), json.dumps(st, indent=1))


def running_lab(lab_id: int) -> model.Lab | None:
    st = _load_state(lab_id)
    if not st.get("spec"):
        return None
    return model.build_lab(lab_id, st["spec"])


def _write_outputs(lab: model.Lab) -> None:
    d = out_dir(lab.lab_id)
    os.makedirs(d, exist_ok=True)
    sshc = os.path.join(d, "ssh_config")
    inv = model.inventory(lab, SSH_KEY, sshc)
    _write(
        os.path.join(d, "inventory.yml"),
        f"# lab {lab.lab_id}: written by bin/lab up\n"
        + yaml.safe_dump(inv, allow_unicode=True, sort_keys=False),
    )
    _write(sshc, model.ssh_config(lab, SSH_KEY))
    _write(os.path.join(d, "hosts.json"), json.dumps(model.hosts_json(lab), indent=1, ensure_ascii=False))


def down(lab_id: int) -> float:
    preflight(("ip", "nft"))
    t0 = time.monotonic()
    with locked(f"lab{lab_id}"):
        pids = nspawn_pids(lab_id)
        if pids:
            _terminate(pids)
        base = lab_dir(lab_id)
        for m in sorted(mounts_under(base), key=len, reverse=True):
            run(["umount", m], check=False)
        for m in mounts_under(base):
            run(["umount", "-l", m], check=False)
        for ns in netns_list():
            if ns.startswith(f"popdb{lab_id}-"):
                run(["ip", "netns", "del", ns], check=False)
        for name in links():
            if re.match(rf"^(plb{lab_id}(w|l\d+)|pv{lab_id}[wl]\d+)(@.*)?$", name):
                run(["ip", "link", "del", name.split("@")[0]], check=False)
        _rm_cgroups(cgroup_root(lab_id))
        run(["nft", "delete", "table", "inet", f"popdb_lab{lab_id}"], check=False)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(out_dir(lab_id), ignore_errors=True)
        acng_sync()
    dt = time.monotonic() - t0
    log(f"lab {lab_id}: down in {dt:.1f} s")
    return dt


def status(lab_id: int) -> list[dict[str, Any]]:
    lab = running_lab(lab_id)
    if lab is None:
        return []

    def one(h: model.Host) -> dict[str, Any]:
        pid = read_pid(lab_id, h.name)
        return {
            "name": h.name,
            "address": h.address,
            "groups": h.groups,
            "pid": pid,
            "ssh": bool(pid) and ssh_ok(h.address, timeout=2),
        }

    with ThreadPoolExecutor(max_workers=16) as ex:
        return list(ex.map(one, lab.hosts))
