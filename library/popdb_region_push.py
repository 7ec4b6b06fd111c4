#!/usr/bin/python
"""Ansible module: push the region dictionary + mapping to downstream business systems."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: popdb_region_push
short_description: Push the region dictionary and mapping to business systems and verify arrival
description:
  - Builds one row per division (code, name, level, parent code, national code) from the province
    database, with a sha256 checksum as version.
  - Each downstream is a database table (replaced in one transaction, checksum recomputed from the
    rows read back) or an HTTP endpoint (document PUT, then GET and checksum recomputed).
  - A downstream already holding the same checksum is not touched. A failing downstream does not
    stop the others; the module fails at the end naming every failed downstream.
options:
  province_dsn:
    description: libpq connection string of the province database.
    type: str
    required: true
  downstreams:
    description: >-
      List of downstream systems, each C({name, type: db, dsn, table}) or
      C({name, type: http, url, headers, timeout}).
    type: list
    elements: dict
    required: true
author: popdb-ops
"""

EXAMPLES = r"""
- name: Push the dictionary to the business systems
  popdb_region_push:
    province_dsn: "host=prov-db01 dbname=popdb user=popdb_ops"
    downstreams:
      - {name: 业务库, type: db, dsn: "host=app01 dbname=biz", table: public.region_dict}
      - {name: 交换平台, type: http, url: "http://exch01:8080/region-dict"}
"""

RETURN = r"""
checksum:
  description: sha256 of the pushed data set.
  returned: always
  type: str
rows:
  description: Rows in the data set.
  returned: always
  type: int
downstreams:
  description: Per downstream name, type, changed, verified, rows and error.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_downstream import push_all


def main():
    module = AnsibleModule(
        argument_spec=dict(
            province_dsn=dict(type="str", required=True),
            downstreams=dict(type="list", elements="dict", required=True),
        ),
        supports_check_mode=True,
    )
    try:
        import psycopg
    except ImportError:
        module.fail_json(msg="python3 psycopg (3.x) is required")
    try:
        with psycopg.connect(module.params["province_dsn"]) as conn:
            res = push_all(conn, module.params["downstreams"], check=module.check_mode)
    except psycopg.Error as exc:
        module.fail_json(msg=f"database error: {exc}")
    if res["failed"]:
        module.fail_json(msg="downstream push failed: " + ", ".join(map(str, res["failed"])), **res)
    module.exit_json(**res)


if __name__ == "__main__":
    main()
