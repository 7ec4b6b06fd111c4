"""requirements.yml lists every collection the project uses; the installed ones must satisfy it."""

from __future__ import annotations

import json
import os
import re
import subprocess

import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSCTL_ROOTS = {"net", "vm", "kernel", "fs", "dev", "user"}


def _installed() -> dict[str, str]:
    out = subprocess.run(
        ["ansible-galaxy", "collection", "list", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")},
    ).stdout
    found: dict[str, str] = {}
    for _path, colls in json.loads(out).items():
        for name, meta in colls.items():
            found.setdefault(name, meta["version"])
    return found


def _satisfies(version: str, spec: str) -> bool:
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|<|>|!=)?\s*([\w.]+)\s*", part)
        assert m, f"requirements.yml: unparsable version spec {spec!r}"
        op, want = m.group(1) or "==", LooseVersion(m.group(2))
        have = LooseVersion(version)
        ok = {
            ">=": have >= want,
            "<=": have <= want,
            "==": have == want,
            "<": have < want,
            ">": have > want,
            "!=": have != want,
        }[op]
        if not ok:
            return False
    return True


def test_installed_collections_satisfy_requirements_yml():
    with open(os.path.join(ROOT, "requirements.yml")) as fh:
        wanted = yaml.safe_load(fh)["collections"]
    installed = _installed()
    problems = []
    for c in wanted:
        have = installed.get(c["name"])
        if have is None:
            problems.append(f"{c['name']}: not installed")
        elif not _satisfies(have, c["version"]):
            problems.append(f"{c['name']}: installed {have} does not satisfy {c['version']}")
    assert not problems, problems


def test_every_collection_used_is_listed():
    """Any FQCN used in playbooks/roles/molecule must belong to a listed collection (or ansible.builtin)."""
    with open(os.path.join(ROOT, "requirements.yml")) as fh:
        listed = {c["name"] for c in yaml.safe_load(fh)["collections"]} | {"ansible.builtin"}
    used: dict[str, str] = {}
    pat = re.compile(r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_]+:", re.M)
    for top in ("playbooks", "roles", "molecule"):
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, top)):
            if os.path.basename(dirpath) in ("defaults", "vars", "meta"):
                continue  # data, not module calls (e.g. sysctl keys such as net.core.somaxconn)
            for f in files:
                if f.endswith((".yml", ".yaml")):
                    path = os.path.join(dirpath, f)
                    with open(path, encoding="utf-8") as fh:
                        for coll in pat.findall(fh.read()):
                            if coll.split(".")[0] in SYSCTL_ROOTS:
                                continue
                            used.setdefault(coll, os.path.relpath(path, ROOT))
    missing = {c: where for c, where in used.items() if c not in listed}
    assert not missing, f"collections used but not in requirements.yml: {missing}"
