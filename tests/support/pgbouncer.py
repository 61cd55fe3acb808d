"""A real PgBouncer (Debian's `pgbouncer`, which `scripts/ensure-services.sh` installs) in
transaction mode in front of the test Postgres: the shape of Supabase's transaction pooler
(port 6543). Each transaction may run on a different server connection, so nothing may rely
on session state: SET, session advisory locks, prepared statements, temporary tables.

`SWITCHBOARD_TEST_POOLER=pgbouncer` routes the suite's Postgres databases through one
(`make pytest-pooler`); `tests/integration/test_pooler.py` starts its own either way."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from tests.support.services import free_port

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/users.txt
admin_users = {user}
pool_mode = transaction
max_client_conn = 2000
default_pool_size = {pool_size}
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


@dataclass
class PgBouncer:
    """One PgBouncer process; `url(direct)` is the same database through it."""

    port: int
    user: str
    directory: Path
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, upstream_url: str, pool_size: int = 40) -> PgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            pytest.fail(
                "pgbouncer is not installed: run `make test` (scripts/ensure-services.sh installs Debian's pgbouncer)",
                pytrace=False,
            )
        upstream = make_url(upstream_url)
        user = upstream.username or "postgres"
        directory = Path(tempfile.mkdtemp(prefix="switchboard-pgbouncer-"))
        port = free_port()
        (directory / "users.txt").write_text(f'"{user}" ""\n')
        settings = {"host": upstream.host or "127.0.0.1", "port": upstream.port or 5432, "listen": port,
                    "dir": directory, "user": user, "pool_size": pool_size}  # fmt: skip
        (directory / "pgbouncer.ini").write_text(CONFIG.format(**settings))
        argv = [binary]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root: it drops to the database's user
            run_as = "postgres"
            pwd.getpwnam(run_as)
            shutil.chown(directory, run_as)
            for child in directory.iterdir():
                shutil.chown(child, run_as)
            argv += ["-u", run_as]
        # its log goes to its logfile
        process = subprocess.Popen([*argv, str(directory / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        bouncer = cls(port, user, directory, process)
        deadline = time.monotonic() + 15
        while True:
            try:
                bouncer.admin("SHOW VERSION")
                return bouncer
            except psycopg2.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "pgbouncer.log").read_text() if (directory / "pgbouncer.log").exists() else ""
                    bouncer.stop()
                    pytest.fail(f"pgbouncer did not start: {log[-2000:]}", pytrace=False)
                time.sleep(0.1)

    def url(self, direct_url: str) -> str:
        """`direct_url`'s database through this PgBouncer."""
        parsed = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        return parsed.render_as_string(hide_password=False)

    def admin(self, command: str) -> list[dict[str, object]]:
        """A command on PgBouncer's admin console (`SHOW STATS`, `SHOW POOLS`, …)."""
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="pgbouncer",
                                      connect_timeout=3)  # fmt: skip
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(command)
                names = [c.name for c in cursor.description or []]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()] if names else []
        finally:
            connection.close()

    def transactions(self, database: str) -> int:
        """Transactions PgBouncer has pooled for `database` so far."""
        return sum(int(str(row["total_xact_count"])) for row in self.admin("SHOW STATS") if row["database"] == database)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
