#!/usr/bin/python
"""Ansible module: apply (or roll back) an administrative-division change file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: popdb_region_change
short_description: Apply an administrative-division change (行政区划变更) to the population databases
description:
  - Reads a change file (YAML) with a change id, the national directive reference, the effective
    date and one or more steps of type C(add), C(rename), C(delete), C(merge) or C(migrate).
  - Cascades the change over the region dictionary and every region-code column of the schema
    (management unit, residence, household registration, floating location, birth and death places,
    households, mapping) in the province database and in the city database(s) holding the division.
  - Idempotent by change id. One transaction per database; the province commits first and a city
    that missed its commit is brought level by running the same change again.
  - O(state=rolled_back) restores exactly the state before the change from its undo record.
  - Check mode runs the whole change inside a transaction that is rolled back and reports the rows
    affected per table and column. Diff mode shows the dictionary before and after.
options:
  change_file:
    description: Path of the change file on the managed host. Required unless O(change) is given.
    type: path
  change:
    description: The change as a mapping (same format as the file).
    type: dict
  change_id:
    description: With O(state=rolled_back), the change to undo (else taken from the change file).
    type: str
  province_dsn:
    description: libpq connection string of the province database.
    type: str
    required: true
  city_dsn:
    description: libpq connection string of the city database holding the division.
    type: str
  city_code:
    description: 6-digit code of the city whose database is O(city_dsn) (default derived from the change).
    type: str
  city_dsns:
    description: >-
      Map of 6-digit city code to connection string; the databases concerned are picked from
      the change.
    type: dict
    default: {}
  state:
    description: C(applied) applies the change, C(rolled_back) undoes it.
    type: str
    choices: [applied, rolled_back]
    default: applied
author: popdb-ops
"""

EXAMPLES = r"""
- name: Apply 京山县 → 京山市
  popdb_region_change:
    change_file: /srv/popdb/changes/HB-2018-420821.yml
    province_dsn: "host=prov-db01 dbname=popdb user=popdb_ops"
    city_dsns:
      "420800": "host=city-db-420800 dbname=popdb user=popdb_ops"

- name: Undo it
  popdb_region_change:
    change_id: HB-2018-420821
    province_dsn: "host=prov-db01 dbname=popdb user=popdb_ops"
    city_dsns:
      "420800": "host=city-db-420800 dbname=popdb user=popdb_ops"
    state: rolled_back
"""

RETURN = r"""
change_id:
  description: The change applied or rolled back.
  returned: always
  type: str
databases:
  description: Databases written (or that would be written in check mode).
  returned: always
  type: list
  elements: str
counts:
  description: >-
    Per database, rows affected per C(table.column), C(table.*rows) and
    C(region.inserted/deleted/renamed).
  returned: always
  type: dict
code_map:
  description: Old → new 12-digit codes recorded by the change (first 200; null new code = purged).
  returned: when applied
  type: list
code_map_total:
  description: Number of old → new pairs.
  returned: when applied
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_mask import mask_text
from ansible.module_utils.popdb_region import (
    RegionChangeError,
    apply_change,
    load_change,
    rollback_change,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            change_file=dict(type="path"),
            change=dict(type="dict"),
            change_id=dict(type="str"),
            province_dsn=dict(type="str", required=True, no_log=False),
            city_dsn=dict(type="str", no_log=False),
            city_code=dict(type="str"),
            city_dsns=dict(type="dict", default={}),
            state=dict(type="str", choices=["applied", "rolled_back"], default="applied"),
        ),
        mutually_exclusive=[("change_file", "change")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        import psycopg
    except ImportError:
        module.fail_json(msg="python3 psycopg (3.x) is required on the host running popdb_region_change")

    try:
        change = None
        if p["change_file"] or p["change"]:
            if p["change_file"] and not os.path.exists(p["change_file"]):
                module.fail_json(msg=f"change file {p['change_file']} not found")
            change = load_change(p["change"] if p["change"] else p["change_file"])
        elif p["state"] == "applied" or not p["change_id"]:
            module.fail_json(msg="give change_file or change (or change_id with state=rolled_back)")
        city_dsns = {str(k): v for k, v in (p["city_dsns"] or {}).items()}
        if p["city_dsn"]:
            code = p["city_code"]
            if not code and change:
                first = next((s.get("code") or s.get("codes", [""])[0] for s in change.steps), "")
                code = first[:6] if first[2:4] == "90" else first[:4] + "00"
            if not code:
                module.fail_json(msg="city_dsn needs city_code when no change file is given")
            city_dsns[str(code)[:6]] = p["city_dsn"]
        prov = psycopg.connect(p["province_dsn"])
        cities = {}
        try:
            if p["state"] == "rolled_back":
                for code, dsn in city_dsns.items():
                    cities[code] = psycopg.connect(dsn)
                cid = p["change_id"] or change.change_id
                res = rollback_change(prov, cid, cities, check=module.check_mode)
            else:
                for code, dsn in city_dsns.items():
                    cities[code] = psycopg.connect(dsn)
                res = apply_change(prov, change, cities, check=module.check_mode)
        finally:
            prov.close()
            for c in cities.values():
                c.close()
    except RegionChangeError as exc:
        module.fail_json(msg=mask_text(str(exc)))
    except psycopg.Error as exc:
        module.fail_json(msg=mask_text(f"database error: {exc}"))

    out = dict(
        changed=res["changed"], change_id=res["change_id"], databases=res["databases"], counts=res["counts"]
    )
    if "code_map" in res:
        out["code_map"] = res["code_map"][:200]
        out["code_map_total"] = len(res["code_map"])
    if module._diff and res.get("diff") and res["changed"]:
        out["diff"] = dict(before_header="region dictionary", after_header="region dictionary", **res["diff"])
    module.exit_json(**out)


if __name__ == "__main__":
    main()
