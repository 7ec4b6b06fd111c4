#!/usr/bin/python
"""Ansible module: semi-monthly consolidation of the city databases into a verified province archive."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: popdb_consolidate
short_description: Archive a consistent snapshot of every city database for a half-month period
description:
  - For each city, copies the synced tables (person, household, birth_event, death_event) from one
    REPEATABLE READ snapshot into C(popdb_archive.<table>_<yyyymm>_<half>) in the province database,
    verified by row count and checksum (computed by the city over the same snapshot and by the province
    over the archive); a city whose archive does not verify is rolled back and reported.
  - A verified (period, city) is not archived again unless O(force=true).
  - Periods beyond O(retention) are exported to O(export_dir) (gzip COPY files and a JSON manifest),
    the export is verified by loading it back, and only then is the archive dropped.
  - One city failing does not stop the others; the module fails at the end listing them.
  - Check mode reports what would be archived and exported without writing.
options:
  province_dsn:
    description: libpq connection string of the province database (without the password).
    type: str
    required: true
  province_password:
    description: Password for O(province_dsn).
    type: str
  city_dsns:
    description: Map of 6-digit city code to libpq connection string (without the password).
    type: dict
    required: true
  city_password:
    description: Password for every city DSN (from the vault).
    type: str
  period:
    description: Period C(YYYY-MM-1) (days 1-15) or C(YYYY-MM-2); default the current half-month.
    type: str
  retention:
    description: Number of newest periods kept in the province database.
    type: int
    default: 6
  export_dir:
    description: Local directory for exported periods (the playbook moves them to backup storage).
    type: path
  force:
    description: Archive again even when the catalog has a verified archive.
    type: bool
    default: false
requirements: [psycopg >= 3]
author: popdb-ops
"""

EXAMPLES = r"""
- name: Consolidate the first half of November
  popdb_consolidate:
    province_dsn: "host=prov-db01 dbname=popdb user=popdb_sync"
    province_password: "{{ vault_popdb_db_password }}"
    city_dsns: {"420100": "host=city-db-420100 dbname=popdb user=popdb_sync"}
    city_password: "{{ vault_popdb_db_password }}"
    period: 2026-11-1
    retention: 6
    export_dir: /var/lib/popdb/archive-export
"""

RETURN = r"""
period:
  description: The period archived.
  returned: always
  type: str
cities:
  description: Per city, status (archived, skipped, failed) and rows and checksum per table.
  returned: always
  type: dict
failed:
  description: Cities whose archive failed.
  returned: always
  type: list
rows:
  description: Rows archived in this run.
  returned: always
  type: int
rows_per_second:
  description: Throughput of this run.
  returned: always
  type: int
exported:
  description: Expired periods exported (files written) and dropped.
  returned: always
  type: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_conn import require_psycopg, with_password
from ansible.module_utils.popdb_mask import mask_text


def main():
    module = AnsibleModule(
        argument_spec=dict(
            province_dsn=dict(type="str", required=True, no_log=False),
            province_password=dict(type="str", no_log=True),
            city_dsns=dict(type="dict", required=True),
            city_password=dict(type="str", no_log=True),
            period=dict(type="str"),
            retention=dict(type="int", default=6),
            export_dir=dict(type="path"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    require_psycopg(module, "popdb_consolidate")
    from ansible.module_utils.popdb_consolidate import consolidate

    try:
        res = consolidate(
            with_password(p["province_dsn"], p["province_password"]),
            {str(k): with_password(v, p["city_password"]) for k, v in p["city_dsns"].items()},
            period=p["period"],
            retention=p["retention"],
            export_dir=p["export_dir"],
            check_mode=module.check_mode,
            force=p["force"],
        )
    except Exception as exc:  # noqa: BLE001 - masked
        module.fail_json(msg=mask_text(f"{type(exc).__name__}: {exc}"))
    changed = bool(res["rows"] or res["exported"]) or (
        module.check_mode and any(c.get("status") == "would archive" for c in res["cities"].values())
    )
    if res["failed"]:
        module.fail_json(
            msg=f"consolidation failed for cities {', '.join(res['failed'])}", changed=changed, **res
        )
    module.exit_json(changed=changed, **res)


if __name__ == "__main__":
    main()
