#!/usr/bin/python
"""Ansible module: twice-yearly initialization of the division mapping (national ↔ provincial)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: popdb_region_mapping
short_description: Initialize the national ↔ provincial division mapping (区划映射初始化)
description:
  - Step 1 imports the national division list (CSV, configurable column names); step 2 reads the
    provincial dictionary (C(popdb.region) or a CSV); step 3 backs up the current mapping as a dated
    version; step 4 computes the new mapping (manual decision, exact code, same name under the same
    parent, successor chain); step 5 writes the unmatched divisions to an xlsx file with Chinese
    headers for manual review.
  - Manual decisions (from a reviewed xlsx, O(decisions_xlsx)) are only ever added; an existing
    decision is never overwritten, a conflicting one is reported.
  - All database steps run in one transaction; check mode rolls it back and writes no xlsx.
    A second run with the same inputs reports changed=false.
options:
  province_dsn:
    description: libpq connection string of the province database.
    type: str
    required: true
  national_csv:
    description: National division list as published (CSV, UTF-8).
    type: path
    required: true
  columns:
    description: >-
      Column names of the CSV for the keys code, name, level, status, valid_from, valid_to,
      successors (defaults are the published Chinese headers 代码, 名称, 级别, 状态, 启用时间,
      变更/弃用时间, 新代码).
    type: dict
    default: {}
  province_prefix:
    description: Keep only national codes starting with this prefix.
    type: str
    default: "42"
  provincial_csv:
    description: Provincial dictionary as CSV (code,name,level,parent_code) instead of popdb.region.
    type: path
  version:
    description: Version label of the run and of the mapping backup (default today's date).
    type: str
  out_dir:
    description: Directory of the unmatched-divisions xlsx.
    type: path
    default: out/region_mapping
  decisions_xlsx:
    description: A reviewed unmatched-divisions xlsx whose 人工决定 column is imported first.
    type: path
  decided_by:
    description: Recorded as the author of imported decisions.
    type: str
    default: operator
author: popdb-ops
"""

EXAMPLES = r"""
- name: Initialize the mapping for the first half of 2026
  popdb_region_mapping:
    province_dsn: "host=prov-db01 dbname=popdb user=popdb_ops"
    national_csv: /srv/popdb/national/division-2026H1.csv
    version: 2026H1
    out_dir: /srv/popdb/out/region_mapping
"""

RETURN = r"""
version:
  description: Version label of this run.
  returned: always
  type: str
steps:
  description: >-
    Per step counts (national rows and rejected lines, provincial rows, backup, mapping by
    method, unmatched rows and the xlsx path).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_region_mapping import MappingError, run_init


def main():
    module = AnsibleModule(
        argument_spec=dict(
            province_dsn=dict(type="str", required=True),
            national_csv=dict(type="path", required=True),
            columns=dict(type="dict", default={}),
            province_prefix=dict(type="str", default="42"),
            provincial_csv=dict(type="path"),
            version=dict(type="str"),
            out_dir=dict(type="path", default="out/region_mapping"),
            decisions_xlsx=dict(type="path"),
            decided_by=dict(type="str", default="operator"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        import psycopg
    except ImportError:
        module.fail_json(msg="python3 psycopg (3.x) is required")
    try:
        with psycopg.connect(p["province_dsn"]) as conn:
            res = run_init(
                conn,
                p["national_csv"],
                version=p["version"],
                columns=p["columns"],
                province_prefix=p["province_prefix"],
                provincial_csv=p["provincial_csv"],
                out_dir=p["out_dir"],
                decisions_xlsx=p["decisions_xlsx"],
                decided_by=p["decided_by"],
                check=module.check_mode,
            )
    except MappingError as exc:
        module.fail_json(msg=str(exc))
    except psycopg.Error as exc:
        module.fail_json(msg=f"database error: {exc}")
    module.exit_json(**res)


if __name__ == "__main__":
    main()
