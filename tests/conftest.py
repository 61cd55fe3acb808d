"""Test harness: real Postgres, real Redis, an in-process Celery worker on private queues.

The environment is set before `switchboard` is imported, so the module-level settings and
Celery app of this process point at the test services. Under CI=true (and, for honesty,
everywhere) a missing service fails the test loudly; nothing is skipped.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SESSION_TAG = uuid.uuid4().hex[:8]
PG_ADMIN_URL = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_DB_NAME = f"switchboard_test_{SESSION_TAG}"
DATA_DIR = Path(tempfile.mkdtemp(prefix=f"switchboard-test-{SESSION_TAG}-"))


def _database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


# Hermetic: no key or URL from the developer's shell leaks into the tests.
for _name in list(os.environ):
    if _name.startswith("SWITCHBOARD_") and not _name.startswith("SWITCHBOARD_TEST_"):
        del os.environ[_name]
for _name in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
    os.environ.pop(_name, None)
for _name in [name for name in os.environ if name.startswith("OTEL_")]:  # traces stay off unless a test sets them
    del os.environ[_name]
os.environ.update(
    {
        "SWITCHBOARD_DATABASE_URL": _database_url(PG_ADMIN_URL, TEST_DB_NAME),
        "SWITCHBOARD_BROKER_URL": REDIS_URL,
        "SWITCHBOARD_QUEUE_PREFIX": f"t{SESSION_TAG}.",
        "SWITCHBOARD_DATA_DIR": str(DATA_DIR),
        # no silent fallback: the offline rules are chosen, as a deployment must choose them
        **{f"SWITCHBOARD_{agent}_PROVIDER": "offline" for agent in ("WATCHER", "ANALYST", "ADVISOR")},
    }
)

from tests.support import services  # noqa: E402
from tests.support.pgbouncer import PgBouncer  # noqa: E402

# `make pytest-pooler`: every Postgres database the tests use is reached through PgBouncer in
# transaction mode (Supabase's port-6543 shape); creating and dropping them stays direct.
POOLER = PgBouncer.start(PG_ADMIN_URL) if os.environ.get("SWITCHBOARD_TEST_POOLER") == "pgbouncer" else None
if POOLER is not None:
    os.environ["SWITCHBOARD_DATABASE_URL"] = POOLER.url(_database_url(PG_ADMIN_URL, TEST_DB_NAME))


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The maintenance database URL; fails the session loudly when Postgres is unreachable."""
    services.require_postgres(PG_ADMIN_URL)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def database_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh Postgres database for this test session, migrated to head, dropped at the end."""
    from switchboard.db import migrate
    from switchboard.db.session import dispose_engines

    url = _database_url(postgres_admin_url, TEST_DB_NAME)
    services.create_database(postgres_admin_url, TEST_DB_NAME)
    if POOLER is not None:
        url = POOLER.url(url)
    migrate.upgrade(url)
    yield url
    dispose_engines()
    if POOLER is not None:  # the run went through the pooler, not around it
        assert POOLER.transactions(TEST_DB_NAME) > 0, POOLER.admin("SHOW STATS")
    services.drop_database(postgres_admin_url, TEST_DB_NAME)


@pytest.fixture(autouse=True)
def _empty_session_database(request: pytest.FixtureRequest) -> None:
    """Every test that uses the session database starts with every table empty."""
    if "database_url" in request.fixturenames:
        from tests.support.runs import empty_tables

        empty_tables(request.getfixturevalue("database_url"))


@pytest.fixture()
def pg_database_factory(postgres_admin_url: str) -> Iterator[services.DatabaseFactory]:
    """Creates extra empty Postgres databases on demand and drops them after the test."""
    factory = services.DatabaseFactory(postgres_admin_url, prefix=f"switchboard_t{SESSION_TAG}", through=POOLER)
    yield factory
    factory.cleanup()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The test Redis database: flushed before and after the session."""
    client = services.require_redis(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def celery_worker(database_url: str, redis_url: str) -> Iterator[object]:
    """An in-process Celery worker (threads pool, 16 threads) consuming this session's four queues."""
    from celery.contrib.testing.worker import start_worker

    from switchboard.celery_app import app
    from switchboard.settings import get_settings

    with start_worker(
        app,
        pool="threads",
        concurrency=16,  # as agent queues run in production: the suite's runs overlap on threads
        queues=get_settings().all_queues,
        perform_ping_check=False,
        shutdown_timeout=30.0,
        loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture()
def data_dir() -> Path:
    return DATA_DIR


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(DATA_DIR, ignore_errors=True)
    if POOLER is not None:
        POOLER.stop()
