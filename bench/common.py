"""Shared plumbing for the benchmarks: throw-away databases, worker processes, percentiles.

Benchmarks talk to the same Postgres and Redis as the tests (SWITCHBOARD_TEST_POSTGRES_URL,
SWITCHBOARD_TEST_REDIS_URL; run `make services` first) and never to anything else.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg2
import redis
from psycopg2 import sql

PG_ADMIN_URL = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SWITCHBOARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 50 samples is the 50th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _admin(statement: sql.Composable) -> None:
    connection = psycopg2.connect(PG_ADMIN_URL)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


@contextmanager
def scratch_database(tag: str) -> Iterator[str]:
    """A fresh, migrated Postgres database, dropped afterwards; yields its URL."""
    from switchboard.db import migrate
    from switchboard.db.session import dispose_engines

    name = f"switchboard_bench_{tag}_{uuid.uuid4().hex[:6]}"
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        migrate.upgrade(url)
        yield url
    finally:
        dispose_engines()
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def flush_redis() -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()


def bench_env(database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        SWITCHBOARD_DATABASE_URL=database_url,
        SWITCHBOARD_BROKER_URL=REDIS_URL,
        SWITCHBOARD_DATA_DIR=str(data_dir),
        SWITCHBOARD_LOG_LEVEL="WARNING",
        # the offline rules, chosen explicitly (a provider without its key stops a worker)
        **{f"SWITCHBOARD_{agent}_PROVIDER": "offline" for agent in ("WATCHER", "ANALYST", "ADVISOR")},
        **overrides,
    )
    return env


class Processes:
    """Child processes (own process groups) that are all stopped on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "switchboard", *args],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        self.children.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def insight_row(severity: str, entity: str, now: dt.datetime, sla: dt.timedelta) -> dict[str, object]:
    """A new `proactive_insights` row for an ownerless deal (the alert payload included)."""
    key = f"bench:{uuid.uuid4().hex}"
    alert = {
        "kind": "hubspot_deal_without_owner", "source": "hubspot", "severity": severity,
        "title": f"Deal {entity} has no owner", "entity": {"source": "hubspot", "type": "deal", "id": entity},
        "dedupe_key": key, "detected_at": now.isoformat(),
    }  # fmt: skip
    return {
        "kind": alert["kind"], "source": "hubspot", "severity": severity, "title": alert["title"],
        "entity_type": "deal", "entity_id": entity, "payload": alert, "dedupe_key": key, "status": "new",
        "attempts": 0, "max_attempts": 3, "occurrences": 1, "created_at": now, "updated_at": now,
        "sla_deadline": now + sla, "next_attempt_at": now,
    }  # fmt: skip


class Sampler(threading.Thread):
    """Peak RSS (MB) of a process and its children, sampled every 100 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_s(self) -> float:
        total = 0.0
        for process in self.tree():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def rss_mb(self) -> float:
        rss = 0
        for process in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                rss += process.memory_info().rss
        return rss / 2**20

    def run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def stop(self) -> None:
        self._stop.set()
