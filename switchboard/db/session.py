"""Engines and sessions: one engine per process and URL, configured for the database kind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from switchboard.errors import Retryable
from switchboard.settings import get_settings

M = TypeVar("M")


class PoolExhausted(Retryable):
    """Every connection of the process's pool stayed busy for the pool timeout."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API, worker and beat processes read while one of them writes; the busy
    # timeout turns lock contention into a wait instead of "database is locked" errors.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def build_engine(url: str, *, autocommit: bool = False) -> Engine:
    """A new engine for ``url``; SQLite files get their directory created and WAL switched on.
    ``autocommit`` (PostgreSQL only) makes every statement its own transaction."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 defaults to psycopg 3; we ship psycopg2's binary wheel.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    settings = get_settings()
    size, overflow = settings.db_pool
    engine = create_engine(
        parsed, pool_size=size, max_overflow=overflow, pool_timeout=settings.db_pool_timeout_s, **options
    )
    event.listen(engine, "checkin", _mark_idle)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


# A pooled connection that sat idle may have been cut (a database restart, a failover, an idle
# timeout in a proxy): it is pinged before use. One in steady use is not — pinging every
# checkout (pool_pre_ping) costs a round trip per transaction on the agents' hot path — and if
# it was cut anyway, the error invalidates the pool and the callers' outage handling retries.
PING_AFTER_IDLE_S = 1.0


def _mark_idle(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
        return
    try:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # no transaction (and no BEGIN round trip) for the ping
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.autocommit = autocommit
    except Exception as error:  # the pool discards this connection and checks out a fresh one
        raise DisconnectionError(f"pooled connection was cut while idle ({type(error).__name__})") from error


_engines: dict[tuple[str, bool], Engine] = {}
_factories: dict[tuple[str, bool], sessionmaker[Session]] = {}


def get_engine(url: str | None = None, *, autocommit: bool = False) -> Engine:
    """The process-wide engine for ``url`` (default: the configured database)."""
    key = url or get_settings().database_url
    autocommit = autocommit and make_url(key).get_backend_name() == "postgresql"
    if (key, autocommit) not in _engines:
        _engines[key, autocommit] = build_engine(key, autocommit=autocommit)
    return _engines[key, autocommit]


@contextmanager
def session_scope(url: str | None = None, *, autocommit: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    ``autocommit=True`` (on PostgreSQL; elsewhere it is an ordinary session) runs each statement
    as its own transaction: no BEGIN and COMMIT round trips around it. For a single write, or
    reads that need not see one snapshot — never for several writes that must stand or fall
    together, nor for SELECT ... FOR UPDATE (the lock ends with the statement)."""
    key = url or get_settings().database_url
    if (key, autocommit) not in _factories:
        _factories[key, autocommit] = sessionmaker(bind=get_engine(key, autocommit=autocommit), expire_on_commit=False)
    session = _factories[key, autocommit]()
    try:
        yield session
        session.commit()
    except PoolTimeout as error:
        session.rollback()
        size, overflow = get_settings().db_pool
        raise PoolExhausted(
            f"no database connection free for {get_settings().db_pool_timeout_s:g} s ({size} pooled + {overflow} "
            "overflow, all in use): raise SWITCHBOARD_DB_POOL_SIZE / SWITCHBOARD_DB_MAX_OVERFLOW (within the "
            "database's connection limit) or lower SWITCHBOARD_WORKER_CONCURRENCY",
            retry_after_s=1.0,
        ) from error
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dialect_insert(session: Session) -> Any:
    """`insert` of the session's database dialect, with its ON CONFLICT clauses (PostgreSQL or SQLite)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def get_for_update(session: Session, model: type[M], key: Any) -> M | None:
    """``session.get(model, key)`` with the row locked until the transaction ends, on both
    databases. SQLite ignores FOR UPDATE, and its driver opens a transaction only at the first
    write: two writers (two worker threads, or the API beside a worker) would both read the same
    row and the later write would undo the earlier. There a no-op UPDATE of the row comes first,
    which takes the database's write lock (waiting out the busy timeout), so what is read next
    is the latest."""
    if session.get_bind().dialect.name == "sqlite":
        (column,) = inspect(model).primary_key
        session.execute(update(model).where(column == key).values({column.key: column}))
    return session.get(model, key, with_for_update=True)


def dispose_engines() -> None:
    """Close pooled connections and forget engines (after fork, or between test databases)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()


def database_unreachable(error: BaseException) -> bool:
    """True for errors that mean "the database is not there right now", not "the query is wrong"."""
    return isinstance(error, OperationalError | InterfaceError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )
