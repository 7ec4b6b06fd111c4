#!/usr/bin/python
"""List pending apt upgrades by scope, excluding held patterns (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: popdb_apt_plan
short_description: Pending apt upgrades for a patching scope (read-only)
description:
  - Runs C(apt-get -s dist-upgrade) (simulation, no lock) and returns the upgradable packages,
    each with current and candidate version, origin and whether it comes from a security archive.
  - Selects C(security) or C(full) scope and drops packages matching C(hold_patterns). Never installs
    anything; supports check mode.
options:
  scope:
    description: security (only packages from a *-security origin) or full.
    type: str
    choices: [security, full]
    default: security
  hold_patterns:
    description: Glob patterns of packages never selected (also held with dpkg by the role).
    type: list
    elements: str
    default: []
  limit_patterns:
    description: Only packages matching one of these globs are selected (empty list means no limit).
    type: list
    elements: str
    default: []
author: popdb-ops
"""

EXAMPLES = r"""
- name: What would be patched
  popdb_apt_plan:
    scope: full
    hold_patterns: ["postgresql*"]
  register: plan
"""

RETURN = r"""
selected:
  description: Upgrades chosen for the scope [{name, from, to, origin, security}].
  returned: always
  type: list
available:
  description: Every upgrade apt would do, before scope and hold filtering.
  returned: always
  type: list
names:
  description: Names of the selected packages.
  returned: always
  type: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_patching import matches, parse_simulation, select


def main():
    module = AnsibleModule(
        argument_spec={
            "scope": {"type": "str", "choices": ["security", "full"], "default": "security"},
            "hold_patterns": {"type": "list", "elements": "str", "default": []},
            "limit_patterns": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    rc, out, err = module.run_command(
        ["apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade"],
        environ_update={"LANG": "C", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"},
    )
    if rc != 0:
        module.fail_json(msg=f"apt-get -s dist-upgrade failed (rc={rc}): {err.strip()}")
    available = parse_simulation(out)
    selected = select(available, module.params["scope"], module.params["hold_patterns"])
    if module.params["limit_patterns"]:
        selected = [u for u in selected if matches(u["name"], module.params["limit_patterns"])]
    module.exit_json(
        changed=False, available=available, selected=selected, names=[u["name"] for u in selected]
    )


if __name__ == "__main__":
    main()
