#!/usr/bin/env python3
"""乡镇终端 VPN 自检 (grassroots PC self-check): address, route, tunnel, target - in plain words.

Usage:  python vpn_selfcheck.py [--config 本乡镇配置.json]
The JSON (generated per township by playbooks/vpn_client_help.yml) holds: subnet (the PC's expected
network), gateway (the county gateway's LAN address), tunnel_probe (an address on the far side of the
tunnel: the province gateway's LAN address), target_host/target_port (the population system).
Standard library only; works on Windows and Linux. Exit code: 0 all fine, else the number of the first
failed step (1 address, 2 route, 3 tunnel, 4 target).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import socket
import subprocess
import sys

STEPS = ("本机地址", "路由", "VPN隧道", "目标系统")


def local_address_towards(host: str) -> str | None:
    """The local address the OS would use to reach host (no packet is sent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((host, 9))
        return s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()


def ping(host: str, timeout_s: int = 2) -> bool:
    if platform.system().lower() == "windows":
        cmd = ["ping", "-n", "2", "-w", str(timeout_s * 1000), host]
    else:
        cmd = ["ping", "-n", "-c", "2", "-W", str(timeout_s), host]
    try:
        return (
            subprocess.run(cmd, capture_output=True, timeout=timeout_s * 3 + 2, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def tcp_open(host: str, port: int, timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def run(cfg: dict, out=print) -> int:
    subnet = ipaddress.ip_network(cfg["subnet"], strict=False)
    target, port = cfg["target_host"], int(cfg["target_port"])
    out(f"== {cfg.get('township', '')} VPN 自检 ==")

    addr = local_address_towards(target)
    if addr is None or ipaddress.ip_address(addr) not in subnet:
        out(f"[1 {STEPS[0]}] 失败：本机地址是 {addr or '无'}，应在 {subnet} 内。")
        gw = cfg["gateway"]
        out(f"    请把本机 IP 设为 {subnet} 中分配给您的地址，子网掩码 {subnet.netmask}，网关 {gw}。")
        return 1
    out(f"[1 {STEPS[0]}] 通过：本机地址 {addr}")

    if not ping(cfg["gateway"]):
        out(f"[2 {STEPS[1]}] 失败：连不上本地网关 {cfg['gateway']}。")
        out("    请检查网线/交换机，确认默认网关填写正确；仍不行请联系县级运维。")
        return 2
    out(f"[2 {STEPS[1]}] 通过：本地网关 {cfg['gateway']} 可达")

    if not ping(cfg["tunnel_probe"]):
        out(f"[3 {STEPS[2]}] 失败：本地网关正常，但到省级网络 ({cfg['tunnel_probe']}) 不通。")
        out("    这是县到省的 VPN 隧道问题，不是您电脑的问题。请联系县级/市级运维，告知本乡镇名称和本报告。")
        return 3
    out(f"[3 {STEPS[2]}] 通过：VPN 隧道畅通 ({cfg['tunnel_probe']})")

    if not tcp_open(target, port):
        out(f"[4 {STEPS[3]}] 失败：网络通，但人口信息系统 {target}:{port} 没有响应。")
        out("    请稍后再试；若持续失败请联系省级运维（可能是系统维护或防火墙限制）。")
        return 4
    out(f"[4 {STEPS[3]}] 通过：人口信息系统 {target}:{port} 可以访问。全部正常。")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="乡镇终端 VPN 自检")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--config", default=os.path.join(here, "vpn_selfcheck.json"))
    args = ap.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"读不到配置文件 {args.config}：{exc}")
        return 9
    return run(cfg)


if __name__ == "__main__":
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    raise SystemExit(main())
