#!/usr/bin/python
"""Grade inspection data and write the consolidated report (runs on the controller)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: popdb_inspection_report
short_description: Consolidated inspection report (HTML + xlsx, Chinese) with history
description:
  - Grades each host green/amber/red against thresholds, compares with the previous run found under
    C(out_dir)/history, writes per-host JSON, C(inspection.html) and C(inspection.xlsx) under
    C(out_dir)/<run_id>/, and appends the run to the history (oldest beyond C(keep_history) removed).
  - Run it on the controller (C(delegate_to: localhost), C(run_once)). It never changes a managed host,
    so it reports C(changed=false); in check mode it grades but writes nothing.
options:
  hosts:
    description: Mapping host -> popdb_inspect C(inspection) result; null or empty means unreachable.
    type: dict
    required: true
  groups:
    description: Mapping host -> list of its groups (shown in the report).
    type: dict
    default: {}
  thresholds:
    description: Per metric C({amber, red}); unknown metrics are an error.
    type: dict
    default: {}
  out_dir:
    description: Output directory (history kept below it).
    type: path
    required: true
  run_id:
    description: Run identifier (sortable); default now as YYYYmmddTHHMMSS.
    type: str
  keep_history:
    description: History files kept.
    type: int
    default: 60
  title:
    description: Report title.
    type: str
    default: 服务器巡检报告
author: popdb-ops
"""

EXAMPLES = r"""
- name: Consolidated report
  popdb_inspection_report:
    hosts: "{{ inspection_all }}"
    groups: "{{ inspection_groups }}"
    thresholds: "{{ inspection_thresholds }}"
    out_dir: "{{ playbook_dir }}/../out/inspection"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
summary:
  description: Host names per status (green, amber, red).
  returned: always
  type: dict
hosts:
  description: Per host status and graded metrics.
  returned: always
  type: dict
deltas:
  description: Per host change since the previous run.
  returned: always
  type: dict
previous_run:
  description: run_id of the run compared against (null on the first run).
  returned: always
  type: str
files:
  description: Paths written (html, xlsx, hosts_dir); empty in check mode.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_inspection import run_report


def main():
    module = AnsibleModule(
        argument_spec={
            "hosts": {"type": "dict", "required": True},
            "groups": {"type": "dict", "default": {}},
            "thresholds": {"type": "dict", "default": {}},
            "out_dir": {"type": "path", "required": True},
            "run_id": {"type": "str"},
            "keep_history": {"type": "int", "default": 60},
            "title": {"type": "str", "default": "服务器巡检报告"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        hosts = {h: {"data": d or None, "groups": p["groups"].get(h, [])} for h, d in p["hosts"].items()}
        res = run_report(
            hosts,
            p["thresholds"],
            p["out_dir"],
            run_id=p["run_id"],
            keep_history=p["keep_history"],
            title=p["title"],
            write=not module.check_mode,
        )
    except (ValueError, KeyError, OSError) as exc:
        module.fail_json(msg=f"inspection report: {exc}")
    module.exit_json(changed=False, **res)


if __name__ == "__main__":
    main()
