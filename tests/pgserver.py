"""A throw-away PostgreSQL 15 cluster for tests: Debian's server binaries, loopback only.

Used by the data-engine and region-change tests (real PostgreSQL, never mocks).
`make test` / `.ci/run` install postgresql-15 through apt; when the binaries are missing the
tests that need them fail with a clear message instead of skipping silently.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

PG_BIN = os.environ.get("POPDB_PG_BIN", "/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    datadir: str
    port: int
    user: str = "postgres"
    host: str = "127.0.0.1"
    _run_as: list[str] = field(default_factory=list)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        subprocess.run(
            [*self._run_as, f"{PG_BIN}/pg_ctl", "-D", self.datadir, "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(os.path.dirname(self.datadir), ignore_errors=True)


def start_server() -> PgServer:
    if not os.path.exists(f"{PG_BIN}/initdb"):
        raise RuntimeError(
            f"PostgreSQL server binaries not found in {PG_BIN}: run `make setup` (apt postgresql-15)"
        )
    base = tempfile.mkdtemp(prefix="popdb-pg-")
    datadir = os.path.join(base, "data")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres OS user
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [
            *run_as,
            f"{PG_BIN}/initdb",
            "-D",
            datadir,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    opts = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB -c max_wal_size=4GB"
    )
    subprocess.run(
        [
            *run_as,
            f"{PG_BIN}/pg_ctl",
            "-D",
            datadir,
            "-o",
            opts,
            "-l",
            os.path.join(base, "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    server = PgServer(datadir=datadir, port=port, _run_as=run_as)
    deadline = time.monotonic() + 30
    import psycopg

    while True:
        try:
            psycopg.connect(server.dsn()).close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
