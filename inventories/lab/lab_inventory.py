#!/usr/bin/env python3
"""Ansible inventory script: the running lab of $POPDB_LAB_ID (default 0), as written by `bin/lab up`.

Reads .cache/lab/<id>/inventory.yml and prints it in the script-inventory JSON format. With no lab
up it prints an empty inventory and a warning on stderr (Ansible shows it as [ERROR]; not fatal).
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def _groups(name, data, out, hostvars):
    g = out.setdefault(name, {"hosts": [], "children": [], "vars": {}})
    data = data or {}
    for h, hv in (data.get("hosts") or {}).items():
        g["hosts"].append(h)
        hostvars.setdefault(h, {}).update(hv or {})
    g["vars"].update(data.get("vars") or {})
    for child, cdata in (data.get("children") or {}).items():
        g["children"].append(child)
        _groups(child, cdata, out, hostvars)


def load(lab_id):
    path = os.path.join(ROOT, ".cache", "lab", str(lab_id), "inventory.yml")
    out = {"_meta": {"hostvars": {}}}
    if not os.path.exists(path):
        if os.environ.get("MOLECULE_SCENARIO_NAME"):
            return out  # Molecule: before `create` no lab is up yet, that is expected
        print(f"[lab inventory] no lab {lab_id} is up ({path} missing): empty inventory", file=sys.stderr)
        return out
    import yaml

    with open(path, encoding="utf-8") as fh:
        inv = yaml.safe_load(fh) or {}
    hostvars = out["_meta"]["hostvars"]
    groups = {}
    _groups("all", inv.get("all"), groups, hostvars)
    for name, g in groups.items():
        out[name] = {k: v for k, v in g.items() if v}
    return out


def main(argv):
    lab_id = os.environ.get("POPDB_LAB_ID") or "0"
    inv = load(lab_id)
    if len(argv) > 2 and argv[1] == "--host":
        print(json.dumps(inv["_meta"]["hostvars"].get(argv[2], {})))
    else:
        print(json.dumps(inv, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
