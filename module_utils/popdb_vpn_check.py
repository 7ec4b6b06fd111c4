"""VPN health check: parse tunnel state and ping results, judge every required LAN pair, write the report.

Inputs come from playbooks/vpn_check.yml: ``swanctl --list-sas`` text per Linux gateway, parsed IKE SA
peers per appliance (``vpn_appliance_config`` state=ike_sa), and ``ping`` output per required pair from the
probe behind one end to the probe behind the other. A pair is DOWN when traffic does not pass (100 % loss
or no reply) or when a gateway end reports no established tunnel to the other end.
"""

from __future__ import annotations

import json
import os
import re

from ansible.module_utils.popdb_report import cell, write_report

_IKE = re.compile(r"^(\S+): #\d+, (\w+),")
_CHILD = re.compile(r"^\s+(\S+): #\d+, reqid \d+, (\w+),")
_BYTES = re.compile(r"^\s+(in|out)\s+\S+.*?,\s+(\d+) bytes,\s+(\d+) packets")
_REMOTE = re.compile(r"^\s+remote\s+'?[^']*'?\s*@\s*([\d.]+)")


def parse_swanctl_sas(text: str) -> dict:
    """``swanctl --list-sas`` -> {ike: {state, remote, children: {name: {state, in_bytes, out_bytes}}}}."""
    sas: dict = {}
    ike = child = None
    for line in (text or "").splitlines():
        m = _IKE.match(line)
        if m:
            ike = sas.setdefault(m.group(1), {"state": m.group(2), "remote": "", "children": {}})
            if m.group(2) == "ESTABLISHED":
                ike["state"] = "ESTABLISHED"
            child = None
            continue
        if ike is None:
            continue
        m = _CHILD.match(line)
        if m:
            child = ike["children"].setdefault(
                m.group(1), {"state": m.group(2), "in_bytes": 0, "out_bytes": 0}
            )
            if m.group(2) == "INSTALLED":
                child["state"] = "INSTALLED"
            continue
        m = _BYTES.match(line)
        if m and child is not None:
            child[f"{m.group(1)}_bytes"] += int(m.group(2))
            continue
        m = _REMOTE.match(line)
        if m and child is None:
            ike["remote"] = m.group(1)
    return sas


def tunnel_up_swanctl(sas: dict, peer: str) -> bool:
    ike = sas.get(peer)
    return bool(
        ike
        and ike["state"] == "ESTABLISHED"
        and any(c["state"] == "INSTALLED" for c in ike["children"].values())
    )


def parse_ping(text: str) -> dict:
    """iputils ping summary -> {sent, received, loss_pct, rtt_avg_ms}."""
    out = {"sent": 0, "received": 0, "loss_pct": 100.0, "rtt_avg_ms": None}
    m = re.search(
        r"(\d+) packets transmitted, (\d+) (?:packets )?received.*?([\d.]+)% packet loss", text or ""
    )
    if m:
        out.update(sent=int(m.group(1)), received=int(m.group(2)), loss_pct=float(m.group(3)))
    m = re.search(r"= [\d.]+/([\d.]+)/[\d.]+/[\d.]+ ms", text or "")
    if m:
        out["rtt_avg_ms"] = float(m.group(1))
    return out


def judge(
    pairs: list, tunnels: dict, pings: dict, loss_warn_pct: float = 1.0, rtt_warn_ms: float = 100.0
) -> list:
    """One row per required pair, failures first.

    tunnels: {gateway: {peer: True|False}} (absent gateway = unknown). pings: {pair name: ping dict | None}.
    """
    rows = []
    for p in pairs:
        name, a, b = p["name"], p["a"], p["b"]
        ping = pings.get(name)
        ta = tunnels.get(a, {}).get(b)
        tb = tunnels.get(b, {}).get(a)
        reasons = []
        if ping is None:
            reasons.append("未执行连通性测试(无探测主机)")
        elif ping["received"] == 0:
            reasons.append("不通(100%丢包)")
        if ta is False:
            reasons.append(f"{a} 上到 {b} 的隧道未建立")
        if tb is False:
            reasons.append(f"{b} 上到 {a} 的隧道未建立")
        no_evidence = ping is None and ta is None and tb is None
        down = no_evidence or (ping is not None and ping["received"] == 0) or ta is False or tb is False
        status = "down" if down else "up"
        if (
            not down
            and ping
            and (ping["loss_pct"] >= loss_warn_pct or (ping["rtt_avg_ms"] or 0) >= rtt_warn_ms)
        ):
            status = "degraded"
            reasons.append(f"丢包 {ping['loss_pct']:g}% / 平均时延 {ping['rtt_avg_ms']} ms")
        rows.append(
            {
                "pair": name,
                "kind": p["kind"],
                "a": a,
                "b": b,
                "status": status,
                "loss_pct": None if ping is None else ping["loss_pct"],
                "rtt_avg_ms": None if ping is None else ping["rtt_avg_ms"],
                "tunnel_a": ta,
                "tunnel_b": tb,
                "reasons": reasons,
            }
        )
    order = {"down": 0, "degraded": 1, "up": 2}
    return sorted(rows, key=lambda r: (order[r["status"]], r["pair"]))


KIND_CN = {"province-city": "省-市", "city-county": "市-县", "province-county": "省-县", "extra": "附加"}
STATUS_CN = {"down": ("中断", "red"), "degraded": ("劣化", "amber"), "up": ("正常", "green")}


def _tun(v):
    return cell("未知", "grey") if v is None else (cell("已建立", "green") if v else cell("未建立", "red"))


def write(out_base: str, rows: list, generated_at: str | None = None) -> dict:
    """Write <out_base>.json (failures first) and the Chinese HTML/xlsx report."""
    d = os.path.dirname(out_base)
    if d:
        os.makedirs(d, exist_ok=True)
    summary = {s: sum(1 for r in rows if r["status"] == s) for s in ("down", "degraded", "up")}
    with open(out_base + ".json", "w", encoding="utf-8") as fh:
        json.dump(
            {"summary": summary, "pairs": rows, "generated_at": generated_at},
            fh,
            ensure_ascii=False,
            indent=2,
        )
    cols = [
        ("status", "状态"),
        ("pair", "链路"),
        ("kind", "类型"),
        ("tunnel_a", "A端隧道"),
        ("tunnel_b", "B端隧道"),
        ("loss", "丢包率"),
        ("rtt", "平均时延(ms)"),
        ("reasons", "说明"),
    ]
    table = []
    for r in rows:
        text, colour = STATUS_CN[r["status"]]
        table.append(
            {
                "status": cell(r["status"], colour, text),
                "pair": f"{r['a']} ↔ {r['b']}",
                "kind": KIND_CN.get(r["kind"], r["kind"]),
                "tunnel_a": _tun(r["tunnel_a"]),
                "tunnel_b": _tun(r["tunnel_b"]),
                "loss": "-" if r["loss_pct"] is None else f"{r['loss_pct']:g}%",
                "rtt": "-" if r["rtt_avg_ms"] is None else r["rtt_avg_ms"],
                "reasons": "；".join(r["reasons"]) or "-",
            }
        )
    sub = f"中断 {summary['down']} 条，劣化 {summary['degraded']} 条，正常 {summary['up']} 条（故障在前）"
    paths = write_report(
        out_base,
        "VPN 链路巡检报告",
        [{"title": "必需链路", "columns": cols, "rows": table}],
        subtitle=sub,
        generated_at=generated_at,
    )
    return {**paths, "json": out_base + ".json", "summary": summary}
