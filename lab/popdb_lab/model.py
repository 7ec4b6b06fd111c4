"""The lab as data: sizes, spec parsing, addressing and inventory rendering (no root, no side effects).

Addressing of lab id N (0..54):
- WAN bridge ``plb<N>w``: 10.(200+N).0.0/24, controller 10.(200+N).0.1, hosts from .10 in spec order.
- One LAN bridge per gateway (``lan: true``), K = 1, 2, ... in spec order: ``plb<N>l<K>``,
  10.(200+N).K.0/24; the gateway is .1 on its eth1, hosts behind it from .10, the controller .254.
- Hosts behind a gateway (``behind: <gw>``) have NO WAN interface; their default route is the gateway.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZES_DIR = os.path.join(ROOT, "lab", "sizes")
SIZES = ("small", "full")
MAX_ID = 54
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
GROUP_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
WAN_FIRST = 10
LAN_FIRST = 10
CONTROLLER_LAN = 254


class SpecError(ValueError):
    """A size or spec file is invalid; the message names the host and the field."""


@dataclass
class Host:
    name: str
    groups: list[str]
    index: int  # position in the spec (stable names for veths)
    wan_ip: str | None = None
    lan_ip: str | None = None  # gateway: its eth1 address; probe: its only address
    lan_cidr: str | None = None
    lan_index: int | None = None  # K of the LAN bridge this host has (gateway) or sits on (probe)
    behind: str | None = None
    gateway_ip: str | None = None  # probes: default route
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def is_gateway(self) -> bool:
        return self.behind is None and self.lan_index is not None

    @property
    def address(self) -> str:
        """The address the controller uses (WAN, or the LAN address for hosts behind a gateway)."""
        return self.wan_ip or self.lan_ip  # type: ignore[return-value]


@dataclass
class Lab:
    lab_id: int
    hosts: list[Host]

    @property
    def prefix(self) -> str:
        return f"10.{200 + self.lab_id}"

    @property
    def wan_bridge(self) -> str:
        return f"plb{self.lab_id}w"

    @property
    def wan_cidr(self) -> str:
        return f"{self.prefix}.0.0/24"

    @property
    def controller_wan_ip(self) -> str:
        return f"{self.prefix}.0.1"

    def lan_bridge(self, k: int) -> str:
        return f"plb{self.lab_id}l{k}"

    def controller_lan_ip(self, k: int) -> str:
        return f"{self.prefix}.{k}.{CONTROLLER_LAN}"

    def lan_indexes(self) -> list[int]:
        return sorted({h.lan_index for h in self.hosts if h.is_gateway})

    def bridges(self) -> dict[str, str]:
        """Bridge name -> controller address with prefix length."""
        out = {self.wan_bridge: f"{self.controller_wan_ip}/24"}
        for k in self.lan_indexes():
            out[self.lan_bridge(k)] = f"{self.controller_lan_ip(k)}/24"
        return out

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def proxy_ip(self, host: Host) -> str:
        """The controller address a host reaches apt-cacher-ng at."""
        if host.wan_ip:
            return self.controller_wan_ip
        return self.controller_lan_ip(host.lan_index)  # type: ignore[arg-type]

    def netns(self, host: Host) -> str:
        return f"popdb{self.lab_id}-{host.name}"

    def veth(self, host: Host, side: str) -> str:
        """Root-namespace end of a host's veth: side 'w' (WAN, eth0) or 'l' (LAN)."""
        return f"pv{self.lab_id}{side}{host.index}"


def _load_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc


def group_data() -> dict[str, Any]:
    return _load_yaml(os.path.join(SIZES_DIR, "groups.yml"))


def size_spec(size: str) -> list[dict[str, Any]]:
    """The host entries of a named size (the size file plus the shared gateway set)."""
    if size not in SIZES:
        raise SpecError(f"unknown lab size {size!r} (choose one of {', '.join(SIZES)})")
    data = _load_yaml(os.path.join(SIZES_DIR, f"{size}.yml"))
    hosts = list(data.get("hosts") or [])
    if data.get("include_gateways"):
        hosts += _load_yaml(os.path.join(SIZES_DIR, "gateways.yml"))
    return hosts


def spec_file(path: str) -> list[dict[str, Any]]:
    data = _load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list):
        raise SpecError(f"{path}: a spec is a mapping with a list 'hosts: [{{name, groups, lan?, behind?}}]'")
    return data["hosts"]


def build_lab(lab_id: int, entries: list[dict[str, Any]]) -> Lab:
    """Validate spec entries and assign addresses. Errors name the entry and the field."""
    if not isinstance(lab_id, int) or not 0 <= lab_id <= MAX_ID:
        raise SpecError(f"lab id must be an integer 0..{MAX_ID}, got {lab_id!r}")
    if not entries:
        raise SpecError("the spec has no hosts")
    cities = group_data().get("cities", {})
    hosts: list[Host] = []
    seen: set[str] = set()
    for i, e in enumerate(entries):
        where = f"host #{i + 1}"
        if not isinstance(e, dict):
            raise SpecError(f"{where}: must be a mapping, got {type(e).__name__}")
        unknown = set(e) - {"name", "groups", "lan", "behind", "vars"}
        if unknown:
            raise SpecError(f"{where} ({e.get('name')}): unknown field(s) {', '.join(sorted(unknown))}")
        name = e.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise SpecError(f"{where}: field 'name' must be a lowercase host name, got {name!r}")
        where = f"host {name}"
        if name in seen:
            raise SpecError(f"{where}: field 'name' is duplicated")
        seen.add(name)
        groups = e.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) and GROUP_RE.match(g) for g in groups):
            raise SpecError(f"{where}: field 'groups' must be a list of group names, got {groups!r}")
        hvars = e.get("vars") or {}
        if not isinstance(hvars, dict):
            raise SpecError(f"{where}: field 'vars' must be a mapping")
        lan = e.get("lan", False)
        if not isinstance(lan, bool):
            raise SpecError(f"{where}: field 'lan' must be true or false, got {lan!r}")
        behind = e.get("behind")
        if behind is not None and not isinstance(behind, str):
            raise SpecError(f"{where}: field 'behind' must be a gateway name, got {behind!r}")
        if lan and behind:
            raise SpecError(f"{where}: 'lan' and 'behind' exclude each other")
        m = re.match(r"^city-db-(\d{6})$", name)
        if m and m.group(1) in cities:
            hvars = {"city_code": m.group(1), "city_name": cities[m.group(1)], **hvars}
        h = Host(name=name, groups=list(groups), index=i, behind=behind, vars=dict(hvars))
        h.lan_index = -1 if lan else None  # assigned below
        hosts.append(h)
    lab = Lab(lab_id, hosts)
    k = 0
    wan_n = 0
    for h in hosts:
        if h.behind is None:
            if WAN_FIRST + wan_n > 250:
                raise SpecError(f"host {h.name}: too many hosts on the WAN bridge")
            h.wan_ip = f"{lab.prefix}.0.{WAN_FIRST + wan_n}"
            wan_n += 1
        if h.lan_index == -1:
            k += 1
            if k > 250:
                raise SpecError(f"host {h.name}: too many gateways")
            h.lan_index = k
            h.lan_ip = f"{lab.prefix}.{k}.1"
            h.lan_cidr = f"{lab.prefix}.{k}.0/24"
    by_name = {h.name: h for h in hosts}
    per_lan: dict[int, int] = {}
    for h in hosts:
        if h.behind is None:
            continue
        gw = by_name.get(h.behind)
        if gw is None or not gw.is_gateway:
            raise SpecError(
                f"host {h.name}: field 'behind' names {h.behind!r}, which is not a gateway with lan: true"
            )
        n = per_lan.get(gw.lan_index, 0)  # type: ignore[arg-type]
        per_lan[gw.lan_index] = n + 1  # type: ignore[index]
        if LAN_FIRST + n >= CONTROLLER_LAN:
            raise SpecError(f"host {h.name}: too many hosts behind {gw.name}")
        h.lan_index = gw.lan_index
        h.lan_ip = f"{lab.prefix}.{gw.lan_index}.{LAN_FIRST + n}"
        h.lan_cidr = gw.lan_cidr
        h.gateway_ip = gw.lan_ip
    for h in hosts:
        for a in (h.wan_ip, h.lan_ip):
            if a:
                ipaddress.ip_address(a)
    return lab


def inventory(lab: Lab, ssh_key: str, ssh_config: str) -> dict[str, Any]:
    """The Ansible YAML inventory of a lab (hosts, groups with the estate's parent groups, lab host vars)."""
    gdata = group_data()
    parents: dict[str, list[str]] = gdata.get("children", {})
    members: dict[str, list[str]] = {}
    for h in lab.hosts:
        for g in h.groups:
            members.setdefault(g, []).append(h.name)
    groups: dict[str, Any] = {}

    def used(g: str) -> bool:
        return g in members or any(used(c) for c in parents.get(g, []))

    for g, hs in members.items():
        groups[g] = {"hosts": {n: None for n in hs}}
    for g, children in parents.items():
        kids = [c for c in children if used(c)]
        if kids:
            groups.setdefault(g, {})["children"] = {c: None for c in kids}
    all_hosts: dict[str, Any] = {}
    for h in lab.hosts:
        hv: dict[str, Any] = {"ansible_host": h.address}
        if h.wan_ip:
            hv["lab_wan_ip"] = h.wan_ip
        if h.lan_ip:
            hv["lab_lan_ip"] = h.lan_ip
            hv["lab_lan_cidr"] = h.lan_cidr
        if h.behind:
            hv["lab_gateway"] = h.behind
            hv["lab_gateway_ip"] = h.gateway_ip
        hv.update(h.vars)
        all_hosts[h.name] = hv
    return {
        "all": {
            "vars": {
                "lab_id": lab.lab_id,
                "lab_controller_ip": lab.controller_wan_ip,
                "lab_ssh_config": ssh_config,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": ssh_key,
            },
            "hosts": all_hosts,
            "children": groups,
        }
    }


def ssh_config(lab: Lab, ssh_key: str) -> str:
    lines = [f"# lab {lab.lab_id}: written by bin/lab up"]
    for h in lab.hosts:
        lines += [f"Host {h.name}", f"  HostName {h.address}", ""]
    lines += [
        "Host *",
        "  User root",
        f"  IdentityFile {ssh_key}",
        "  IdentitiesOnly yes",
        "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null",
        "  LogLevel ERROR",
        "  BatchMode yes",
        "  ConnectTimeout 5",
        "",
    ]
    return "\n".join(lines)


def hosts_json(lab: Lab) -> dict[str, Any]:
    return {
        "lab_id": lab.lab_id,
        "controller_ip": lab.controller_wan_ip,
        "bridges": lab.bridges(),
        "hosts": [
            {
                "name": h.name,
                "groups": h.groups,
                "address": h.address,
                "wan_ip": h.wan_ip,
                "lan_ip": h.lan_ip,
                "lan_cidr": h.lan_cidr,
                "behind": h.behind,
                "netns": lab.netns(h),
            }
            for h in lab.hosts
        ],
    }


def spec_from_platforms(platforms: list[dict[str, Any]]) -> dict[str, Any]:
    """A lab spec from Molecule platforms (keeps name, groups, lan, behind, vars)."""
    hosts = []
    for p in platforms:
        e = {"name": p.get("name"), "groups": list(p.get("groups") or [])}
        for k in ("lan", "behind", "vars"):
            if k in p:
                e[k] = p[k]
        hosts.append(e)
    return {"hosts": hosts}
