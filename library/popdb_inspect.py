#!/usr/bin/python
"""Collect inspection data on a server (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: popdb_inspect
short_description: Collect server inspection (巡检) data on the host
description:
  - Reads CPU, load, memory, disks and inodes, network rates over an interval, failed systemd units,
    recent error journal lines (ID numbers masked), time-sync state, pending updates, uptime and boots.
  - Read-only; supports check mode. Logic in module_utils/popdb_inspection.py.
options:
  interval:
    description: Seconds between the two samples used for CPU and network rates.
    type: float
    default: 2.0
  error_lines:
    description: How many recent error journal lines to return (masked).
    type: int
    default: 20
  error_since:
    description: journalctl --since value for the error window.
    type: str
    default: "-24h"
author: popdb-ops
"""

EXAMPLES = r"""
- name: Collect inspection data
  popdb_inspect:
    interval: 3
  register: inspection_data
"""

RETURN = r"""
inspection:
  description: The collected data (see module_utils/popdb_inspection.collect).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_inspection import collect


def main():
    module = AnsibleModule(
        argument_spec={
            "interval": {"type": "float", "default": 2.0},
            "error_lines": {"type": "int", "default": 20},
            "error_since": {"type": "str", "default": "-24h"},
        },
        supports_check_mode=True,
    )
    p = module.params
    data = collect(interval=p["interval"], error_lines=p["error_lines"], error_since=p["error_since"])
    module.exit_json(changed=False, inspection=data)


if __name__ == "__main__":
    main()
