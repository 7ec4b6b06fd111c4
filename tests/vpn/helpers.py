"""Helpers for the VPN tests: a small topology and running the real Ansible module in-process."""

from __future__ import annotations

import io
import json
import sys
from contextlib import redirect_stdout

from vpn import library_loader  # noqa: F401  (puts library/ on sys.path)

MASTER = "lab-master-secret-0123456789"


def small_topology(vendors=("huawei_vrp", "hp_comware", "cisco_ios")) -> dict:
    """Province (linux) + one appliance city per vendor + one appliance county under the first city."""
    wanif = {
        "huawei_vrp": "GigabitEthernet0/0/1",
        "hp_comware": "GigabitEthernet1/0/1",
        "cisco_ios": "GigabitEthernet0/1",
    }
    gws = {
        "gw-prov": {
            "tier": "province",
            "id": 1,
            "kind": "linux",
            "wan": "198.51.100.1",
            "subnets": ["10.42.0.0/22"],
        },
    }
    for i, v in enumerate(vendors):
        gws[f"gw-42{i}100"] = {
            "tier": "city",
            "id": 10 + i,
            "parent": "gw-prov",
            "kind": "appliance",
            "vendor": v,
            "wan_interface": wanif[v],
            "wan": f"198.51.100.{10 + i}",
            "subnets": [f"10.43.{i + 1}.0/24"],
        }
    gws["gw-420102"] = {
        "tier": "county",
        "id": 100,
        "parent": "gw-420100",
        "kind": "appliance",
        "vendor": "cisco_ios",
        "wan_interface": wanif["cisco_ios"],
        "wan": "198.51.100.100",
        "subnets": ["10.44.1.0/24", "10.44.2.0/24"],
    }
    return {"gateways": gws}


def run_module(args: dict, check: bool = False, diff: bool = False) -> dict:
    """Run library/vpn_appliance_config.py's main() in-process with real arguments; return its JSON."""
    import vpn_appliance_config
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    payload = {"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check, "_ansible_diff": diff}}
    basic._ANSIBLE_ARGS = to_bytes(json.dumps(payload))
    basic._ANSIBLE_PROFILE = "legacy"
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            vpn_appliance_config.main()
        except SystemExit:
            pass
    sys.stdout.flush()
    return json.loads(out.getvalue())


def module_args(dev, topology: dict, **kw) -> dict:
    """vpn_appliance_config arguments for a fake device (tests/fakes/netdev.FakeDevice)."""
    return {
        "gateway": dev.name,
        "topology": topology,
        "psk_master": MASTER,
        "host": "127.0.0.1",
        "port": dev.port,
        "username": "admin",
        "password": "admin",
        **kw,
    }


def cfg_lines(dev, since: int = 0) -> list[str]:
    """The configuration lines a fake device received since log index `since`."""
    return [line for mode, line in dev.log[since:] if mode == "cfg"]
