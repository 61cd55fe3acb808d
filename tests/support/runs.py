"""Helpers for tests that drive real runs through a worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from switchboard.db import migrate
from switchboard.db.models import AgentRun, Base, new_id
from switchboard.db.queries import TERMINAL_RUN_STATUSES, recent_runs
from switchboard.db.session import dispose_engines, get_engine, session_scope
from switchboard.settings import get_settings
from switchboard.tasks.steps import watcher_step


def empty_tables(database_url: str | None = None) -> None:
    """Empty every table Switchboard's metadata declares (the session database is shared by the
    tests; the autouse fixture in conftest calls this before each test that uses it)."""
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with get_engine(database_url or get_settings().database_url).begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def wait_for_runs(run_ids: list[str], timeout_s: float = 60.0) -> list[dict[str, object]]:
    """Poll until every run is terminal; returns their summaries (fails on timeout)."""
    deadline = time.monotonic() + timeout_s
    runs: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        runs = recent_runs(run_ids=run_ids)
        if len(runs) == len(run_ids) and all(run["status"] in TERMINAL_RUN_STATUSES for run in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"runs not terminal after {timeout_s:.0f} s: {[(r['run_id'], r['status']) for r in runs]}")


def wait_for_status(run_id: str, status: str, timeout_s: float = 30.0) -> dict[str, object]:
    """Poll one run until it reaches ``status`` (fails on timeout)."""
    deadline = time.monotonic() + timeout_s
    run: dict[str, object] = {}
    while time.monotonic() < deadline:
        [run] = recent_runs(run_ids=[run_id])
        if run["status"] == status:
            return run
        if run["status"] in ("failed", "expired"):  # final: waiting longer cannot help
            raise AssertionError(f"run {run_id} is {run['status']}, not {status}: {run.get('error')}")
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} is {run.get('status')}, not {status}, after {timeout_s:.0f} s")


def failed_run() -> str:
    """A run whose watcher step gets a contract-violating payload: it fails permanently."""
    run_id = new_id()
    with session_scope() as session:
        session.add(AgentRun(id=run_id, status="queued", insight_kind="broken_input"))
    watcher_step.apply_async(
        args=[{"run_id": run_id, "alert": {"kind": "not_a_kind"}}],
        kwargs={"run_id": run_id},
        queue=get_settings().queue_name("default"),
    )
    [run] = wait_for_runs([run_id], timeout_s=30)
    assert run["status"] == "failed"
    return run_id


@contextmanager
def on_database(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process (its hooks and in-process worker included) on a freshly migrated database
    at ``url``; back on the session's database after."""
    migrate.upgrade(url)
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        yield
    finally:
        dispose_engines()
        monkeypatch.undo()
        get_settings.cache_clear()
