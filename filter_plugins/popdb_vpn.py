"""Filters for the VPN roles and playbooks: thin wrappers over module_utils/popdb_vpn_topology.py."""

from __future__ import annotations

import importlib.util
import os
import sys

_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils", "popdb_vpn_topology.py"
)
_spec = importlib.util.spec_from_file_location("popdb_vpn_topology_for_filters", _PATH)
_topo = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _topo  # dataclasses look their module up there
_spec.loader.exec_module(_topo)


def vpn_connections(topology, gateway, psk_master=None, psk_overrides=None):
    """Connections of one gateway (one per peer), with the pair keys when a master is given."""
    return _topo.connections(topology, gateway, psk_master, psk_overrides or None)


def vpn_required_pairs(topology):
    """Required LAN pairs as dicts {a, b, kind, name}."""
    return [{"a": p.a, "b": p.b, "kind": p.kind, "name": p.name} for p in _topo.required_pairs(topology)]


def vpn_peers(topology, gateway):
    return _topo.peers_of(topology, gateway)


def vpn_gateway(topology, gateway):
    """One gateway's data with defaults applied."""
    return _topo.gateway(topology, gateway)


def vpn_probe_plan(pairs, probes, linux, lan_ips):
    """Source/target of the ping for each required pair (see popdb_vpn_topology.probe_plan)."""
    return _topo.probe_plan(pairs, probes or {}, list(linux or []), lan_ips or {})


def vpn_township_sheet(site, topology, county, target):
    """Data for one township's client help page and self-check config."""
    return _topo.township_sheet(topology, county, site, target)


def vpn_cutover_connection(topology, gateway, psk_master=None, psk_overrides=None):
    """The gateway's health-network connection (from its `health` data)."""
    return _topo.cutover_connection(topology, gateway, psk_master, psk_overrides or None)


class FilterModule:
    def filters(self):
        return {
            "vpn_connections": vpn_connections,
            "vpn_required_pairs": vpn_required_pairs,
            "vpn_peers": vpn_peers,
            "vpn_gateway": vpn_gateway,
            "vpn_probe_plan": vpn_probe_plan,
            "vpn_township_sheet": vpn_township_sheet,
            "vpn_cutover_connection": vpn_cutover_connection,
        }
