"""Patching helpers: parse apt's simulation, select by scope, diff package versions, render reports."""

from __future__ import annotations

import fnmatch
import re

INST_RE = re.compile(r"^Inst (\S+) (?:\[(\S+)\] )?\((\S+) (.*?)(?: \[[^\]]+\])?\)")


def parse_simulation(text: str) -> list[dict]:
    """`apt-get -s dist-upgrade` -> [{name, from, to, origin, security, new}]."""
    out = []
    for line in text.splitlines():
        m = INST_RE.match(line)
        if not m:
            continue
        name, old, new, origin = m.groups()
        out.append(
            {
                "name": name,
                "from": old,
                "to": new,
                "origin": origin,
                "security": "-security" in origin or "Security" in origin,
                "new": old is None,
            }
        )
    return out


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select(upgrades: list[dict], scope: str, hold_patterns: list[str]) -> list[dict]:
    """Packages to upgrade for a scope (security|full), minus anything matching the hold list."""
    if scope not in ("security", "full"):
        raise ValueError(f"patching scope {scope!r}: expected 'security' or 'full'")
    chosen = [u for u in upgrades if not u["new"] and not matches(u["name"], hold_patterns)]
    if scope == "security":
        chosen = [u for u in chosen if u["security"]]
    return chosen


def version_diff(before: dict, after: dict) -> list[dict]:
    """before/after: {package: version}. Changes as [{name, before, after, action}]."""
    out = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name), after.get(name)
        if b == a:
            continue
        action = "installed" if b is None else "removed" if a is None else "upgraded"
        out.append({"name": name, "before": b, "after": a, "action": action})
    return out


def package_versions(package_facts: dict) -> dict:
    """ansible package_facts 'packages' -> {name: version} (first entry per name)."""
    return {name: (entries[0].get("version") if entries else None) for name, entries in package_facts.items()}


def render_text(report: dict) -> str:
    lines = [
        f"补丁报告 主机: {report['host']}  时间: {report['time']}  范围: {report['scope']}",
        f"重启策略: {report['reboot_policy']}  需要重启: {'是' if report['reboot_required'] else '否'}"
        f"  已重启: {'是' if report['rebooted'] else '否'}"
        + (f"  说明: {report['reboot_note']}" if report.get("reboot_note") else ""),
        f"保持(hold)的软件包: {', '.join(report.get('held', [])) or '无'}",
        f"变更软件包: {len(report['changes'])}",
    ]
    for c in report["changes"]:
        lines.append(f"  {c['name']}: {c['before'] or '-'} -> {c['after'] or '-'} ({c['action']})")
    return "\n".join(lines) + "\n"


# ------------------------------------------------ pre/post-checks and the consolidated report
def _results(reg) -> list[dict]:
    """The per-item results of a registered loop task ([] when the task did not run)."""
    if not isinstance(reg, dict) or reg.get("skipped"):
        return []
    return [r for r in reg.get("results", []) if isinstance(r, dict) and not r.get("skipped")]


def check_results(
    df=None,
    services=None,
    busy_units=None,
    busy_locks=None,
    post_services=None,
    pg_clusters=None,
    pg_ready=None,
) -> dict:
    """Registered results of the pre/post-check tasks -> {"pre": [...], "post": [...]}.

    Each entry is {"check", "target", "ok", "detail"}; a phase whose tasks did not run is [] (shown as
    "not run"). Every pre-check that failed stopped the host, so a host with a report passed them all;
    the details still say what was measured (free MiB, unit states).
    """
    pre, post = [], []
    for r in _results(df):
        lines = r.get("stdout_lines") or []
        free = lines[-1].split()[3] if lines and len(lines[-1].split()) > 3 else "?"
        pre.append(
            {
                "check": "free_space",
                "target": r.get("item"),
                "ok": not r.get("failed"),
                "detail": f"{free} MiB",
            }
        )
    for phase, reg in (("pre", services), ("post", post_services)):
        for r in _results(reg):
            state = (r.get("status") or {}).get("ActiveState", "?")
            entry = {"check": "service", "target": r.get("item"), "ok": state == "active", "detail": state}
            (pre if phase == "pre" else post).append(entry)
    for r in _results(busy_units):
        out = (r.get("stdout") or "").strip()
        pre.append(
            {"check": "busy_unit", "target": r.get("item"), "ok": not out, "detail": out or "none running"}
        )
    if isinstance(busy_locks, dict) and not busy_locks.get("skipped") and "rc" in busy_locks:
        out = (busy_locks.get("stdout") or "").strip()
        pre.append(
            {"check": "busy_lock", "target": "", "ok": busy_locks["rc"] == 0, "detail": out or "no lock held"}
        )
    clusters = []
    if isinstance(pg_clusters, dict) and pg_clusters.get("rc") == 0:
        clusters = [line for line in pg_clusters.get("stdout_lines", []) if line.strip()]
    ready = {str(r.get("item")): r for r in _results(pg_ready)}
    for line in clusters:
        parts = line.split()
        target = f"{parts[0]}/{parts[1]}:{parts[2]}" if len(parts) > 2 else line
        r = ready.get(line)
        if r is None:
            post.append(
                {
                    "check": "database",
                    "target": target,
                    "ok": True,
                    "detail": "cluster not online (not checked)",
                }
            )
        else:
            ok = r.get("rc") == 0
            post.append(
                {
                    "check": "database",
                    "target": target,
                    "ok": ok,
                    "detail": "accepting connections" if ok else "not ready",
                }
            )
    return {"pre": pre, "post": post}


CHECK_LABELS = {
    "free_space": "剩余空间",
    "service": "服务",
    "busy_unit": "同步/备份任务",
    "busy_lock": "同步/备份锁",
    "database": "数据库连接",
}
SCOPE_LABELS = {"security": "仅安全更新", "full": "全部更新"}


def reboot_action(report: dict) -> tuple[str, str]:
    """(what the reboot policy did, in Chinese; status colour) for one host's report."""
    policy = report.get("reboot_policy", "never")
    required = bool(report.get("reboot_required"))
    note = report.get("reboot_note") or ""
    if report.get("rebooted"):
        return f"已按策略 {policy} 重启", "amber"
    if "container" in note:
        return f"容器：内核属于宿主机，跳过重启（策略 {policy} 本应重启）", "amber" if required else "grey"
    if required:
        return f"需要重启，策略 {policy}：未重启，请安排维护窗口", "amber"
    return f"无需重启（策略 {policy}）", "green"


def _fmt_checks(checks: list[dict]) -> tuple[str, str]:
    if not checks:
        return "未执行", "grey"
    bad = [c for c in checks if not c.get("ok")]
    text = "；".join(
        f"{CHECK_LABELS.get(c['check'], c['check'])}{' ' + str(c['target']) if c.get('target') else ''}："
        f"{c.get('detail', '')}{'' if c.get('ok') else '（失败）'}"
        for c in checks
    )
    return ("失败：" if bad else "通过：") + text, "red" if bad else "green"


def report_sections(reports: dict, hosts: list[str] | None = None) -> list[dict]:
    """Per-host patch reports ({host: report or None}) -> popdb_report sections (Chinese).

    hosts: every host the run targeted; one without a report (failed a check, unreachable, stopped by
    max_fail_percentage) is listed red as not completed.
    """
    hosts = sorted(set(hosts or []) | set(reports))
    summary, upgraded, held_rows, checks = [], [], [], []
    for host in hosts:
        rep = reports.get(host)
        if not rep:
            summary.append(
                {
                    "host": host,
                    "result": {
                        "value": "未完成",
                        "status": "red",
                        "text": "未完成（检查失败、不可达或批次中止）",
                    },
                }
            )
            continue
        changes = rep.get("changes") or []
        held = sorted(rep.get("held") or [])
        action, rstatus = reboot_action(rep)
        pre_text, pre_status = _fmt_checks((rep.get("checks") or {}).get("pre", []))
        post_text, post_status = _fmt_checks((rep.get("checks") or {}).get("post", []))
        ok = pre_status != "red" and post_status != "red"
        summary.append(
            {
                "host": host,
                "result": {
                    "value": "完成",
                    "status": "green" if ok else "red",
                    "text": "完成" if ok else "检查未通过",
                },
                "scope": SCOPE_LABELS.get(rep.get("scope"), rep.get("scope"))
                + ("（检查模式）" if rep.get("check_mode") else ""),
                "upgraded": len(changes),
                "held": len(held),
                "reboot_required": {
                    "value": bool(rep.get("reboot_required")),
                    "status": "amber" if rep.get("reboot_required") else "green",
                    "text": "是" if rep.get("reboot_required") else "否",
                },
                "reboot_action": {"value": action, "status": rstatus},
                "time": rep.get("time", ""),
            }
        )
        for c in changes:
            upgraded.append(
                {
                    "host": host,
                    "name": c["name"],
                    "before": c.get("before") or "-",
                    "after": c.get("after") or "-",
                    "change": f"{c.get('before') or '-'} → {c.get('after') or '-'}",
                    "action": {"upgraded": "升级", "installed": "新安装", "removed": "已删除"}.get(
                        c.get("action"), c.get("action")
                    ),
                }
            )
        for name in held:
            held_rows.append(
                {
                    "host": host,
                    "name": name,
                    "state": {"value": "held", "status": "amber", "text": "保持(hold)，未升级"},
                }
            )
        checks.append(
            {
                "host": host,
                "pre": {"value": pre_text, "status": pre_status},
                "post": {"value": post_text, "status": post_status},
            }
        )
    return [
        {
            "title": "各主机补丁结果",
            "sheet": "汇总",
            "columns": [
                ("host", "主机"),
                ("result", "结果"),
                ("scope", "范围"),
                ("upgraded", "升级软件包数"),
                ("held", "保持软件包数"),
                ("reboot_required", "需要重启"),
                ("reboot_action", "重启策略执行情况"),
                ("time", "时间"),
            ],
            "rows": summary,
        },
        {
            "title": "已升级软件包（升级前 → 升级后）",
            "sheet": "已升级",
            "columns": [
                ("host", "主机"),
                ("name", "软件包"),
                ("before", "升级前版本"),
                ("after", "升级后版本"),
                ("change", "版本变化"),
                ("action", "操作"),
            ],  # fmt: skip
            "rows": upgraded,
        },
        {
            "title": "保持(hold)的软件包",
            "sheet": "保持",
            "note": "数据库软件包默认保持，除非 patching_include_db 为 true。",
            "columns": [("host", "主机"), ("name", "软件包"), ("state", "状态")],
            "rows": held_rows,
        },
        {
            "title": "补丁前/后检查",
            "sheet": "检查",
            "columns": [("host", "主机"), ("pre", "补丁前检查"), ("post", "补丁后检查")],
            "rows": checks,
        },
    ]
