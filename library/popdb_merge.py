#!/usr/bin/python
"""Ansible module: merge one city database's changes into the province database (exactly once)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: popdb_merge
short_description: Merge one city's population changes into the province database, exactly once
description:
  - Reads the city's change log (written by triggers, with the writing transaction's id) from a
    REPEATABLE READ snapshot, consumes every change of the transactions finished before the
    snapshot's xmin and not consumed before, copies the touched rows with COPY into a staging table
    in the province database and applies them set-based (insert, update, delete).
  - Apply, watermark advance and the job-history row commit in ONE province transaction, so a run
    killed at any point changes nothing and a re-run gives the correct result. Late-committing city
    transactions are picked up by the next run.
  - Malformed rows are quarantined in C(popdb.quarantine) with the field and the reason, counted and
    not applied. The same ID number in two cities is resolved by the rule "newest updated_at wins,
    tie - lower city code" and logged in C(popdb.merge_conflict).
  - The first run of a city (or O(full=true)) is a full sync, including deletes.
  - Check mode does everything inside a province transaction that is rolled back and reports the counts.
  - ID numbers and names are masked in every result and error (420***********1234).
  - Design notes in docs/data-engine.md and module_utils/popdb_merge.py.
options:
  province_dsn:
    description: libpq connection string of the province database (without the password).
    type: str
    required: true
  province_password:
    description: Password for O(province_dsn) (from the vault).
    type: str
  city_dsn:
    description: libpq connection string of the city database (without the password).
    type: str
    required: true
  city_password:
    description: Password for O(city_dsn) (from the vault).
    type: str
  city:
    description: 6-digit city code (e.g. C(420100)).
    type: str
    required: true
  full:
    description: Full sync of the city (all rows, deletes of rows the city no longer has).
    type: bool
    default: false
  tables:
    description: Synced tables to merge (default all of person, household, birth_event, death_event).
    type: list
    elements: str
requirements: [psycopg >= 3]
author: popdb-ops
"""

EXAMPLES = r"""
- name: Nightly merge of Wuhan
  popdb_merge:
    province_dsn: "host=prov-db01 dbname=popdb user=popdb_sync"
    province_password: "{{ vault_popdb_db_password }}"
    city_dsn: "host=city-db-420100 dbname=popdb user=popdb_sync"
    city_password: "{{ vault_popdb_db_password }}"
    city: "420100"
"""

RETURN = r"""
city:
  description: The city merged.
  returned: always
  type: str
run_id:
  description: C(popdb.job_history) run id (null in check mode).
  returned: always
  type: int
mode:
  description: C(incremental) or C(full).
  returned: success
  type: str
read:
  description: Rows read from the city (touched keys).
  returned: success
  type: int
inserted:
  description: Rows inserted in the province.
  returned: success
  type: int
updated:
  description: Rows updated in the province (unchanged rows are not counted).
  returned: success
  type: int
deleted:
  description: Rows deleted in the province.
  returned: success
  type: int
quarantined:
  description: Malformed rows put in quarantine (not applied).
  returned: success
  type: int
conflicts:
  description: Cross-city duplicate versions resolved and logged.
  returned: success
  type: int
tables:
  description: Counts per table, with up to 5 masked quarantine samples each.
  returned: success
  type: dict
watermark_from:
  description: Transaction-id watermark before the run (null on the first run).
  returned: success
  type: str
watermark_to:
  description: Watermark after the run (the snapshot's xmin).
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_conn import require_psycopg, with_password
from ansible.module_utils.popdb_mask import mask_text


def main():
    module = AnsibleModule(
        argument_spec=dict(
            province_dsn=dict(type="str", required=True, no_log=False),
            province_password=dict(type="str", no_log=True),
            city_dsn=dict(type="str", required=True, no_log=False),
            city_password=dict(type="str", no_log=True),
            city=dict(type="str", required=True),
            full=dict(type="bool", default=False),
            tables=dict(type="list", elements="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    require_psycopg(module, "popdb_merge")
    from ansible.module_utils.popdb_merge import MergeError, merge_city

    try:
        res = merge_city(
            with_password(p["province_dsn"], p["province_password"]),
            with_password(p["city_dsn"], p["city_password"]),
            str(p["city"]),
            check_mode=module.check_mode,
            full=p["full"],
            tables=p["tables"],
        )
    except MergeError as exc:
        module.fail_json(msg=mask_text(str(exc)), city=p["city"])
    except Exception as exc:  # noqa: BLE001 - connection errors etc., masked
        module.fail_json(msg=mask_text(f"city {p['city']}: {type(exc).__name__}: {exc}"), city=p["city"])
    changed = any(res.get(k) for k in ("inserted", "updated", "deleted", "quarantined", "conflicts"))
    out = dict(changed=changed, **res)
    if module._diff and changed:
        lines = [
            f"{t}: +{d['inserted']} ~{d['updated']} -{d['deleted']} quarantined {d['quarantined']}\n"
            for t, d in res["tables"].items()
        ]
        out["diff"] = dict(before_header=f"province rows of city {p['city']}", after_header="after merge",
                           before="", after="".join(lines))  # fmt: skip
    module.exit_json(**out)


if __name__ == "__main__":
    main()
