"""Summarize PostgreSQL jsonlog/csvlog files per host and day: errors, slow queries, deadlocks, FATAL/PANIC.

Used by role db_logs on the backup-storage host (files shipped from every database) and importable by the
inspection report. Also runnable as a script:
``python3 popdb_dblog.py LOGROOT OUT.json [STATE.json]`` (LOGROOT/<host>/*.json|*.csv).
Exit code 3 when new FATAL/PANIC entries appeared since STATE (the caller alerts).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys

SLOW_RE = re.compile(r"^duration: ([0-9.]+) ms")
DEADLOCK_STATE = "40P01"
# FATALs that are part of normal operation (restarts, shutdowns) and must not page anyone.
DEFAULT_IGNORE = (
    r"terminating connection due to administrator command",
    r"the database system is (starting up|shutting down)",
)
# csvlog column order (PostgreSQL 15).
CSV_FIELDS = [
    "timestamp", "user", "dbname", "pid", "remote", "session_id", "line_num", "ps", "session_start", "vxid",
    "txid", "error_severity", "state_code", "message", "detail", "hint", "internal_query",
    "internal_position", "context", "statement", "cursor_position", "func_name", "application_name",
    "backend_type", "leader_pid", "query_id",
]  # fmt: skip


def parse_lines(path):
    """Yield (record dict or None, line number, raw) for a jsonlog or csvlog file."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        if path.endswith(".csv"):
            for n, row in enumerate(csv.reader(fh), 1):
                yield dict(zip(CSV_FIELDS, row, strict=False)), n, row
            return
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                yield None, n, line
                continue
            yield (rec if isinstance(rec, dict) else None), n, line


def _day(rec):
    ts = str(rec.get("timestamp", ""))
    return ts[:10] if re.match(r"^\d{4}-\d{2}-\d{2}", ts) else "unknown"


def summarize(files_by_host, slow_ms=500.0, ignore=DEFAULT_IGNORE, top=5):
    """files_by_host: {host: [paths]} -> summary dict (per host, per day) with malformed lines counted."""
    ignore_re = [re.compile(p) for p in ignore]
    hosts = {}
    for host, paths in sorted(files_by_host.items()):
        days = {}
        malformed = []
        for path in sorted(paths):
            for rec, n, _raw in parse_lines(path):
                if rec is None:
                    malformed.append({"file": os.path.basename(path), "line": n})
                    continue
                d = days.setdefault(
                    _day(rec),
                    {"errors": 0, "fatal": 0, "panic": 0, "slow_queries": 0, "deadlocks": 0, "lock_waits": 0,
                     "slowest_ms": 0.0, "fatal_messages": [], "slow_examples": []},
                )  # fmt: skip
                sev = str(rec.get("error_severity", "")).upper()
                msg = str(rec.get("message", ""))
                if sev == "ERROR":
                    d["errors"] += 1
                if sev in ("FATAL", "PANIC") and not any(r.search(msg) for r in ignore_re):
                    d["fatal" if sev == "FATAL" else "panic"] += 1
                    if len(d["fatal_messages"]) < top:
                        d["fatal_messages"].append(
                            {"time": rec.get("timestamp"), "severity": sev, "message": msg}
                        )
                if rec.get("state_code") == DEADLOCK_STATE or "deadlock detected" in msg:
                    d["deadlocks"] += 1
                if "still waiting for" in msg and "Lock" in msg:
                    d["lock_waits"] += 1
                m = SLOW_RE.match(msg)
                if m and float(m.group(1)) >= slow_ms:
                    ms = float(m.group(1))
                    d["slow_queries"] += 1
                    d["slowest_ms"] = max(d["slowest_ms"], ms)
                    d["slow_examples"].append({"ms": ms, "statement": msg[m.end() :].strip()[:300]})
                    d["slow_examples"] = sorted(d["slow_examples"], key=lambda e: -e["ms"])[:top]
        hosts[host] = {"days": dict(sorted(days.items())), "malformed_lines": len(malformed),
                       "malformed_examples": malformed[:top]}  # fmt: skip
    return {"hosts": hosts}


def new_critical(summary, state):
    """Compare FATAL/PANIC counts with the last state; return (alerts, new_state)."""
    alerts, new_state = [], {}
    for host, h in summary["hosts"].items():
        for day, d in h["days"].items():
            key = f"{host}/{day}"
            count = d["fatal"] + d["panic"]
            new_state[key] = count
            if count > state.get(key, 0):
                alerts.append(
                    {"host": host, "day": day, "new": count - state.get(key, 0), "panic": d["panic"],
                     "last": d["fatal_messages"][-1]["message"] if d["fatal_messages"] else ""}
                )  # fmt: skip
    return alerts, new_state


def collect(root):
    out = {}
    for host in sorted(os.listdir(root)):
        hdir = os.path.join(root, host)
        if os.path.isdir(hdir):
            out[host] = [os.path.join(hdir, f) for f in os.listdir(hdir) if f.endswith((".json", ".csv"))]
    return out


def main(argv):
    root, out_path = argv[1], argv[2]
    state_path = argv[3] if len(argv) > 3 else None
    summary = summarize(collect(root), slow_ms=float(os.environ.get("POPDB_SLOW_MS", "500")))
    state = {}
    if state_path and os.path.exists(state_path):
        with open(state_path, encoding="utf-8") as fh:
            state = json.load(fh)
    alerts, new_state = new_critical(summary, state)
    summary["alerts"] = alerts
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=1, sort_keys=True)
    os.replace(tmp, out_path)
    if state_path:
        with open(state_path, "w", encoding="utf-8") as fh:
            json.dump(new_state, fh)
    for a in alerts:
        print(f"{a['host']} {a['day']}: {a['new']} new FATAL/PANIC: {a['last']}")
    return 3 if alerts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
