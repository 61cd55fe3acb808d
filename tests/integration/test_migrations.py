"""Migrations: same schema on PostgreSQL and SQLite, idempotent, reversible, matching the models."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from switchboard.db import migrate
from switchboard.db.models import AgentRun, Base, ProactiveInsight, SourceRecord
from switchboard.db.session import get_engine, session_scope
from tests.support.services import DatabaseFactory

EXPECTED_TABLES = {
    "knowledge_base",
    "agent_conversations",
    "agent_decisions",
    "proactive_insights",
    "agent_context",
    "events",
    "agent_runs",
    "agent_steps",
    "backfill_jobs",
    "eval_runs",
    "eval_results",
    "approvals",
    "action_executions",
    "source_records",
    "dead_letters",
    "entity_links",
    "switchboard_adopted",
}


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    factory: DatabaseFactory = request.getfixturevalue("pg_database_factory")
    yield factory.create()


def _tables(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_table_names()) - {"alembic_version"}


def _views(url: str) -> set[str]:
    return set(inspect(get_engine(url)).get_view_names())


def test_upgrade_creates_every_table_and_the_view(empty_database: str) -> None:
    assert migrate.upgrade(empty_database) == (None, migrate.head_revision())
    assert _tables(empty_database) == EXPECTED_TABLES
    assert "recent_agent_runs" in _views(empty_database)


def test_migrations_match_the_models(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    with get_engine(empty_database).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgrade_twice_is_a_noop_and_downgrade_reverses(empty_database: str) -> None:
    head = migrate.head_revision()
    migrate.upgrade(empty_database)
    assert migrate.upgrade(empty_database) == (head, head)
    assert migrate.downgrade(empty_database, "base") == (head, None)
    assert _tables(empty_database) == set()
    assert _views(empty_database) == set()
    assert migrate.upgrade(empty_database) == (None, head)
    assert _tables(empty_database) == EXPECTED_TABLES


def test_cli_migrate_twice_is_a_noop_the_second_time(empty_database: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "SWITCHBOARD_DATABASE_URL": empty_database, "HOME": str(tmp_path)}

    def run() -> str:
        result = subprocess.run(
            [sys.executable, "-m", "switchboard", "migrate"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    head = migrate.head_revision()
    assert f"migrated from base to {head}" in run()
    with get_engine(empty_database).connect() as connection:
        before = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert f"already at {head}: nothing to do" in run()
    with get_engine(empty_database).connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == before


def test_recent_agent_runs_view_shows_the_last_50_newest_first(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with session_scope(empty_database) as session:
        for index in range(60):
            session.add(
                AgentRun(
                    id=f"run-{index:03d}",
                    agent="advisor",
                    task="watch_analyze_advise",
                    insight_kind="payout_mismatch",
                    status="failed" if index % 7 == 0 else "done",
                    error="boom" if index % 7 == 0 else None,
                    latency_ms=float(index),
                    created_at=start + dt.timedelta(minutes=index),
                )
            )
    with get_engine(empty_database).connect() as connection:
        rows = connection.execute(
            text("SELECT run_id, agent_type, task, latency_ms, status, error FROM recent_agent_runs")
        ).all()
    assert len(rows) == 50
    assert [row.run_id for row in rows] == [f"run-{index:03d}" for index in range(59, 9, -1)]
    assert rows[0].agent_type == "advisor" and rows[0].task == "watch_analyze_advise"
    failed = next(row for row in rows if row.run_id == "run-056")
    assert (failed.status, failed.error, failed.latency_ms) == ("failed", "boom", 56.0)


def test_one_uncleared_episode_per_dedupe_key(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    now = dt.datetime.now(dt.UTC)

    def insight(status: str, cleared: bool) -> ProactiveInsight:
        return ProactiveInsight(
            kind="payout_mismatch", source="stripe", severity="high", title="t", dedupe_key="po_1", status=status,
            cleared_at=now if cleared else None, cleared_by="detector" if cleared else None,
        )  # fmt: skip

    with session_scope(empty_database) as session:
        session.add_all([insight("done", True), insight("expired", True), insight("done", False)])
    for status in ("queued", "done"):  # a finished episode that never cleared is still the anomaly's one
        with pytest.raises(IntegrityError), session_scope(empty_database) as session:
            session.add(insight(status, False))
    with session_scope(empty_database) as session:
        count = session.query(ProactiveInsight).filter_by(dedupe_key="po_1").count()
    assert count == 3


def test_finished_insights_from_before_episodes_are_closed_episodes(empty_database: str) -> None:
    migrate.upgrade(empty_database, "0007")
    with get_engine(empty_database).begin() as connection:
        for status in ("done", "failed", "done", "new"):
            connection.execute(
                text("INSERT INTO proactive_insights (kind, source, severity, title, dedupe_key, status, attempts, "
                     "max_attempts, occurrences) "
                     "VALUES ('payout_mismatch', 'stripe', 'high', 't', 'po_1', :s, 0, 3, 1)"),
                {"s": status},
            )  # fmt: skip
    migrate.upgrade(empty_database, "0008")
    with get_engine(empty_database).connect() as connection:
        rows = connection.execute(text("SELECT status, cleared_by FROM proactive_insights ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("done", "migration"), ("failed", "migration"), ("done", "migration"),
                                        ("new", None)]  # fmt: skip
    migrate.upgrade(empty_database)  # and the waiting one, with no alert in its payload, is set aside by 0014
    with session_scope(empty_database) as session:
        waiting = session.query(ProactiveInsight).filter_by(status="new").one()
    assert waiting.cleared_by == "quarantine" and "payload is not an alert" in (waiting.quarantine_reason or "")


def test_every_table_has_row_level_security_and_a_public_role_reads_nothing(
    pg_database_factory: DatabaseFactory,
) -> None:
    url = pg_database_factory.create()
    migrate.upgrade(url)
    engine = get_engine(url)
    role = f"anon_{os.getpid()}"
    with session_scope(url) as session:  # rows for a reader to (not) see
        session.add(AgentRun(id="r-rls", status="done"))
        session.add(SourceRecord(source="stripe", object_type="charge", object_id="ch_rls",
                                 occurred_at=dt.datetime.now(dt.UTC), data={"amount": 100}))  # fmt: skip
    with engine.begin() as connection:
        unprotected = connection.execute(text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND NOT c.relrowsecurity"
        )).scalars().all()  # fmt: skip
        assert unprotected == []
        # a role like Supabase's anon, with the table grants its Data API has
        connection.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        connection.execute(text(f'CREATE ROLE "{role}" NOLOGIN'))
        connection.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        connection.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    try:
        with engine.begin() as connection:
            tables = [t for t in _tables(url)] + ["recent_agent_runs"]
            assert connection.execute(text("SELECT count(*) FROM agent_runs")).scalar_one() == 1  # the owner sees it
            connection.execute(text(f'SET LOCAL ROLE "{role}"'))
            seen = {table: connection.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one() for table in tables}
        assert seen == dict.fromkeys(tables, 0), seen
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"'))
            connection.execute(text(f'REVOKE USAGE ON SCHEMA public FROM "{role}"'))
            connection.execute(text(f'DROP ROLE "{role}"'))
