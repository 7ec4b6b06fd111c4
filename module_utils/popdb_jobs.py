"""Scheduled jobs (role scheduler): summarize an ansible-runner artifact directory into a job-history row.

``popdb-job`` on the control node runs a job through ansible-runner and calls :func:`summarize` on the
artifact it left; :func:`append_history` keeps ``history.jsonl`` (one row per run) and :func:`alert_text`
builds the message a failed run sends to the webhook/mail target.
"""

from __future__ import annotations

import json
import os

FAILED_EVENTS = ("runner_on_failed", "runner_on_unreachable")


def _read(path, default=""):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return default


def summarize(job, artifact_dir, started, finished):
    """Row for one run: status and rc, hosts that failed or were unreachable, task totals."""
    status = _read(os.path.join(artifact_dir, "status"), "missing")
    rc_raw = _read(os.path.join(artifact_dir, "rc"), "")
    rc = int(rc_raw) if rc_raw.lstrip("-").isdigit() else None
    failed, unreachable, stats = set(), set(), {}
    events_dir = os.path.join(artifact_dir, "job_events")
    malformed = 0
    for name in sorted(os.listdir(events_dir)) if os.path.isdir(events_dir) else []:
        try:
            with open(os.path.join(events_dir, name), encoding="utf-8") as fh:
                ev = json.load(fh)
        except (OSError, ValueError):
            malformed += 1
            continue
        host = (ev.get("event_data") or {}).get("host")
        if ev.get("event") == "runner_on_failed" and not (ev.get("event_data") or {}).get("ignore_errors"):
            failed.add(host)
        elif ev.get("event") == "runner_on_unreachable":
            unreachable.add(host)
        elif ev.get("event") == "playbook_on_stats":
            data = ev.get("event_data") or {}
            stats = {
                k: sum((data.get(k) or {}).values()) for k in ("ok", "changed", "failures", "dark", "skipped")
            }
    ok = status == "successful" and rc == 0
    return {
        "job": job,
        "ident": os.path.basename(artifact_dir.rstrip("/")),
        "started": started,
        "finished": finished,
        "status": status,
        "rc": rc,
        "result": "ok" if ok else "failed",
        "failed_hosts": sorted(h for h in failed if h),
        "unreachable_hosts": sorted(h for h in unreachable if h),
        "stats": stats,
        "malformed_events": malformed,
        "artifact": artifact_dir,
    }


def append_history(path, row):
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def read_history(path):
    """Rows of history.jsonl; a damaged line is reported as a row with result 'unreadable', never dropped."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                rows.append({"result": "unreadable", "line": n})
    return rows


def alert_text(row):
    hosts = row["failed_hosts"] + row["unreachable_hosts"]
    where = f" on {', '.join(hosts)}" if hosts else ""
    head = f"job {row['job']} run {row['ident']} {row['status']} (rc={row['rc']})"
    return f"{head}{where}; artifact {row['artifact']}"
