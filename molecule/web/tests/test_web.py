"""Web tier on real lab hosts: nginx (role web) on web01 in front of the stand-in application on
127.0.0.1:8080 (prepare.yml), PostgreSQL tuning (role postgresql_server) on prov-db01.

Everything is read from the running hosts: nginx's own config test and dump, the worker processes and
their limits, real requests through the proxy (keepalive, gzip, timeouts) and a TLS login to the database
from the web host as the application role.
"""

from __future__ import annotations

import json
import os
import re

import testinfra.utils.ansible_runner

INV = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INV)
testinfra_hosts = ["web01"]


def _h(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INV}")


WEB, DB = _h("web01"), _h("prov-db01")
URL = "http://127.0.0.1/"


def _directive(conf: str, name: str) -> str:
    m = re.search(rf"^\s*{name}\s+([^;]+);", conf, re.M)
    assert m, f"{name} not in nginx -T"
    return m.group(1)


def _conf() -> str:
    return WEB.check_output("nginx -T 2>/dev/null")


def test_nginx_config_valid_and_site_enabled():
    r = WEB.run("nginx -t")
    assert r.rc == 0 and "test is successful" in r.stderr, r.stderr
    assert WEB.service("nginx").is_running and WEB.service("nginx").is_enabled
    assert WEB.file("/etc/nginx/sites-enabled/popdb").is_symlink
    assert not WEB.file("/etc/nginx/sites-enabled/default").exists
    assert "# Ansible managed" in WEB.file("/etc/nginx/nginx.conf").content_string or "role web" in (
        WEB.file("/etc/nginx/nginx.conf").content_string
    )


def test_workers_follow_the_host_facts():
    conf = _conf()
    vcpus = int(WEB.check_output("nproc --all"))
    assert int(_directive(conf, "worker_processes")) == min(vcpus, 16)
    workers = WEB.check_output("ps -C nginx -o pid=,args= | awk '/worker process/ {print $1}'").split()
    assert len(workers) == min(vcpus, 16)
    assert _directive(conf, "worker_connections") == "4096"
    # 2 descriptors per proxied request (client + upstream) + slack, and the running workers have it
    assert _directive(conf, "worker_rlimit_nofile") == str(4096 * 2 + 1024)
    limits = WEB.check_output(f"cat /proc/{workers[0]}/limits")
    assert re.search(r"Max open files\s+9216\s+9216", limits), limits


def test_proxy_answers_and_keeps_connections_alive():
    # five requests on one client connection: curl reuses it, and nginx reuses one upstream connection
    out = WEB.check_output(f"curl -sv -w '\\n' {URL}small {URL}small {URL}small {URL}small {URL}small 2>&1")
    assert out.count("Re-using existing connection") == 4, out
    assert out.count("< HTTP/1.1 200 OK") == 5
    docs = [json.loads(m) for m in re.findall(r'\{"peer_port": \d+, "conn_request": \d+\}', out)]
    assert len(docs) == 5
    assert len({d["peer_port"] for d in docs}) == 1, docs  # one upstream connection for all five
    counts = [d["conn_request"] for d in docs]
    assert counts == sorted(counts) and counts[-1] - counts[0] == 4, counts
    conf = _conf()
    assert _directive(conf, "keepalive") == "64"
    assert _directive(conf, "keepalive_timeout") == "65"
    assert _directive(conf, "proxy_http_version") == "1.1"


def test_gzip_compresses_large_answers_only():
    big = WEB.check_output(f"curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' {URL}")
    assert re.search(r"^Content-Encoding: gzip", big, re.M | re.I), big
    assert re.search(r"^Vary: Accept-Encoding", big, re.M | re.I), big
    small = WEB.check_output(f"curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' {URL}small")
    assert not re.search(r"^Content-Encoding", small, re.M | re.I), small  # below gzip_min_length 1024
    plain = int(WEB.check_output(f"curl -s -o /dev/null -w '%{{size_download}}' {URL}"))
    packed = int(
        WEB.check_output(f"curl -s -o /dev/null -w '%{{size_download}}' -H 'Accept-Encoding: gzip' {URL}")
    )
    assert plain > 4096 and packed < plain / 4, (plain, packed)
    rows = json.loads(WEB.check_output(f"curl -s --compressed {URL}"))["rows"]
    assert len(rows) == 120


def test_upstream_timeouts_as_configured():
    conf = _conf()
    assert _directive(conf, "proxy_read_timeout") == "3s"  # the scenario's value (converge.yml)
    assert _directive(conf, "proxy_connect_timeout") == "5s"
    assert _directive(conf, "proxy_send_timeout") == "60s"
    ok = WEB.check_output(f"curl -s -o /dev/null -w '%{{http_code}} %{{time_total}}' '{URL}slow?s=1'").split()
    assert ok[0] == "200"
    late = WEB.check_output(
        f"curl -s -o /dev/null -w '%{{http_code}} %{{time_total}}' '{URL}slow?s=8'"
    ).split()
    assert late[0] == "504" and 2.5 < float(late[1]) < 7, late  # nginx gives up after 3 s, not 8


def test_upstream_down_is_a_clean_502():
    WEB.check_output("systemctl stop popdb-standin-app")
    try:
        code = WEB.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {URL}small")
        assert code == "502"
    finally:
        WEB.check_output("systemctl start popdb-standin-app")
    for _ in range(20):
        if WEB.run(f"curl -sf -o /dev/null {URL}small").rc == 0:
            break
        WEB.run("sleep 0.5")
    assert WEB.run(f"curl -sf -o /dev/null {URL}small").rc == 0


def _show(name: str) -> str:
    r = DB.run("runuser -u postgres -- psql -XAtq -c %s", f"SHOW {name}")
    assert r.rc == 0, r.stderr
    return r.stdout.strip()


def test_database_autovacuum_and_io_tuning():
    assert _show("autovacuum") == "on"
    assert _show("autovacuum_max_workers") == "4"  # province profile
    assert _show("autovacuum_naptime") == "30s"
    assert _show("autovacuum_vacuum_scale_factor") == "0.05"
    assert _show("autovacuum_vacuum_cost_limit") == "1000"
    assert _show("effective_io_concurrency") == "200"  # ssd
    assert _show("random_page_cost") == "1.1"
    assert _show("shared_buffers") == "512MB"  # 25 % of the lab's 2048 MiB


def test_web_host_reaches_the_database_as_the_application():
    v = RUNNER.get_variables("web01")
    addr = RUNNER.get_variables("prov-db01")["ansible_host"]
    ca = DB.file("/etc/postgresql/15/main/root.crt").content_string.strip()
    WEB.check_output(f"cat > /root/root.crt <<'EOF'\n{ca}\nEOF")
    conn = (
        f"host=prov-db01 hostaddr={addr} dbname=popdb sslmode=verify-full sslrootcert=/root/root.crt "
        "connect_timeout=5"
    )
    who = "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"
    r = WEB.run(
        "PGPASSWORD=%s psql -XAtq %s -c %s",
        v["vault_postgresql_app_password"],
        f"{conn} user=popdb_app",
        who,
    )
    assert r.rc == 0 and r.stdout.strip() == "popdb_app|t", r.stderr
    # least privilege: the reporting role has no pg_hba entry from the web hosts
    r = WEB.run(
        "PGPASSWORD=%s psql -XAtq %s -c 'select 1'",
        v["vault_postgresql_report_password"],
        f"{conn} user=popdb_report",
    )
    assert r.rc != 0 and "no pg_hba.conf entry" in r.stderr, r.stderr
