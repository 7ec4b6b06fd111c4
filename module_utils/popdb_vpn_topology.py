"""The three-tier VPN topology as data: validation, required LAN pairs, per-gateway connections.

The inventory describes every gateway once (``vpn_topology.gateways``): tier, numeric id, WAN address,
protected subnets, parent, kind (linux | appliance) and vendor. Everything else is derived here:

* required LAN pairs: province<->city, city<->each of its counties, province<->county;
* each required pair is one *direct* tunnel between the two gateways (no relay through the city: the
  userspace IPsec backend needs a local traffic selector that contains the gateway itself);
* per gateway: its peers and its connections (local/remote WAN, local/remote subnets, pre-shared key);
* the inventory groups (vpn_province/vpn_city/vpn_county, vpn_linux/vpn_appliance).

Pre-shared keys are never written per pair: ``pair_psk`` derives each pair's key from one vaulted master
secret (HMAC-SHA256), with optional per-pair overrides for rotation of a single link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

TIERS = ("province", "city", "county")
KINDS = ("linux", "appliance")
VENDORS = ("huawei_vrp", "hp_comware", "cisco_ios")
PAIR_KINDS = ("province-city", "city-county", "province-county")


class TopologyError(ValueError):
    """Invalid topology data; ``errors`` lists every problem as 'gateway.field: message'."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("invalid VPN topology: " + "; ".join(self.errors))


@dataclass(frozen=True)
class Pair:
    a: str  # the higher tier end
    b: str
    kind: str

    @property
    def name(self) -> str:
        return f"{self.a}--{self.b}"


def _gateways(topology) -> dict:
    gws = (topology or {}).get("gateways")
    if not isinstance(gws, dict) or not gws:
        raise TopologyError(["vpn_topology.gateways: missing or empty mapping"])
    return gws


def validate(topology) -> dict:
    """Check the topology; raise TopologyError naming every bad gateway and field. Returns the gateways."""
    gws = _gateways(topology)
    errors, ids, nets = [], {}, []
    provinces = [n for n, g in gws.items() if isinstance(g, dict) and g.get("tier") == "province"]
    if len(provinces) != 1:
        errors.append(f"vpn_topology: exactly one province gateway expected, found {len(provinces)}")
    for name, g in sorted(gws.items()):
        if not isinstance(g, dict):
            errors.append(f"{name}: must be a mapping")
            continue
        tier, kind = g.get("tier"), g.get("kind", "linux")
        if tier not in TIERS:
            errors.append(f"{name}.tier: {tier!r} not one of {', '.join(TIERS)}")
        if kind not in KINDS:
            errors.append(f"{name}.kind: {kind!r} not one of {', '.join(KINDS)}")
        if kind == "appliance":
            if g.get("vendor") not in VENDORS:
                errors.append(f"{name}.vendor: {g.get('vendor')!r} not one of {', '.join(VENDORS)}")
            if not _wan_interface(topology, g):
                errors.append(f"{name}.wan_interface: required (no default for vendor {g.get('vendor')!r})")
        gid = g.get("id")
        if not isinstance(gid, int) or isinstance(gid, bool) or not 1 <= gid <= 999:
            errors.append(f"{name}.id: {gid!r} must be an integer 1..999 (stable ACL/policy number)")
        elif gid in ids:
            errors.append(f"{name}.id: {gid} already used by {ids[gid]}")
        else:
            ids[gid] = name
        try:
            ipaddress.ip_address(str(g.get("wan")))
        except ValueError:
            errors.append(f"{name}.wan: {g.get('wan')!r} is not an IP address")
        subnets = g.get("subnets")
        if not isinstance(subnets, list) or not subnets:
            errors.append(f"{name}.subnets: non-empty list of CIDRs required")
            subnets = []
        for s in subnets:
            try:
                net = ipaddress.ip_network(str(s), strict=True)
            except ValueError:
                errors.append(f"{name}.subnets: {s!r} is not a network address in CIDR form")
                continue
            for other, onet in nets:
                if net.overlaps(onet):
                    errors.append(f"{name}.subnets: {s} overlaps {onet} of {other}")
            nets.append((name, net))
        parent = g.get("parent")
        if tier == "city" and parent not in (None, *provinces):
            errors.append(f"{name}.parent: a city's parent must be the province gateway, not {parent!r}")
        if tier == "county":
            pg = gws.get(parent) if isinstance(parent, str) else None
            if not isinstance(pg, dict) or pg.get("tier") != "city":
                errors.append(f"{name}.parent: {parent!r} is not a city gateway")
        for p in g.get("extra_peers") or []:
            if p not in gws or p == name:
                errors.append(f"{name}.extra_peers: {p!r} is not another gateway")
    if errors:
        raise TopologyError(errors)
    return gws


def _wan_interface(topology, g: dict):
    defaults = ((topology or {}).get("defaults") or {}).get("wan_interface") or {}
    return g.get("wan_interface") or defaults.get(g.get("vendor"))


def gateway(topology, name: str) -> dict:
    """One gateway's data with topology defaults applied (wan_interface)."""
    gws = validate(topology)
    if name not in gws:
        raise TopologyError([f"{name}: not a gateway in vpn_topology.gateways"])
    g = dict(gws[name])
    g.setdefault("code", code_of(name))
    if g.get("kind") == "appliance":
        g["wan_interface"] = _wan_interface(topology, g)
    return g


def code_of(name: str) -> str:
    """Division code from a gateway name (gw-420102 -> 420102; gw-prov -> '')."""
    tail = name[3:] if name.startswith("gw-") else ""
    return tail if tail.isdigit() else ""


def province(topology) -> str:
    return next(n for n, g in _gateways(topology).items() if g.get("tier") == "province")


def required_pairs(topology) -> list[Pair]:
    """Every LAN pair that must reach each other, as direct gateway-to-gateway tunnels."""
    gws = validate(topology)
    prov = province(topology)
    pairs = []
    for name in sorted(gws):
        g = gws[name]
        if g["tier"] == "city":
            pairs.append(Pair(prov, name, "province-city"))
        elif g["tier"] == "county":
            pairs.append(Pair(g["parent"], name, "city-county"))
            pairs.append(Pair(prov, name, "province-county"))
    seen = {frozenset((p.a, p.b)) for p in pairs}
    for name in sorted(gws):
        for other in gws[name].get("extra_peers") or []:
            if frozenset((name, other)) not in seen:
                seen.add(frozenset((name, other)))
                pairs.append(Pair(name, other, "extra"))
    order = {k: i for i, k in enumerate(PAIR_KINDS + ("extra",))}
    return sorted(pairs, key=lambda p: (order[p.kind], p.a, p.b))


def peers_of(topology, gateway: str) -> list[str]:
    out = set()
    for p in required_pairs(topology):
        if gateway in (p.a, p.b):
            out.add(p.b if p.a == gateway else p.a)
    return sorted(out)


def pair_psk(master: str, a: str, b: str, overrides=None) -> str:
    """The pre-shared key of the tunnel a<->b: per-pair override or HMAC-SHA256(master, sorted names)."""
    key = "--".join(sorted((a, b)))
    overrides = overrides or {}
    if key in overrides:
        return str(overrides[key])
    if not master or len(str(master)) < 16:
        raise TopologyError([f"psk master for {key}: missing or shorter than 16 characters"])
    mac = hmac.new(str(master).encode(), key.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode().rstrip("=")[:40]


def psk_fingerprint(psk: str, peer: str) -> str:
    """Short non-reversible marker stored next to the key (devices show keys encrypted)."""
    return hashlib.sha256(f"{peer}:{psk}".encode()).hexdigest()[:12]


def connections(topology, gateway: str, psk_master: str | None = None, psk_overrides=None) -> list[dict]:
    """The connections of one gateway, one per peer, sorted by peer id (stable across peer changes)."""
    gws = validate(topology)
    if gateway not in gws:
        raise TopologyError([f"{gateway}: not a gateway in vpn_topology.gateways"])
    me = gws[gateway]
    out = []
    for peer in peers_of(topology, gateway):
        pg = gws[peer]
        conn = {
            "name": peer,
            "peer": peer,
            "peer_id": pg["id"],
            "peer_tier": pg["tier"],
            "peer_kind": pg.get("kind", "linux"),
            "local_wan": str(me["wan"]),
            "remote_wan": str(pg["wan"]),
            "local_subnets": [str(s) for s in me["subnets"]],
            "remote_subnets": [str(s) for s in pg["subnets"]],
        }
        if psk_master is not None or psk_overrides:
            conn["psk"] = pair_psk(psk_master, gateway, peer, psk_overrides)
        out.append(conn)
    return sorted(out, key=lambda c: c["peer_id"])


def inventory(topology) -> dict:
    """Inventory groups for the gateways (names only; per-gateway data stays in the topology)."""
    gws = validate(topology)
    groups = {f"vpn_{t}": {} for t in TIERS}
    kinds = {f"vpn_{k}": {} for k in KINDS}
    for name in sorted(gws, key=lambda n: (TIERS.index(gws[n]["tier"]), n)):
        g = gws[name]
        groups[f"vpn_{g['tier']}"][name] = None
        kinds[f"vpn_{g.get('kind', 'linux')}"][name] = None
    children = {k: {"hosts": v} for k, v in {**groups, **kinds}.items()}
    return {"all": {"children": {"vpn_gateways": {"children": children}}}}


def _main(argv=None) -> int:  # pragma: no cover - thin CLI around inventory()
    """Print the inventory groups for a topology file: regenerates inventories/<env>/vpn_gateways.yml."""
    import sys

    import yaml

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: popdb_vpn_topology.py <group_vars/.../vpn_topology.yml>", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as fh:
        topo = yaml.safe_load(fh)["vpn_topology"]
    print(f"# GENERATED from {argv[0]} by module_utils/popdb_vpn_topology.py - do not edit by hand.")
    print("# Gateway names and groups only; every per-gateway fact lives in the topology file.")
    print(yaml.safe_dump(inventory(topo), sort_keys=False, default_flow_style=False).rstrip())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())


def probe_plan(pairs, probes: dict, linux: list, lan_ips: dict) -> list[dict]:
    """For each required pair, who pings whom through the tunnel.

    probes: {gateway: probe host address} for hosts behind gateways (lab: probe-<suffix>), keyed by gateway;
    linux: gateways that can run ping themselves; lan_ips: {gateway: its LAN address}. The source is the probe
    behind one end, else that end's gateway (pinging from its LAN address); the target is the probe behind the
    other end, else that gateway's LAN address. Pairs with no possible source or target get source None.
    """
    plan = []
    for p in pairs:
        a, b, name = p["a"], p["b"], p["name"]
        item = {"name": name, "source": None, "source_ip": "", "target": ""}
        for near, far in ((a, b), (b, a)):
            target = probes.get(far, {}).get("ip") or lan_ips.get(far) or ""
            if not target:
                continue
            if near in probes:
                item.update(source=probes[near]["host"], target=target)
                break
            if near in linux and lan_ips.get(near):
                item.update(source=near, source_ip=lan_ips[near], target=target)
                break
        plan.append(item)
    return plan


def township_sheet(topology, county: str, site: dict, target: dict) -> dict:
    """Everything the Chinese client help page and the self-check config need for one township site."""
    gws = validate(topology)
    where = f"vpn_townships.{county}.{site.get('code', '?')}"
    if county not in gws:
        raise TopologyError([f"{where}: {county} is not a gateway in vpn_topology"])
    try:
        net = ipaddress.ip_network(str(site["subnet"]), strict=True)
    except (KeyError, ValueError) as exc:
        raise TopologyError(
            [f"{where}.subnet: {site.get('subnet')!r} is not a network in CIDR form"]
        ) from exc
    if net.num_addresses < 4:
        raise TopologyError([f"{where}.subnet: {net} too small for PCs"])
    if not any(net.subnet_of(ipaddress.ip_network(str(s))) for s in gws[county]["subnets"]):
        raise TopologyError(
            [f"{where}.subnet: {net} is not inside {county}'s protected subnets (not tunnelled)"]
        )
    prov = gws[province(topology)]
    gateway_ip = str(site.get("gateway") or (net.network_address + 1))
    tunnel_probe = str(
        prov.get("lan_ip") or (ipaddress.ip_network(str(prov["subnets"][0])).network_address + 1)
    )
    return {
        "code": str(site.get("code", "")),
        "name": str(site.get("name", "")),
        "county": county,
        "county_label": gws[county].get("label", county),
        "subnet": str(net),
        "netmask": str(net.netmask),
        "first_ip": str(net.network_address + 2),
        "last_ip": str(net.broadcast_address - 1),
        "gateway_ip": gateway_ip,
        "tunnel_probe": tunnel_probe,
        "selfcheck": {
            "township": str(site.get("name", "")),
            "subnet": str(net),
            "gateway": gateway_ip,
            "tunnel_probe": tunnel_probe,
            "target_host": str(target["host"]),
            "target_port": int(target.get("port", 443)),
        },
    }


def cutover_connection(topology, gateway: str, psk_master: str | None = None, psk_overrides=None) -> dict:
    """The gateway's connection on the health-network VPN, from its ``health`` data in the topology.

    ``health: {wan, subnets, peer: {name, wan, subnets}}``: the gateway's new WAN address and protected
    subnets, and the health network's hub it connects to instead of its population-VPN peers.
    """
    gws = validate(topology)
    g = gws.get(gateway)
    where = f"{gateway}.health"
    if g is None:
        raise TopologyError([f"{gateway}: not a gateway in vpn_topology.gateways"])
    if g.get("tier") not in ("city", "county"):
        raise TopologyError([f"{where}: only a city or county gateway can move to the health network"])
    h = g.get("health")
    if not isinstance(h, dict):
        raise TopologyError([f"{where}: missing (wan, subnets, peer: {{name, wan, subnets}})"])
    errors = []
    peer = h.get("peer") if isinstance(h.get("peer"), dict) else {}
    for label, value in (("wan", h.get("wan")), ("peer.wan", peer.get("wan"))):
        try:
            ipaddress.ip_address(str(value))
        except ValueError:
            errors.append(f"{where}.{label}: {value!r} is not an IP address")
    for label, nets in (("subnets", h.get("subnets")), ("peer.subnets", peer.get("subnets"))):
        if not isinstance(nets, list) or not nets:
            errors.append(f"{where}.{label}: non-empty list of CIDRs required")
            continue
        for s in nets:
            try:
                ipaddress.ip_network(str(s), strict=True)
            except ValueError:
                errors.append(f"{where}.{label}: {s!r} is not a network in CIDR form")
    if not peer.get("name"):
        errors.append(f"{where}.peer.name: required")
    if errors:
        raise TopologyError(errors)
    conn = {
        "name": f"health-{peer['name']}",
        "peer": f"health-{peer['name']}",
        "peer_id": 0,
        "peer_tier": "health",
        "peer_kind": "external",
        "local_wan": str(h["wan"]),
        "remote_wan": str(peer["wan"]),
        "local_subnets": [str(s) for s in h["subnets"]],
        "remote_subnets": [str(s) for s in peer["subnets"]],
    }
    if psk_master is not None or psk_overrides:
        conn["psk"] = pair_psk(psk_master, gateway, conn["peer"], psk_overrides)
    return conn
