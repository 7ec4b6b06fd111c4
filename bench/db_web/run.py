#!/usr/bin/env python3
"""Before/after the database and web tuning, on lab hosts, in one run: pgbench against PostgreSQL 15 with
Debian's default settings and then with the role postgresql_server's settings; wrk against nginx as a
reverse proxy with Debian's default nginx.conf and then with the role web's configuration, then both back
to the defaults (A-B-A). Prints the figures and the ratios tuned / mean(default before, default after)
measured in this same run, with default after/before as the noise of the machine; asserts nothing.

    bench/db_web/run.py [--id 6] [--clients 8] [--seconds 30] [--scale 10] [--wrk-seconds 20] [--keep]

Hosts (bin/lab up --spec): prov-db01 (province_db) and web01 (web_app). pgbench runs on the database
host over the Unix socket (-c clients -j 2 -T seconds, TPC-B-like, same scale, tables re-initialised
before each run). wrk runs on web01 (-t 2 -c 64) against the proxy on 127.0.0.1:80 (port given: the lab
image has no /etc/services); the upstream is a static ~8 KiB JSON document served by a second nginx
server on 127.0.0.1:8080 (the same in both runs).
"Default" for the proxy is Debian's nginx.conf with the smallest proxy site (proxy_pass only).

Lab hosts are containers sharing this machine's CPUs with whatever else runs: compare only the ratios of
one run, never absolute figures across runs. Summary (Chinese): out/perf/db_web.html/.xlsx and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LAB = os.path.join(ROOT, "bin", "lab")
OUT = os.path.join(ROOT, "out", "perf")
SPEC = "hosts:\n  - {name: prov-db01, groups: [province_db]}\n  - {name: web01, groups: [web_app]}\n"
PGBIN = "/usr/lib/postgresql/15/bin"
APT = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"

BACKEND_CONF = """server {
    listen 127.0.0.1:8080;
    root /var/www/bench;
    location / { default_type application/json; }
}
"""
DEFAULT_PROXY_SITE = """server {
    listen 80 default_server;
    location / { proxy_pass http://127.0.0.1:8080; }
}
"""
PHASES = ("default", "tuned", "default2")
PG_DROPIN = "/etc/postgresql/15/main/conf.d/50-popdb.conf"
REVERT_NGINX = (
    "cp /root/nginx.conf.debian /etc/nginx/nginx.conf && rm -f /etc/nginx/sites-enabled/popdb && "
    "ln -sfn /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default && nginx -t && "
    "systemctl reload nginx && sleep 2"
)


class Lab:
    def __init__(self, lab_id: str, log):
        self.id = lab_id
        self.log = log
        self.env = dict(os.environ)
        self.env.update(
            PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + self.env.get("PATH", ""),
            ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
            POPDB_LAB_ID=str(lab_id),
            ANSIBLE_FACT_CACHING="memory",
            ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.timer",
        )
        self.ssh_config = os.path.join(ROOT, ".cache", "lab", str(lab_id), "ssh_config")

    def run(self, cmd: list[str], timeout: int = 900) -> str:
        self.log.write(f"$ {' '.join(cmd)}\n")
        self.log.flush()
        p = subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        self.log.write(p.stdout + p.stderr)
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(cmd)[:300]} — see {self.log.name}")
        return p.stdout

    def ssh(self, host: str, script: str, timeout: int = 900) -> str:
        return self.run(["ssh", "-F", self.ssh_config, host, script], timeout=timeout)

    def playbook(self, text: str, *extra: str) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=OUT, delete=False) as f:
            f.write(text)
        try:
            self.run(["ansible-playbook", f.name, *extra], timeout=1800)
        finally:
            os.unlink(f.name)


def pgbench(lab: Lab, args) -> dict:
    """Re-initialise at the same scale, checkpoint, then a fixed run; TPS and latency from pgbench."""
    pg = f"runuser -u postgres -- {PGBIN}"
    lab.ssh(
        "prov-db01",
        f"cd /tmp && {pg}/psql -XAtq -c 'DROP DATABASE IF EXISTS bench' -c 'CREATE DATABASE bench' && "
        f"{pg}/pgbench -i -q -s {args.scale} bench && "
        f"{pg}/psql -XAtq -d bench -c 'VACUUM ANALYZE' -c CHECKPOINT",
    )
    out = lab.ssh(
        "prov-db01",
        f"cd /tmp && {pg}/pgbench -n -c {args.clients} -j 2 -T {args.seconds} -P 5 bench",
        timeout=args.seconds + 300,
    )
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", out).group(1))
    lat = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    sd = re.search(r"latency stddev = ([\d.]+) ms", out)
    return {"tps": tps, "lat_ms": lat, "lat_sd_ms": float(sd.group(1)) if sd else None}


def pg_settings(lab: Lab) -> dict:
    names = [
        "shared_buffers",
        "effective_cache_size",
        "work_mem",
        "max_wal_size",
        "checkpoint_timeout",
        "random_page_cost",
        "effective_io_concurrency",
        "autovacuum_naptime",
        "autovacuum_vacuum_scale_factor",
    ]
    q = " ".join(f"-c 'SHOW {n}'" for n in names)
    vals = lab.ssh("prov-db01", f"cd /tmp && runuser -u postgres -- psql -XAtq {q}").split()
    return dict(zip(names, vals, strict=False))


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNIT[m.group(2)]


def _bytes(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)([KMG]?B)", text)
    return float(m.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[m.group(2)]


def wrk(lab: Lab, args, gzip: bool) -> dict:
    hdr = "-H 'Accept-Encoding: gzip'" if gzip else ""
    out = lab.ssh(
        "web01",
        f"wrk -t 2 -c 64 -d {args.wrk_seconds}s --latency {hdr} http://127.0.0.1:80/api.json",
        timeout=args.wrk_seconds + 120,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    xfer = _bytes(re.search(r"Transfer/sec:\s+(\S+)", out).group(1))
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "bytes_per_req": xfer / rps,
        "non2xx": int(errs.group(1)) if errs else 0,
    }


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if runs[0][k] is not None}


def baseline(res: dict) -> dict:
    """Default figures = mean of the runs before and after the tuned one (A-B-A: drift cancels out)."""
    keys = {k.rsplit("_", 1)[0] for k in res}
    return {
        k: {m: (res[f"{k}_default"][m] + res[f"{k}_default2"][m]) / 2 for m in res[f"{k}_default"]}
        for k in keys
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", default=os.environ.get("POPDB_LAB_ID", "6"))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--wrk-seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1, help="repeat each measurement and keep the median")
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep hosts a previous run left up before its tuned phase (the roles not applied yet)",
    )
    args = ap.parse_args()

    os.makedirs(OUT, exist_ok=True)
    t_start = time.monotonic()
    load_before = os.getloadavg()
    with open(os.path.join(OUT, "db_web.log"), "w", encoding="utf-8") as log:
        lab = Lab(args.id, log)
        spec = os.path.join(OUT, "db_web-lab-spec.yml")
        with open(spec, "w", encoding="utf-8") as fh:
            fh.write(SPEC)
        if not args.reuse:
            lab.run([LAB, "down", "--id", str(args.id)])
        lab.run([LAB, "up", "--spec", spec, "--id", str(args.id)])
        print("lab up; installing PostgreSQL 15 (Debian defaults), nginx and wrk", flush=True)
        lab.ssh(
            "prov-db01",
            f"apt-get update -qq && {APT} postgresql-15 >/dev/null",
        )
        doc = json.dumps(
            {"rows": [{"region": "420100", "name": "population record", "n": i} for i in range(120)]}
        )
        lab.ssh(
            "web01",
            f"apt-get update -qq && {APT} nginx wrk >/dev/null && "
            f"mkdir -p /var/www/bench && printf '%s' '{doc}' > /var/www/bench/api.json && "
            f"printf '%s' '{BACKEND_CONF}' > /etc/nginx/conf.d/bench-backend.conf && "
            f"printf '%s' '{DEFAULT_PROXY_SITE}' > /etc/nginx/sites-available/default && "
            "cp -n /etc/nginx/nginx.conf /root/nginx.conf.debian && "
            "nginx -t && systemctl reload nginx && "
            "for i in $(seq 20); do sleep 0.5; python3 -c 'import urllib.request as u; "
            'u.urlopen("http://127.0.0.1/api.json").read()\' 2>/dev/null && exit 0; done; exit 1',
        )

        res: dict[str, dict] = {}
        settings: dict[str, dict] = {}
        for phase in PHASES:
            if phase == "default2":
                print("back to the Debian defaults", flush=True)
                lab.ssh("prov-db01", f"rm -f {PG_DROPIN} && systemctl restart postgresql@15-main")
                lab.ssh("web01", REVERT_NGINX)
            if phase == "tuned":
                print("applying roles postgresql_server and web", flush=True)
                lab.playbook(
                    "- hosts: prov-db01\n  become: true\n  roles: [postgresql_server]\n"
                    "- hosts: web01\n  become: true\n  roles: [web]\n"
                    "  vars:\n    web_backends: ['127.0.0.1:8080']\n"
                )
                nginx_conf = lab.ssh(
                    "web01",
                    "nginx -T 2>/dev/null | grep -E 'worker_processes|worker_connections|keepalive|gzip on'",
                )
            settings[phase] = pg_settings(lab)
            res[f"pg_{phase}"] = median_of([pgbench(lab, args) for _ in range(args.rounds)])
            print(f"pgbench {phase}: {res[f'pg_{phase}']}", flush=True)
            for gz in (False, True):
                key = f"wrk{'_gzip' if gz else ''}_{phase}"
                res[key] = median_of([wrk(lab, args, gz) for _ in range(args.rounds)])
                print(f"wrk {'gzip' if gz else 'plain'} {phase}: {res[key]}", flush=True)
        if not args.keep:
            lab.run([LAB, "down", "--id", str(args.id)])
    load_after = os.getloadavg()

    print("\n".join(summary_lines(args, res, load_before, load_after, time.monotonic() - t_start)))
    data = {
        "args": vars(args),
        "results": res,
        "pg_settings": settings,
        "nginx_tuned": nginx_conf,
        "load": [load_before, load_after],
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }
    with open(os.path.join(OUT, "db_web.json"), "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
    write_summary(args, res, settings, load_before, load_after)


def summary_lines(args, res: dict, load_before, load_after, elapsed: float) -> list[str]:
    base = baseline(res)

    def ratio(key, metric):
        return res[f"{key}_tuned"][metric] / base[key][metric]

    def drift(key, metric):
        return res[f"{key}_default2"][metric] / res[f"{key}_default"][metric]

    lines = [
        f"pgbench -c {args.clients} -j 2 -T {args.seconds} -s {args.scale} (TPC-B-like), "
        f"rounds {args.rounds}",
        *(
            f"  {ph:9s} {res['pg_' + ph]['tps']:.0f} tps, {res['pg_' + ph]['lat_ms']:.2f} ms avg"
            for ph in PHASES
        ),
        f"  tuned/mean(default, default2): tps x{ratio('pg', 'tps'):.2f}, "
        f"latency x{ratio('pg', 'lat_ms'):.2f}  (noise: default2/default tps x{drift('pg', 'tps'):.2f})",
    ]
    for key, label in (("wrk", "plain"), ("wrk_gzip", "Accept-Encoding: gzip")):
        lines.append(f"wrk -t2 -c64 -d{args.wrk_seconds}s, {label}")
        for ph in PHASES:
            d = res[f"{key}_{ph}"]
            lines.append(
                f"  {ph:9s} {d['rps']:.0f} req/s, p99 {d['p99_ms']:.2f} ms, {d['bytes_per_req']:.0f} B/req"
            )
        lines.append(
            f"  tuned/mean(default, default2): req/s x{ratio(key, 'rps'):.2f}, "
            f"p99 x{ratio(key, 'p99_ms'):.2f}, bytes/req x{ratio(key, 'bytes_per_req'):.2f}  "
            f"(noise: default2/default req/s x{drift(key, 'rps'):.2f})"
        )
    lines.append(
        f"machine load average before/after: {load_before[0]:.2f}/{load_after[0]:.2f} "
        f"on {os.cpu_count()} CPUs "
        f"(shared machine; compare ratios, not absolute figures); total {elapsed:.0f} s"
    )
    return lines


def write_summary(args, res, settings, load_before, load_after) -> None:
    import ansible.module_utils

    ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))
    from ansible.module_utils.popdb_report import cell, write_report

    def st(r: float, higher_better: bool) -> str:
        good = r >= 1.0 if higher_better else r <= 1.0
        return "green" if good else ("amber" if abs(r - 1.0) < 0.1 else "red")

    base = baseline(res)

    def row(name, metric, unit, key, higher_better, fmt="{:.1f}"):
        d1, t, d2 = (res[f"{key}_{ph}"][metric] for ph in PHASES)
        r = t / base[key][metric]
        return {
            "m": name,
            "d1": f"{fmt.format(d1)} {unit}",
            "t": f"{fmt.format(t)} {unit}",
            "d2": f"{fmt.format(d2)} {unit}",
            "r": cell(round(r, 2), st(r, higher_better), f"×{r:.2f}"),
            "n": f"×{d2 / d1:.2f}",
        }

    cols = [
        ("m", "指标"),
        ("d1", "默认配置（前）"),
        ("t", "调优后"),
        ("d2", "默认配置（后）"),
        ("r", "调优/默认均值"),
        ("n", "噪声：后/前"),
    ]
    sections = [
        {
            "title": f"PostgreSQL 15：pgbench（-c {args.clients} -j 2 -T {args.seconds}，规模 {args.scale}）",
            "note": "默认配置 = Debian 安装后的设置；调优后 = postgresql_server 角色"
            "（按内存与职能计算的内存、WAL、检查点、I/O 与自动清理参数）。"
            "每次测试前重新初始化同规模数据。顺序为 默认→调优→恢复默认，"
            "以前后两次默认值的均值为基线；“噪声”列为两次默认值之比，偏离 1 越多说明机器负载波动越大。",
            "columns": cols,
            "rows": [
                row("每秒事务数 TPS", "tps", "", "pg", True, "{:.0f}"),
                row("平均延迟", "lat_ms", "ms", "pg", False, "{:.2f}"),
            ],
        },
        {
            "title": "参数对比",
            "columns": [("k", "参数"), ("d", "默认配置"), ("t", "调优后")],
            "rows": [
                {"k": k, "d": settings["default"].get(k), "t": settings["tuned"].get(k)}
                for k in settings["tuned"]
            ],
        },
    ]
    for key, label in (("wrk", "未压缩请求"), ("wrk_gzip", "请求带 Accept-Encoding: gzip")):
        sections.append(
            {
                "title": f"nginx 反向代理：wrk（-t 2 -c 64 -d {args.wrk_seconds}s），{label}",
                "note": "默认配置 = Debian 的 nginx.conf 加最简代理站点；"
                "调优后 = web 角色（按 CPU 数的 worker、上游长连接、gzip、超时）。"
                "上游为同机 127.0.0.1:8080 的静态 JSON（约 8 KiB）。",
                "columns": cols,
                "rows": [
                    row("每秒请求数", "rps", "", key, True, "{:.0f}"),
                    row("P50 延迟", "p50_ms", "ms", key, False, "{:.2f}"),
                    row("P99 延迟", "p99_ms", "ms", key, False, "{:.2f}"),
                    row("每请求传输字节", "bytes_per_req", "B", key, False, "{:.0f}"),
                ],
            }
        )
    sections.append(
        {
            "title": "测试环境说明",
            "columns": [("k", "项目"), ("v", "说明")],
            "rows": [
                {"k": "主机", "v": "实验室容器 prov-db01、web01（systemd-nspawn），与其他任务共用本机 CPU"},
                {"k": "CPU", "v": f"{os.cpu_count()} 核（共享）"},
                {"k": "负载", "v": f"开始 {load_before[0]:.2f}，结束 {load_after[0]:.2f}（1 分钟平均）"},
                {
                    "k": "解读",
                    "v": "机器负载会波动：只比较同一次运行中的比值，不比较不同运行的绝对数值；不作性能断言。",
                },
            ],
        }
    )
    paths = write_report(os.path.join(OUT, "db_web"), "数据库与 Web 层调优前后性能对比", sections, mask=False)
    print(f"summary: {paths['html']}")


if __name__ == "__main__":
    main()
