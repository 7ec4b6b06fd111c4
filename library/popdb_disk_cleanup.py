#!/usr/bin/python
"""Remove files matched by declared cleanup rules; never under protected paths."""

from __future__ import annotations

DOCUMENTATION = r"""
module: popdb_disk_cleanup
short_description: Delete old files matched by declared rules, never touching protected paths
description:
  - Each rule names paths, basename glob patterns and a minimum age; only regular files are removed,
    symlinks are never followed. A rule whose path is inside (or, when recursive, contains) a protected
    path is an error naming the rule; nothing is removed then.
  - Reports the files removed, bytes freed per rule, and filesystem usage after cleanup.
  - Supports check mode (lists what would go) and diff (file list before/after).
options:
  rules:
    description: "List of {name, paths, patterns, age_days, recurse, owner}."
    type: list
    elements: dict
    required: true
  protected_paths:
    description: Paths never touched (data directories).
    type: list
    elements: path
    default: []
  usage_paths:
    description: Paths whose filesystem usage is reported after cleanup.
    type: list
    elements: path
    default: ["/"]
author: popdb-ops
"""

EXAMPLES = r"""
- name: Remove rotated logs older than 14 days
  popdb_disk_cleanup:
    rules:
      - {name: rotated_logs, paths: [/var/log], patterns: ["*.gz", "*.[0-9]"], age_days: 14, recurse: true}
    protected_paths: [/var/lib/postgresql]
"""

RETURN = r"""
removed:
  description: Files removed (would be removed in check mode) with size and rule.
  returned: always
  type: list
freed_bytes:
  description: Total bytes freed (would be freed in check mode).
  returned: always
  type: int
freed_by_rule:
  description: Bytes per rule name.
  returned: always
  type: dict
usage:
  description: Filesystem usage of usage_paths after cleanup.
  returned: always
  type: list
errors:
  description: Files that could not be removed, with the error.
  returned: always
  type: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_cleanup import RuleError, execute, plan, usage


def main():
    module = AnsibleModule(
        argument_spec={
            "rules": {"type": "list", "elements": "dict", "required": True},
            "protected_paths": {"type": "list", "elements": "path", "default": []},
            "usage_paths": {"type": "list", "elements": "path", "default": ["/"]},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        files = plan(p["rules"], p["protected_paths"])
    except RuleError as exc:
        module.fail_json(msg=str(exc))
    errors = []
    removed = files
    if files and not module.check_mode:
        removed, errors = execute(files)
    freed = {}
    for f in removed:
        freed[f["rule"]] = freed.get(f["rule"], 0) + f["size"]
    result = {
        "changed": bool(removed),
        "removed": removed,
        "freed_bytes": sum(freed.values()),
        "freed_by_rule": freed,
        "usage": usage(p["usage_paths"]),
        "errors": errors,
    }
    if module._diff and removed:
        result["diff"] = {
            "before": "".join(f"{f['path']}\n" for f in removed),
            "after": "",
            "before_header": "files matched by cleanup rules",
            "after_header": "after cleanup",
        }
    if errors:
        module.fail_json(msg=f"{len(errors)} file(s) could not be removed", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
