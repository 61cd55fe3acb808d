"""Connections to the real test services, and database create/drop helpers."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg2
import pytest
import redis
from psycopg2 import sql

if TYPE_CHECKING:
    from tests.support.pgbouncer import PgBouncer

_HINT = "run the README's test command (`make test`), which starts Postgres and Redis"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _admin_connection(admin_url: str) -> psycopg2.extensions.connection:
    connection = psycopg2.connect(admin_url, connect_timeout=5)
    connection.autocommit = True
    return connection


def require_postgres(admin_url: str) -> None:
    """Fail (never skip) when Postgres does not answer."""
    try:
        _admin_connection(admin_url).close()
    except psycopg2.OperationalError as error:
        ci = " (CI=true)" if os.environ.get("CI") == "true" else ""
        pytest.fail(f"Postgres unreachable at {admin_url}{ci}: {error}; {_HINT}", pytrace=False)


def require_redis(url: str) -> redis.Redis:
    """A client for the test Redis; fails (never skips) when Redis does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis unreachable at {url}: {error}; {_HINT}", pytrace=False)
    return client


def _admin_execute(admin_url: str, statement: sql.Composable) -> None:
    connection = _admin_connection(admin_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def create_database(admin_url: str, name: str) -> None:
    _admin_execute(admin_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(admin_url: str, name: str) -> None:
    _admin_execute(admin_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class DatabaseFactory:
    """Makes throw-away Postgres databases; `cleanup` drops every one it made."""

    admin_url: str
    prefix: str
    through: PgBouncer | None = None  # the URLs it hands out reach the databases through this pooler
    created: list[str] = field(default_factory=list)

    def create(self) -> str:
        name = f"{self.prefix}_{uuid.uuid4().hex[:8]}"
        create_database(self.admin_url, name)
        self.created.append(name)
        url = self.admin_url.rsplit("/", 1)[0] + "/" + name
        return self.through.url(url) if self.through else url

    def cleanup(self) -> None:
        from switchboard.db.session import dispose_engines

        dispose_engines()
        for name in self.created:
            drop_database(self.admin_url, name)
        self.created.clear()
