#!/usr/bin/python
"""Ansible module: judge every required VPN LAN pair and write the report (HTML + xlsx + JSON)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: vpn_check_report
short_description: Judge the required VPN LAN pairs and write the VPN health report
description:
  - Combines ping results per required pair with the tunnel state seen on both gateway ends
    (C(swanctl --list-sas) text for strongSwan, parsed IKE SA peers for appliances).
  - Writes C(<out_base>.json), C(.html) and C(.xlsx) (Chinese), failures first. Runs on the controller.
  - Fails (so the playbook exits non-zero) when a required pair is down and I(fail_on_down) is true.
options:
  pairs:
    description: Required pairs (filter vpn_required_pairs).
    type: list
    elements: dict
    required: true
  swanctl: {description: "{gateway: swanctl --list-sas output}.", type: dict, default: {}}
  appliance_peers:
    description: "{gateway: {peer: established}} from vpn_appliance_config state=ike_sa."
    type: dict
    default: {}
  pings: {description: "{pair name: ping output text}.", type: dict, default: {}}
  out_base: {description: Output path without extension., type: path, required: true}
  fail_on_down: {description: Fail when a required pair is down., type: bool, default: true}
  generated_at: {description: Timestamp shown in the report., type: str}
author: popdb-ops
"""

EXAMPLES = r"""
- name: Write the report
  vpn_check_report:
    pairs: "{{ vpn_topology | vpn_required_pairs }}"
    swanctl: "{{ swanctl_by_gateway }}"
    pings: "{{ ping_by_pair }}"
    out_base: out/vpn_check/vpn_check
"""

RETURN = r"""
rows: {description: One row per pair (failures first)., type: list, returned: always}
summary: {description: "Counts: down, degraded, up.", type: dict, returned: always}
json: {description: Path of the JSON report., type: str, returned: always}
html: {description: Path of the HTML report., type: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_vpn_check import (
    judge,
    parse_ping,
    parse_swanctl_sas,
    tunnel_up_swanctl,
    write,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pairs=dict(type="list", elements="dict", required=True),
            swanctl=dict(type="dict", default={}),
            appliance_peers=dict(type="dict", default={}),
            pings=dict(type="dict", default={}),
            out_base=dict(type="path", required=True),
            fail_on_down=dict(type="bool", default=True),
            generated_at=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    peers_of = {}
    for pair in p["pairs"]:
        peers_of.setdefault(pair["a"], set()).add(pair["b"])
        peers_of.setdefault(pair["b"], set()).add(pair["a"])
    tunnels = {}
    for gw, text in p["swanctl"].items():
        sas = parse_swanctl_sas(text)
        tunnels[gw] = {peer: tunnel_up_swanctl(sas, peer) for peer in peers_of.get(gw, ())}
    for gw, peers in p["appliance_peers"].items():
        tunnels[gw] = {k: bool(v) for k, v in (peers or {}).items()}
    pings = {name: parse_ping(text) for name, text in p["pings"].items() if text is not None}
    rows = judge(p["pairs"], tunnels, pings)
    res = write(p["out_base"], rows, p["generated_at"])
    result = dict(changed=False, rows=rows, **res)
    down = [r["pair"] for r in rows if r["status"] == "down"]
    if down and p["fail_on_down"]:
        module.fail_json(msg=f"{len(down)} required VPN link(s) down: {', '.join(down)}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
