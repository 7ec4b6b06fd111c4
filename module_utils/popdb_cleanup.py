"""Disk cleanup engine: delete only files matched by declared rules, never under protected paths.

A rule: ``{"name", "paths": [...], "patterns": [glob, ...], "age_days": N, "recurse": bool,
"owner": "<role that owns the data>"}``. A file is removed when it is a regular file (symlinks are
never followed or removed), its basename matches a pattern, its mtime is older than ``age_days`` and
its real path lies under one of the rule's paths and under no protected path. A rule path inside a
protected path is refused; a protected directory inside a recursive rule path is pruned from the walk.
"""

from __future__ import annotations

import fnmatch
import os
import time


class RuleError(ValueError):
    """A cleanup rule that could touch something it must not."""


def _norm(p: str) -> str:
    return os.path.normpath(os.path.realpath(p)) if os.path.exists(p) else os.path.normpath(p)


def _under(path: str, parent: str) -> bool:
    parent = parent.rstrip("/") or "/"
    return path == parent or path.startswith(parent + "/") or parent == "/"


def validate_rules(rules: list[dict], protected: list[str]) -> list[dict]:
    """Normalise rules; raise RuleError naming the rule and field for anything unsafe."""
    prot = [_norm(p) for p in protected]
    out = []
    names = set()
    for i, r in enumerate(rules):
        name = r.get("name") or f"rule#{i}"
        if name in names:
            raise RuleError(f"cleanup rule {name!r}: duplicate name")
        names.add(name)
        paths = r.get("paths") or []
        patterns = r.get("patterns") or []
        if not paths:
            raise RuleError(f"cleanup rule {name!r}: field 'paths' is empty")
        if not patterns:
            raise RuleError(f"cleanup rule {name!r}: field 'patterns' is empty (use '*' explicitly)")
        try:
            age = float(r.get("age_days", 0))
        except (TypeError, ValueError) as exc:
            raise RuleError(
                f"cleanup rule {name!r}: field 'age_days' is not a number: {r.get('age_days')!r}"
            ) from exc
        if age < 0:
            raise RuleError(f"cleanup rule {name!r}: field 'age_days' is negative")
        recurse = bool(r.get("recurse", False))
        npaths = []
        for p in paths:
            if not os.path.isabs(p):
                raise RuleError(f"cleanup rule {name!r}: path {p!r} is not absolute")
            np_ = _norm(p)
            if np_ == "/":
                raise RuleError(f"cleanup rule {name!r}: path '/' is never cleanable")
            for pp in prot:
                if _under(np_, pp):
                    raise RuleError(f"cleanup rule {name!r}: path {p!r} is inside protected path {pp!r}")
            npaths.append(np_)
        out.append(
            {
                "name": name,
                "paths": npaths,
                "patterns": list(patterns),
                "age_days": age,
                "recurse": recurse,
                "owner": r.get("owner", ""),
            }  # fmt: skip
        )
    return out


def _candidates(rule: dict, prot: list[str]):
    for base in rule["paths"]:
        if not os.path.isdir(base):
            continue
        if rule["recurse"]:
            walker = os.walk(base, followlinks=False)
        else:
            walker = [(base, [], [e.name for e in os.scandir(base)])]
        for dirpath, dirnames, filenames in walker:
            rdir = os.path.realpath(dirpath)
            if any(_under(rdir, pp) for pp in prot):
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if not any(_under(os.path.join(rdir, d), pp) for pp in prot)]
            for fn in filenames:
                yield os.path.join(dirpath, fn)


def plan(rules: list[dict], protected: list[str], now: float | None = None) -> list[dict]:
    """Files the rules would remove: [{path, size, mtime, rule}] (no file appears twice)."""
    now = now or time.time()
    prot = [_norm(p) for p in protected]
    seen, out = set(), []
    for rule in validate_rules(rules, protected):
        cutoff = now - rule["age_days"] * 86400
        for path in _candidates(rule, prot):
            if path in seen:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            import stat as _stat

            if not _stat.S_ISREG(st.st_mode):
                continue
            base = os.path.basename(path)
            if not any(fnmatch.fnmatchcase(base, pat) for pat in rule["patterns"]):
                continue
            if st.st_mtime > cutoff:
                continue
            real = os.path.realpath(path)
            if any(_under(real, pp) for pp in prot):
                continue
            seen.add(path)
            out.append({"path": path, "size": st.st_size, "mtime": int(st.st_mtime), "rule": rule["name"]})
    return sorted(out, key=lambda f: f["path"])


def execute(files: list[dict]) -> tuple[list[dict], list[dict]]:
    """Remove planned files; returns (removed, errors)."""
    removed, errors = [], []
    for f in files:
        try:
            os.unlink(f["path"])
            removed.append(f)
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append({**f, "error": str(exc)})
    return removed, errors


def usage(paths: list[str]) -> list[dict]:
    """Filesystem usage (df semantics) of the filesystems holding the given paths."""
    out, seen = [], set()
    for p in paths:
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        key = (st.f_fsid, st.f_blocks)
        if key in seen:
            continue
        seen.add(key)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        out.append(
            {
                "path": p,
                "size": st.f_blocks * st.f_frsize,
                "used": used,
                "avail": avail,
                "used_pct": round(100.0 * used / (used + avail), 1) if used + avail else 0.0,
            }  # fmt: skip
        )
    return out
