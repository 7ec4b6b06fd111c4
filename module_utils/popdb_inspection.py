"""Server inspection (巡检): collect on the host, grade green/amber/red on the controller, compare with
the previous run, and build the consolidated Chinese report via popdb_report.

Host side: ``collect()`` reads /proc, statvfs, systemctl, journalctl, chronyc and apt (read-only).
Controller side: ``evaluate()`` grades one host against thresholds, ``compare()`` gives the change
since the previous run, ``build_sections()`` the report tables, ``run_report()`` does it all and
keeps the history under ``<out>/history/``.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import re
import shutil
import subprocess
import time

from ansible.module_utils.popdb_mask import mask_text
from ansible.module_utils.popdb_report import cell, worst, write_report

# Filesystems that hold no data worth grading.
PSEUDO_FS = {
    "proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts", "mqueue", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "autofs", "hugetlbfs", "fusectl", "configfs", "binfmt_misc",
    "nsfs", "ramfs", "efivarfs", "rpc_pipefs", "squashfs", "overlay_none",
}  # fmt: skip
PSEUDO_PREFIXES = ("/proc", "/sys", "/dev", "/run")

# Threshold keys, the metric they grade, and the Chinese label in the report.
METRICS = {
    "load_per_core": "CPU负载/核",
    "cpu_used_pct": "CPU使用率%",
    "mem_used_pct": "内存使用率%",
    "swap_used_pct": "交换区使用率%",
    "disk_used_pct": "磁盘使用率%",
    "inode_used_pct": "inode使用率%",
    "failed_units": "失败服务数",
    "error_lines": "错误日志行数",
    "time_offset_ms": "时间偏差(ms)",
    "pending_updates": "待更新软件包",
}

DEFAULT_THRESHOLDS = {
    "load_per_core": {"amber": 0.8, "red": 1.5},
    "cpu_used_pct": {"amber": 80, "red": 95},
    "mem_used_pct": {"amber": 80, "red": 92},
    "swap_used_pct": {"amber": 30, "red": 70},
    "disk_used_pct": {"amber": 80, "red": 90},
    "inode_used_pct": {"amber": 80, "red": 90},
    "failed_units": {"amber": 1, "red": 3},
    "error_lines": {"amber": 1, "red": 50},
    "time_offset_ms": {"amber": 100, "red": 1000},
    "pending_updates": {"amber": 1, "red": 50},
}


# --------------------------------------------------------------------------- host side
def _run(cmd: list[str], timeout: int = 20) -> tuple[int, str]:
    if not shutil.which(cmd[0]):
        return 127, ""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 124, str(exc)
    return p.returncode, p.stdout


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def parse_meminfo(text: str) -> dict:
    kb = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)", line)
        if m:
            kb[m.group(1)] = int(m.group(2)) * 1024
    total = kb.get("MemTotal", 0)
    avail = kb.get("MemAvailable", kb.get("MemFree", 0))
    swap_t, swap_f = kb.get("SwapTotal", 0), kb.get("SwapFree", 0)
    return {
        "mem_total": total,
        "mem_available": avail,
        "mem_used_pct": round(100.0 * (total - avail) / total, 1) if total else 0.0,
        "swap_total": swap_t,
        "swap_used_pct": round(100.0 * (swap_t - swap_f) / swap_t, 1) if swap_t else 0.0,
    }


def parse_cpu_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from the aggregate line of /proc/stat."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:]]
            idle = f[3] + (f[4] if len(f) > 4 else 0)
            total = sum(f[:8])
            return total - idle, total
    return 0, 0


def parse_net_dev(text: str) -> dict:
    out = {}
    for line in text.splitlines()[2:]:
        if ":" not in line:
            continue
        name, rest = line.split(":", 1)
        f = rest.split()
        if len(f) >= 9:
            out[name.strip()] = (int(f[0]), int(f[8]))
    return out


def parse_mounts(text: str) -> list[tuple[str, str, str]]:
    """(device, mountpoint, fstype) of grade-worthy filesystems, deduplicated by mountpoint."""
    seen, out = set(), []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 3:
            continue
        dev, mnt, fstype = f[0], f[1].replace("\\040", " "), f[2]
        if fstype in PSEUDO_FS or mnt.startswith(PSEUDO_PREFIXES) or mnt in seen:
            continue
        seen.add(mnt)
        out.append((dev, mnt, fstype))
    return out


def disk_usage(mounts) -> list[dict]:
    out = []
    for dev, mnt, fstype in mounts:
        try:
            st = os.statvfs(mnt)
        except OSError:
            continue
        size = st.f_blocks * st.f_frsize
        if size == 0:
            continue
        avail = st.f_bavail * st.f_frsize
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        # df's definition: used / (used + available to non-root)
        pct = round(100.0 * used / (used + avail), 1) if used + avail else 0.0
        ipct = round(100.0 * (st.f_files - st.f_ffree) / st.f_files, 1) if st.f_files else 0.0
        out.append(
            {
                "mount": mnt,
                "device": dev,
                "fstype": fstype,
                "size": size,
                "used": used,
                "avail": avail,
                "used_pct": pct,
                "inodes": st.f_files,
                "inode_used_pct": ipct,
            }
        )
    return out


def parse_chrony_tracking(text: str) -> dict:
    info = {"source": "chrony", "synced": False, "offset_ms": None, "reference": None, "stratum": None}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "Reference ID":
            info["reference"] = val
        elif key == "Stratum":
            info["stratum"] = int(val) if val.isdigit() else None
        elif key == "System time":
            m = re.match(r"([\d.]+) seconds (fast|slow)", val)
            if m:
                info["offset_ms"] = round(float(m.group(1)) * 1000, 3)
        elif key == "Leap status":
            info["leap"] = val
            info["synced"] = val == "Normal"
    if info.get("stratum") in (0, None) and info["reference"] and info["reference"].startswith("00000000"):
        info["synced"] = False
    return info


def count_apt_upgrades(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("Inst "))


def collect(interval: float = 2.0, error_lines: int = 20, error_since: str = "-24h") -> dict:
    """Everything the inspection grades, read on the host itself (read-only)."""
    cpu0, net0, t0 = parse_cpu_stat(_read("/proc/stat")), parse_net_dev(_read("/proc/net/dev")), time.time()
    time.sleep(max(0.2, interval))
    cpu1, net1, t1 = parse_cpu_stat(_read("/proc/stat")), parse_net_dev(_read("/proc/net/dev")), time.time()
    dt = max(t1 - t0, 0.001)
    busy, total = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    ncpu = os.cpu_count() or 1
    load = [float(x) for x in (_read("/proc/loadavg").split()[:3] or [0, 0, 0])]
    data: dict = {
        "collected_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_count": ncpu,
        "cpu_used_pct": round(100.0 * busy / total, 1) if total > 0 else 0.0,
        "load": load,
        "load_per_core": round(load[0] / ncpu, 2),
    }
    data.update(parse_meminfo(_read("/proc/meminfo")))
    data["disks"] = disk_usage(parse_mounts(_read("/proc/mounts")))
    data["network"] = [
        {
            "iface": name,
            "rx_bps": round((net1[name][0] - net0[name][0]) / dt, 1),
            "tx_bps": round((net1[name][1] - net0[name][1]) / dt, 1),
            "rx_total": net1[name][0],
            "tx_total": net1[name][1],
        }
        for name in sorted(net1)
        if name in net0 and name != "lo"
    ]
    data["interval_s"] = round(dt, 2)
    rc, out = _run(["systemctl", "list-units", "--state=failed", "--no-legend", "--plain", "--all"])
    data["failed_units"] = (
        [line.split()[0] for line in out.splitlines() if line.strip()] if rc in (0, 1) else []
    )
    rc, out = _run(
        [
            "journalctl",
            "-p",
            "err",
            "--since",
            error_since,
            "-n",
            str(error_lines),
            "-o",
            "short-iso",
            "-q",
            "--no-pager",
        ]
    )
    data["error_log"] = [mask_text(line) for line in out.splitlines() if line.strip()][-error_lines:]
    rc, out = _run(
        ["journalctl", "-p", "err", "--since", error_since, "-o", "cat", "-q", "--no-pager"], timeout=30
    )
    data["error_lines"] = len([x for x in out.splitlines() if x.strip()])
    rc, out = _run(["chronyc", "-n", "tracking"])
    if rc == 0:
        data["time_sync"] = parse_chrony_tracking(out)
    else:
        rc, out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        data["time_sync"] = {"source": "timedatectl", "synced": out.strip() == "yes", "offset_ms": None}
    rc, out = _run(["chronyc", "-n", "sources"])
    data["time_sync"]["sources"] = len(
        [x for x in out.splitlines() if x[:2] in ("^*", "^+", "^-", "^?", "^x")]
    )
    rc, out = _run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade"], timeout=60)
    data["pending_updates"] = count_apt_upgrades(out) if rc == 0 else None
    data["reboot_required"] = os.path.exists("/var/run/reboot-required")
    up = _read("/proc/uptime").split()
    data["uptime_s"] = int(float(up[0])) if up else 0
    rc, out = _run(["journalctl", "--list-boots", "--no-pager", "-q"])
    data["boots_recorded"] = len([x for x in out.splitlines() if x.strip()]) if rc == 0 else None
    data["virtualization"] = "container" if os.path.exists("/run/systemd/container") else "host"
    return data


# --------------------------------------------------------------------------- controller side
def grade(value, limits: dict | None) -> str:
    """green below amber, amber from amber, red from red; grey when unknown."""
    if value is None or not limits:
        return "grey"
    if value >= limits["red"]:
        return "red"
    if value >= limits["amber"]:
        return "amber"
    return "green"


def check_thresholds(thresholds: dict) -> dict:
    """Merge with defaults and validate: every metric known, 0 <= amber <= red."""
    merged = {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()}
    for key, lim in (thresholds or {}).items():
        if key not in METRICS:
            raise ValueError(f"inspection thresholds: unknown metric {key!r} (known: {', '.join(METRICS)})")
        if not isinstance(lim, dict) or "amber" not in lim or "red" not in lim:
            raise ValueError(f"inspection thresholds: metric {key!r} needs 'amber' and 'red'")
        if not float(lim["amber"]) <= float(lim["red"]):
            raise ValueError(
                f"inspection thresholds: metric {key!r}: amber {lim['amber']} > red {lim['red']}"
            )
        merged[key] = {"amber": float(lim["amber"]), "red": float(lim["red"])}
    return merged


def evaluate(data: dict, thresholds: dict) -> dict:
    """Grade one host's data; returns {'status', 'metrics': {key: {value, status}}, 'disks': [...]}."""
    if data.get("unreachable") or data.get("error"):
        return {"status": "red", "metrics": {}, "disks": [], "reason": data.get("error") or "主机不可达"}
    m = {}
    for key in ("load_per_core", "cpu_used_pct", "mem_used_pct", "swap_used_pct"):
        m[key] = {"value": data.get(key), "status": grade(data.get(key), thresholds[key])}
    disks = []
    for d in data.get("disks", []):
        disks.append(
            {
                **d,
                "status": grade(d["used_pct"], thresholds["disk_used_pct"]),
                "inode_status": grade(d["inode_used_pct"], thresholds["inode_used_pct"]),
            }
        )
    top = max(disks, key=lambda d: d["used_pct"], default=None)
    m["disk_used_pct"] = {
        "value": top["used_pct"] if top else None,
        "mount": top["mount"] if top else None,
        "status": worst(d["status"] for d in disks) if disks else "grey",
    }
    itop = max(disks, key=lambda d: d["inode_used_pct"], default=None)
    m["inode_used_pct"] = {
        "value": itop["inode_used_pct"] if itop else None,
        "mount": itop["mount"] if itop else None,
        "status": worst(d["inode_status"] for d in disks) if disks else "grey",
    }
    m["failed_units"] = {
        "value": len(data.get("failed_units", [])),
        "status": grade(len(data.get("failed_units", [])), thresholds["failed_units"]),
    }
    m["error_lines"] = {
        "value": data.get("error_lines"),
        "status": grade(data.get("error_lines"), thresholds["error_lines"]),
    }
    ts = data.get("time_sync") or {}
    off = ts.get("offset_ms")
    tstatus = grade(abs(off), thresholds["time_offset_ms"]) if off is not None else "grey"
    if not ts.get("synced"):
        tstatus = worst([tstatus, "amber"]) if tstatus != "grey" else "amber"
    m["time_offset_ms"] = {"value": off, "synced": bool(ts.get("synced")), "status": tstatus}
    m["pending_updates"] = {
        "value": data.get("pending_updates"),
        "status": grade(data.get("pending_updates"), thresholds["pending_updates"]),
    }
    status = worst(v["status"] for v in m.values())
    if status == "grey":
        status = "green"
    return {"status": status, "metrics": m, "disks": disks}


def compare(current: dict, previous: dict | None) -> dict:
    """Per-metric change since the previous run (None where there is no earlier value)."""
    out = {}
    pm = (previous or {}).get("metrics", {})
    for key, v in current.get("metrics", {}).items():
        old = pm.get(key, {}).get("value")
        new = v.get("value")
        out[key] = (
            round(new - old, 2) if isinstance(new, int | float) and isinstance(old, int | float) else None
        )
    pdisks = {d["mount"]: d for d in (previous or {}).get("disks", [])}
    out["disks"] = {
        d["mount"]: round(d["used_pct"] - pdisks[d["mount"]]["used_pct"], 1) if d["mount"] in pdisks else None
        for d in current.get("disks", [])
    }
    out["status_before"] = (previous or {}).get("status")
    return out


def human_bytes(n) -> str:
    if n is None:
        return ""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _delta(v) -> str:
    if v is None:
        return "—"
    if v == 0:
        return "0"
    return f"{v:+g}"


def _uptime(s) -> str:
    if not s:
        return ""
    d, rem = divmod(int(s), 86400)
    return f"{d}天{rem // 3600}小时" if d else f"{rem // 3600}小时{rem % 3600 // 60}分"


def build_sections(results: dict, deltas: dict, previous_at: str | None) -> list[dict]:
    """Report tables: overview per host, disks, network, failed units, error lines."""
    label = {"green": "正常", "amber": "警告", "red": "严重", "grey": "未知"}
    overview, disks, nets, failed, errors = [], [], [], [], []
    for host in sorted(results):
        r = results[host]
        ev, data, dl = r["evaluation"], r["data"], deltas.get(host, {})
        mt = ev.get("metrics", {})
        if not mt:
            overview.append({"host": host, "status": cell(label["red"], "red"), "note": ev.get("reason", "")})
            continue

        def mc(key, fmt=None, _mt=mt, _dl=dl):
            v = _mt[key]
            text = "" if v.get("value") is None else (fmt(v["value"]) if fmt else f"{v['value']:g}")
            if key in ("disk_used_pct", "inode_used_pct") and v.get("mount"):
                text += f"（{v['mount']}）"
            return cell(v.get("value"), v["status"], text)

        ts = mt["time_offset_ms"]
        tstext = ("已同步" if ts["synced"] else "未同步") + (
            f"，偏差 {ts['value']:g} ms" if ts["value"] is not None else ""
        )
        changes = [
            f"{METRICS[k]} {_delta(dl.get(k))}"
            for k in ("mem_used_pct", "disk_used_pct", "failed_units", "pending_updates")
            if dl.get(k)
        ]
        before = dl.get("status_before")
        if before and before != ev["status"]:
            changes.insert(0, f"状态 {label.get(before, before)}→{label[ev['status']]}")
        overview.append(
            {
                "host": host,
                "groups": ", ".join(r.get("groups", [])),
                "status": cell(label[ev["status"]], ev["status"]),
                "load": mc("load_per_core"),
                "cpu": mc("cpu_used_pct"),
                "mem": mc("mem_used_pct"),
                "disk": mc("disk_used_pct"),
                "inode": mc("inode_used_pct"),
                "failed": mc("failed_units"),
                "errors": mc("error_lines"),
                "time": cell(ts["value"], ts["status"], tstext),
                "updates": mc("pending_updates"),
                "uptime": _uptime(data.get("uptime_s"))
                + ("（需重启）" if data.get("reboot_required") else ""),
                "change": "；".join(changes) if previous_at else "首次巡检",
            }
        )
        for d in ev.get("disks", []):
            dd = dl.get("disks", {}).get(d["mount"])
            disks.append(
                {
                    "host": host,
                    "mount": d["mount"],
                    "fstype": d["fstype"],
                    "size": human_bytes(d["size"]),
                    "used": human_bytes(d["used"]),
                    "avail": human_bytes(d["avail"]),
                    "pct": cell(d["used_pct"], d["status"], f"{d['used_pct']:g}%"),
                    "ipct": cell(d["inode_used_pct"], d["inode_status"], f"{d['inode_used_pct']:g}%"),
                    "change": _delta(dd) if previous_at else "—",
                }
            )
        for n in data.get("network", []):
            nets.append(
                {
                    "host": host,
                    "iface": n["iface"],
                    "rx": human_bytes(n["rx_bps"]) + "/s",
                    "tx": human_bytes(n["tx_bps"]) + "/s",
                    "rx_total": human_bytes(n["rx_total"]),
                    "tx_total": human_bytes(n["tx_total"]),
                }
            )
        for u in data.get("failed_units", []):
            failed.append({"host": host, "unit": u})
        for line in data.get("error_log", []):
            errors.append({"host": host, "line": mask_text(line)})
    since = f"与上次巡检（{previous_at}）相比" if previous_at else "首次巡检，无历史对比"
    return [
        {
            "title": "主机总览",
            "sheet": "总览",
            "note": since,
            "columns": [
                ("host", "主机"),
                ("groups", "分组"),
                ("status", "状态"),
                ("load", "负载/核"),
                ("cpu", "CPU%"),
                ("mem", "内存%"),
                ("disk", "最高磁盘%"),
                ("inode", "最高inode%"),
                ("failed", "失败服务"),
                ("errors", "错误日志"),
                ("time", "时间同步"),
                ("updates", "待更新"),
                ("uptime", "运行时长"),
                ("change", "变化"),
            ],  # fmt: skip
            "rows": overview,
        },
        {
            "title": "磁盘与inode",
            "sheet": "磁盘",
            "columns": [
                ("host", "主机"),
                ("mount", "挂载点"),
                ("fstype", "类型"),
                ("size", "容量"),
                ("used", "已用"),
                ("avail", "可用"),
                ("pct", "使用率"),
                ("ipct", "inode使用率"),
                ("change", "较上次(百分点)"),
            ],  # fmt: skip
            "rows": disks,
        },
        {
            "title": "网络流量",
            "sheet": "网络",
            "columns": [
                ("host", "主机"),
                ("iface", "网卡"),
                ("rx", "接收速率"),
                ("tx", "发送速率"),
                ("rx_total", "累计接收"),
                ("tx_total", "累计发送"),
            ],  # fmt: skip
            "rows": nets,
        },
        {
            "title": "失败的服务",
            "sheet": "失败服务",
            "columns": [("host", "主机"), ("unit", "服务单元")],
            "rows": failed,
        },
        {
            "title": "近期错误日志（已脱敏）",
            "sheet": "错误日志",
            "columns": [("host", "主机"), ("line", "日志")],
            "rows": errors,
        },
    ]


def latest_history(history_dir: str, before: str | None = None) -> tuple[str | None, dict | None]:
    files = sorted(glob.glob(os.path.join(history_dir, "*.json")))
    if before:
        files = [f for f in files if os.path.basename(f) < before + ".json"]
    if not files:
        return None, None
    with open(files[-1], encoding="utf-8") as fh:
        return files[-1], json.load(fh)


def run_report(
    hosts: dict,
    thresholds: dict,
    out_dir: str,
    run_id: str | None = None,
    keep_history: int = 60,
    title: str = "服务器巡检报告",
    write: bool = True,
) -> dict:
    """hosts: {name: {'data': collect() result or {'unreachable': True}, 'groups': [...]}}."""
    th = check_thresholds(thresholds)
    run_id = run_id or _dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    history_dir = os.path.join(out_dir, "history")
    prev_path, prev = latest_history(history_dir, before=run_id)
    results, deltas = {}, {}
    for host, h in hosts.items():
        data = h.get("data") or {"unreachable": True}
        ev = evaluate(data, th)
        results[host] = {"data": data, "evaluation": ev, "groups": sorted(h.get("groups", []))}
        deltas[host] = compare(ev, (prev or {}).get("hosts", {}).get(host, {}).get("evaluation"))
    summary = {
        s: sorted(h for h, r in results.items() if r["evaluation"]["status"] == s)
        for s in ("green", "amber", "red")
    }
    previous_at = (prev or {}).get("run_id")
    result = {
        "run_id": run_id,
        "previous_run": previous_at,
        "summary": summary,
        "hosts": {
            h: {"status": r["evaluation"]["status"], "metrics": r["evaluation"]["metrics"]}
            for h, r in results.items()
        },
        "deltas": deltas,
        "files": {},
    }
    if not write:
        return result
    run_dir = os.path.join(out_dir, run_id)
    os.makedirs(os.path.join(run_dir, "hosts"), exist_ok=True)
    for host, r in results.items():
        with open(os.path.join(run_dir, "hosts", f"{host}.json"), "w", encoding="utf-8") as fh:
            json.dump(r, fh, ensure_ascii=False, indent=1, sort_keys=True)
    n = {k: len(v) for k, v in summary.items()}
    sub = f"共 {len(results)} 台：正常 {n['green']}，警告 {n['amber']}，严重 {n['red']}"
    files = write_report(
        os.path.join(run_dir, "inspection"), title, build_sections(results, deltas, previous_at), subtitle=sub
    )
    os.makedirs(history_dir, exist_ok=True)
    with open(os.path.join(history_dir, f"{run_id}.json"), "w", encoding="utf-8") as fh:
        json.dump(
            {"run_id": run_id, "hosts": results, "summary": summary}, fh, ensure_ascii=False, sort_keys=True
        )
    hist = sorted(glob.glob(os.path.join(history_dir, "*.json")))
    for old in hist[:-keep_history] if keep_history > 0 else []:
        os.remove(old)
    for link, target in (("latest.html", files["html"]), ("latest.xlsx", files["xlsx"])):
        dst = os.path.join(out_dir, link)
        shutil.copyfile(target, dst)
    files["hosts_dir"] = os.path.join(run_dir, "hosts")
    result["files"] = files
    return result
