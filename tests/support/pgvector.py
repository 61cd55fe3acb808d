"""A real PostgreSQL with pgvector for the tests, from PyPI: the `pgserver` wheel bundles
PostgreSQL 16 with the `vector` extension (Debian bookworm packages pgvector for no PostgreSQL
it ships). We use only its binaries — initdb and pg_ctl on a throw-away data directory and a
free port — not its Python server manager. As root, the server runs as the `postgres` user
(PostgreSQL refuses root)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from tests.support.services import free_port


def _bin() -> Path:
    # found, not imported: its server manager (which we do not use) warns at import
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("pgserver is not installed: run `make install` (it is a dev dependency)", pytrace=False)
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class VectorPostgres:
    port: int
    directory: Path
    as_user: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls) -> VectorPostgres:
        binaries = _bin()
        directory = Path(tempfile.mkdtemp(prefix="switchboard-pgvector-"))
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        port = free_port()
        data = directory / "data"
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "--no-sync"], check=True, capture_output=True)  # fmt: skip
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        started = subprocess.run(
            [*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"),
             "-w", "-t", "60", "start"],
            capture_output=True, text=True,
        )  # fmt: skip
        server = cls(port, directory, as_user)
        if started.returncode != 0:
            log = (directory / "log").read_text() if (directory / "log").exists() else ""
            server.stop()
            pytest.fail(f"the pgvector Postgres did not start: {started.stderr}{log[-2000:]}", pytrace=False)
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(server.admin_url, connect_timeout=2).close()
                return server
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*self.as_user, str(_bin() / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)  # fmt: skip
        shutil.rmtree(self.directory, ignore_errors=True)
