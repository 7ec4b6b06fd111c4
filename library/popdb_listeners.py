#!/usr/bin/python
"""Report listening ports that the firewall allow-list does not open, with the systemd unit behind each."""

from __future__ import annotations

DOCUMENTATION = r"""
module: popdb_listeners
short_description: Listening-but-not-allowed ports and the units behind them
description:
  - Runs C(ss -H -tulnp) on the host, drops loopback-only listeners, and compares the rest with the
    firewall rules. Each stray listener gets the systemd unit of its process (from /proc/PID/cgroup).
  - Read-only; the firewall role stops and disables the units that are in its disable list.
  - Optionally checks that a given client address is allowed on a port (the controller on SSH) so a
    ruleset that would lock the operator out is refused before it is loaded.
options:
  rules:
    description: Firewall rules, each with C(proto), C(port) and optional C(sources) (CIDRs; empty = anyone).
    type: list
    elements: dict
    required: true
  ignore_ports:
    description: Ports (C(proto), C(port)) never reported.
    type: list
    elements: dict
    default: []
  disable_units:
    description: Units that may be stopped when they listen on a port that is not allowed.
    type: list
    elements: str
    default: []
  guard_address:
    description: Address that must be allowed on I(guard_port) (usually the controller's source address).
    type: str
  guard_port:
    description: Port checked for I(guard_address).
    type: int
    default: 22
author: popdb-ops
"""

EXAMPLES = r"""
- name: Stray listeners
  popdb_listeners:
    rules: "{{ firewall_rules }}"
    disable_units: [rpcbind.service, rpcbind.socket]
    guard_address: 10.203.0.1
  register: listeners
"""

RETURN = r"""
listeners:
  description: Every non-loopback listener (proto, address, port, processes).
  type: list
  returned: always
stray:
  description: Listeners whose port no rule opens, each with C(unit).
  type: list
  returned: always
to_disable:
  description: Units behind stray listeners that are in I(disable_units).
  type: list
  returned: always
guard_ok:
  description: Whether I(guard_address) is allowed on I(guard_port) (true when no guard address is given).
  type: bool
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_firewall import (
    ListenerParseError,
    find_stray,
    is_loopback,
    parse_ss,
    source_allowed,
    unit_of_pid,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "rules": {"type": "list", "elements": "dict", "required": True},
            "ignore_ports": {"type": "list", "elements": "dict", "default": []},
            "disable_units": {"type": "list", "elements": "str", "default": []},
            "guard_address": {"type": "str"},
            "guard_port": {"type": "int", "default": 22},
        },
        supports_check_mode=True,
    )
    p = module.params
    for i, rule in enumerate(p["rules"]):
        if rule.get("proto", "tcp") in ("tcp", "udp") and rule.get("port") is None:
            module.fail_json(
                msg=f"rules[{i}] ({rule.get('comment', '')}): field 'port' is required for proto tcp/udp"
            )
    rc, out, err = module.run_command(["ss", "-H", "-tulnp"])
    if rc != 0:
        module.fail_json(msg=f"ss -H -tulnp failed: {err.strip()}")
    try:
        listeners = parse_ss(out)
    except ListenerParseError as exc:
        module.fail_json(msg=str(exc))
    stray = find_stray(listeners, p["rules"], p["ignore_ports"])
    to_disable = []
    for lst in stray:
        units = sorted({u for u in (unit_of_pid(proc["pid"]) for proc in lst["processes"]) if u})
        lst["unit"] = units[0] if units else None
        for unit in units:
            if unit in p["disable_units"] and unit not in to_disable:
                to_disable.append(unit)
    guard_ok = True
    if p["guard_address"]:
        try:
            guard_ok = source_allowed(p["guard_address"], "tcp", p["guard_port"], p["rules"])
        except ValueError as exc:
            module.fail_json(msg=f"guard_address {p['guard_address']!r} or a rule source: {exc}")
    module.exit_json(
        changed=False,
        listeners=[lst for lst in listeners if not is_loopback(lst["address"])],
        stray=stray,
        to_disable=to_disable,
        guard_ok=guard_ok,
    )


if __name__ == "__main__":
    main()
