"""Filters for the server-operation roles (patching): thin wrappers over module_utils/popdb_patching.py."""

from __future__ import annotations

import importlib.util
import os

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PATH = os.path.join(_ROOT, "module_utils", "popdb_patching.py")
_spec = importlib.util.spec_from_file_location("popdb_patching_for_filters", _PATH)
_patching = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_patching)
_mspec = importlib.util.spec_from_file_location(
    "popdb_mask_for_filters", os.path.join(os.path.dirname(_PATH), "popdb_mask.py")
)
_mask = importlib.util.module_from_spec(_mspec)
_mspec.loader.exec_module(_mask)


def popdb_mask_text(text):
    """Mask ID numbers in free text (diagnostics bundles)."""
    return _mask.mask_text(str(text))


def popdb_glob_filter(names, patterns):
    """Names matching any of the glob patterns."""
    return [n for n in names if _patching.matches(n, list(patterns))]


def popdb_package_versions(packages):
    """package_facts 'packages' -> {name: version}."""
    return _patching.package_versions(dict(packages))


def popdb_version_diff(before, after):
    """Changed packages between two {name: version} maps."""
    return _patching.version_diff(dict(before), dict(after))


def popdb_patch_text(report):
    """Chinese text rendering of a per-host patch report."""
    return _patching.render_text(dict(report))


def popdb_patch_checks(registered):
    """{df, services, busy_units, busy_locks, post_services, pg_clusters, pg_ready} registered results
    -> {pre: [...], post: [...]} for the per-host report."""
    return _patching.check_results(**dict(registered))


def popdb_patch_sections(reports, hosts=None):
    """Per-host patch reports {host: report|None} -> popdb_report sections (consolidated, Chinese)."""
    return _patching.report_sections(dict(reports), list(hosts or []))


def _human(n):
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def popdb_cleanup_sections(results):
    """disk_cleanup results per host -> popdb_report sections (freed bytes, expansion list)."""
    freed, expand = [], []
    for host in sorted(results):
        r = results[host] or {}
        exp = r.get("expansion_needed") or []
        by_area = sorted((r.get("freed_by_area") or {}).items())
        areas = "，".join(f"{k} {_human(v)}" for k, v in by_area if int(v))
        freed.append(
            {
                "host": host,
                "freed": {"value": int(r.get("freed_bytes") or 0), "text": _human(r.get("freed_bytes"))},
                "areas": areas or "无",
                "expand": {
                    "value": len(exp),
                    "status": "red" if exp else "green",
                    "text": "，".join(u["path"] for u in exp) or "无",
                },
            }
        )
        for u in exp:
            expand.append(
                {
                    "host": host,
                    "path": u["path"],
                    "used_pct": {"value": u["used_pct"], "status": "red", "text": f"{u['used_pct']}%"},
                    "avail": _human(u["avail"]),
                    "size": _human(u["size"]),
                }
            )
    return [
        {
            "title": "各主机释放空间",
            "sheet": "释放空间",
            "columns": [["host", "主机"], ["freed", "释放空间"], ["areas", "明细"], ["expand", "需扩容"]],
            "rows": freed,
        },
        {
            "title": "需扩容清单（清理后使用率仍高于阈值）",
            "sheet": "需扩容",
            "columns": [
                ["host", "主机"],
                ["path", "路径"],
                ["used_pct", "使用率"],
                ["avail", "可用"],
                ["size", "容量"],
            ],  # fmt: skip
            "rows": expand,
        },
    ]


class FilterModule:
    def filters(self):
        return {
            "popdb_glob_filter": popdb_glob_filter,
            "popdb_cleanup_sections": popdb_cleanup_sections,
            "popdb_mask_text": popdb_mask_text,
            "popdb_package_versions": popdb_package_versions,
            "popdb_version_diff": popdb_version_diff,
            "popdb_patch_text": popdb_patch_text,
            "popdb_patch_checks": popdb_patch_checks,
            "popdb_patch_sections": popdb_patch_sections,
        }
