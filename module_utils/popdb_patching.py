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
