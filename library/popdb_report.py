#!/usr/bin/python
"""Write an operator report (Chinese HTML + xlsx) from rows and columns (runs on the controller)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: popdb_report
short_description: Write a Chinese HTML + xlsx report with green/amber/red cells
description:
  - Thin wrapper over module_utils/popdb_report.write_report for playbooks of any duty.
  - Writes C(dest).html and C(dest).xlsx on the machine it runs on (delegate to localhost).
    Report files are outputs, not managed state, so the result is C(changed=false); check mode writes nothing.
  - Text is masked (ID numbers) unless C(mask=false).
options:
  dest:
    description: Output path without extension.
    type: path
    required: true
  title:
    description: Report title.
    type: str
    required: true
  subtitle:
    description: Line under the title.
    type: str
  sections:
    description: >-
      List of {title, columns: [[key, 标题], ...], rows: [{key: value or {value, status, text}}], note}.
    type: list
    elements: dict
    required: true
  mask:
    description: Mask ID numbers in every text cell.
    type: bool
    default: true
author: popdb-ops
"""

EXAMPLES = r"""
- name: Cleanup report
  popdb_report:
    dest: "{{ playbook_dir }}/../out/disk_cleanup/report"
    title: 磁盘清理报告
    sections:
      - title: 各主机释放空间
        columns: [[host, 主机], [freed, 释放字节]]
        rows: [{host: web01, freed: {value: 1024, status: green}}]
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
files:
  description: Paths written (html, xlsx); empty in check mode.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_report import render_html, write_report


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "title": {"type": "str", "required": True},
            "subtitle": {"type": "str"},
            "sections": {"type": "list", "elements": "dict", "required": True},
            "mask": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        if module.check_mode:
            render_html(p["title"], p["sections"], subtitle=p["subtitle"], mask=p["mask"])
            module.exit_json(changed=False, files={})
        files = write_report(p["dest"], p["title"], p["sections"], subtitle=p["subtitle"], mask=p["mask"])
    except (ValueError, KeyError, OSError) as exc:
        module.fail_json(msg=f"report {p['dest']}: {exc}")
    module.exit_json(changed=False, files=files)


if __name__ == "__main__":
    main()
