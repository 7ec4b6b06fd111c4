#!/usr/bin/python
"""Ansible module: VPN configuration of an appliance gateway (Huawei VRP, H3C Comware, Cisco IOS)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: vpn_appliance_config
short_description: Push the VPN configuration of one appliance gateway, derived from the topology
description:
  - Renders the vendor configuration (IKE proposal, per-peer ACL, IKE peer with pre-shared key, IPsec policy,
    policy on the WAN interface) for every connection the topology gives this gateway.
  - Reads the running configuration over SSH (netmiko), pushes only the missing or changed lines and saves
    only when it pushed something. Keys are compared through a fingerprint line, because devices show keys
    encrypted; a changed key replaces the old one.
  - Peers that left the topology are removed, limited to what the module itself configures - entries of its
    own C(popdb) IPsec policy / crypto map, the per-peer objects of a peer marked by the module's
    C(description popdb-psk-...) line (VRP C(ike peer <peer>); Comware C(ike profile ip-<peer>),
    C(ike keychain kc-<peer>); IOS C(crypto keyring kr-<peer>), C(crypto isakmp profile ip-<peer>),
    C(ip access-list extended popdb-<peer>)) and the numbered ACL of a removed policy entry. An object that
    other configuration still refers to is kept and reported (I(kept), a warning).
  - Check mode connects and reads but pushes nothing; diff mode shows the lines (keys masked).
  - When the device rejects a line the module fails, naming the line, the device message and the lines
    already applied (not saved).
  - With I(state=ike_sa) it only reads the IKE SAs and parses them with the project's TextFSM templates.
  - Runs on the controller (C(connection: local)).
version_added: "0.1.0"
author: popdb-ops
options:
  gateway: {description: Gateway name in the topology (inventory_hostname)., type: str, required: true}
  topology: {description: The C(vpn_topology) mapping from the inventory., type: dict, required: true}
  psk_master:
    description: Vaulted master secret the per-pair keys are derived from.
    type: str
  psk_overrides:
    description: Per-pair keys (C(gw-a--gw-b) sorted) overriding the derived ones.
    type: dict
    default: {}
  state:
    description: C(present) configures; C(ike_sa) reads and parses the IKE SA table only.
    type: str
    choices: [present, ike_sa]
    default: present
  host: {description: Management address of the device., type: str, required: true}
  port: {description: SSH port., type: int, default: 22}
  username: {description: Login user., type: str, required: true}
  password: {description: Login password., type: str, no_log: true}
  enable_secret: {description: Cisco enable secret., type: str, no_log: true}
  save: {description: Save the configuration after a change., type: bool, default: true}
  conn_timeout: {description: netmiko conn_timeout (TCP connect)., type: float, default: 10}
  auth_timeout: {description: netmiko auth_timeout., type: float}
  banner_timeout: {description: netmiko banner_timeout., type: float, default: 15}
  read_timeout: {description: netmiko read_timeout per command., type: float, default: 60}
  read_timeout_override: {description: netmiko read_timeout_override (forces all read timeouts)., type: float}
  global_delay_factor: {description: netmiko global_delay_factor., type: float, default: 1.0}
  fast_cli: {description: netmiko fast_cli., type: bool, default: true}
  cmd_verify:
    description: Wait for each command's echo and prompt (fast, and pins a rejection to its line).
    type: bool
    default: true
  global_cmd_verify: {description: netmiko global_cmd_verify (default follows I(cmd_verify))., type: bool}
  netmiko_config_mode:
    description:
      - Enter and leave configuration mode with netmiko's own methods (they wait ~2 s of silence per mode
        check on VRP). By default the module sends C(system-view)/C(configure terminal) and waits for the
        mode's prompt.
    type: bool
    default: false
  session_timeout: {description: netmiko session_timeout., type: float, default: 60}
  textfsm_dir: {description: Directory of the project's TextFSM templates (for I(state=ike_sa))., type: path}
"""

EXAMPLES = r"""
- name: Configure the appliance gateway's tunnels
  vpn_appliance_config:
    gateway: "{{ inventory_hostname }}"
    topology: "{{ vpn_topology }}"
    psk_master: "{{ vpn_psk_master }}"
    host: "{{ ansible_host }}"
    username: "{{ vpn_appliance_user }}"
    password: "{{ vpn_appliance_password }}"
    global_delay_factor: 0.5
  delegate_to: localhost

- name: Read the IKE SAs
  vpn_appliance_config:
    gateway: "{{ inventory_hostname }}"
    topology: "{{ vpn_topology }}"
    state: ike_sa
    host: "{{ ansible_host }}"
    username: "{{ vpn_appliance_user }}"
    password: "{{ vpn_appliance_password }}"
    textfsm_dir: "{{ playbook_dir }}/../files/textfsm"
"""

RETURN = r"""
lines: {description: Lines pushed (in check mode - to push) with keys masked., type: list, returned: always}
applied: {description: Lines the device accepted (also on failure)., type: list, returned: always}
saved: {description: Whether the configuration was saved., type: bool, returned: always}
removed:
  description: Headers of managed blocks of departed peers removed (in check mode - to remove).
  type: list
  returned: always
kept:
  description: Managed blocks of departed peers kept because other configuration still refers to them.
  type: list
  returned: always
failed_line: {description: The rejected line (keys masked)., type: str, returned: on rejection}
device_error: {description: The device's message for the rejected line., type: str, returned: on rejection}
ike_sa: {description: Parsed IKE SA rows (state=ike_sa)., type: list, returned: state=ike_sa}
peers: {description: Per peer, whether an established SA exists., type: dict, returned: state=ike_sa}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.popdb_netdev import (
    VENDORS,
    PushError,
    connect,
    diff_text,
    parse_ike_sa,
    peer_up,
    plan,
    push,
    read_running,
    render,
    save,
)
from ansible.module_utils.popdb_vpn_topology import TopologyError, connections, gateway, validate


def _mask_line(line, secrets):
    for s in secrets:
        if s and s in line:
            line = line.replace(s, "********")
    return line


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gateway=dict(type="str", required=True),
            topology=dict(type="dict", required=True),
            psk_master=dict(type="str", no_log=True),
            psk_overrides=dict(type="dict", default={}, no_log=True),
            state=dict(type="str", choices=["present", "ike_sa"], default="present"),
            host=dict(type="str", required=True),
            port=dict(type="int", default=22),
            username=dict(type="str", required=True),
            password=dict(type="str", no_log=True),
            enable_secret=dict(type="str", no_log=True),
            save=dict(type="bool", default=True),
            conn_timeout=dict(type="float", default=10),
            auth_timeout=dict(type="float"),
            banner_timeout=dict(type="float", default=15),
            read_timeout=dict(type="float", default=60),
            read_timeout_override=dict(type="float"),
            global_delay_factor=dict(type="float", default=1.0),
            fast_cli=dict(type="bool", default=True),
            cmd_verify=dict(type="bool", default=True),
            global_cmd_verify=dict(type="bool"),
            netmiko_config_mode=dict(type="bool", default=False),
            session_timeout=dict(type="float", default=60),
            textfsm_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name = p["gateway"]
    try:
        gws = validate(p["topology"])
    except TopologyError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    gw = gateway(p["topology"], name) if name in gws else None
    if gw is None or gw.get("kind") != "appliance" or gw.get("vendor") not in VENDORS:
        module.fail_json(
            msg=f"{name}: not an appliance gateway with a supported vendor in vpn_topology.gateways"
        )
    vendor = gw["vendor"]
    result = dict(changed=False, lines=[], applied=[], saved=False, removed=[], kept=[], vendor=vendor)
    if p["state"] == "present" and not (p["psk_master"] or p["psk_overrides"]):
        module.fail_json(msg=f"{name}: psk_master (vaulted) or psk_overrides required", **result)
    try:
        conns = connections(p["topology"], name, p["psk_master"], p["psk_overrides"] or None)
    except TopologyError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors, **result)
    secrets = [c.get("psk") for c in conns]
    for s in secrets:
        if s:
            module.no_log_values.add(s)

    try:
        conn = connect({**p, "vendor": vendor})
    except Exception as exc:  # noqa: BLE001 - netmiko raises many types; report them all the same way
        module.fail_json(msg=f"{name}: cannot connect to {p['host']}:{p['port']} ({vendor}): {exc}", **result)
    try:
        if p["state"] == "ike_sa":
            text = conn.send_command(VENDORS[vendor].ike_sa_command, read_timeout=p["read_timeout"])
            rows = parse_ike_sa(vendor, text, p["textfsm_dir"])
            peers = {c["peer"]: peer_up(vendor, rows, c["remote_wan"]) for c in conns}
            module.exit_json(changed=False, ike_sa=rows, peers=peers, raw=text, vendor=vendor)
        running = read_running(conn, vendor, p["read_timeout"])
        pl = plan(vendor, render(vendor, gw, conns), running)
        result["lines"] = pl.display
        result["changed"] = pl.changed
        result["removed"] = pl.deleted
        result["kept"] = pl.kept
        for header in pl.kept:
            module.warn(f"{name}: {header!r} belongs to a departed peer but is still referenced; kept")
        if module._diff and pl.changed:
            result["diff"] = diff_text(pl)
        if module.check_mode or not pl.changed:
            module.exit_json(**result)
        try:
            push(
                conn,
                vendor,
                pl.lines,
                cmd_verify=p["cmd_verify"],
                read_timeout=p["read_timeout"],
                netmiko_config_mode=p["netmiko_config_mode"],
            )
        except PushError as exc:
            applied = [_mask_line(x, secrets) for x in exc.applied]
            bad = _mask_line(exc.failed_line, secrets)
            module.fail_json(
                msg=(
                    f"{name}: device rejected line {bad!r}: {exc.device_error}. "
                    f"{len(applied)} line(s) before it were applied and NOT saved: {applied}"
                ),
                failed_line=_mask_line(exc.failed_line, secrets),
                device_error=exc.device_error,
                **{**result, "applied": applied, "changed": bool(applied)},
            )
        result["applied"] = pl.display
        if p["save"]:
            save(conn, vendor)
            result["saved"] = True
        module.exit_json(**result)
    finally:
        try:
            conn.disconnect()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
