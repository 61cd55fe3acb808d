"""An anomaly is one episode until it clears: scans over a persisting anomaly add occurrences
to its insight and start no second run, so its actions happen once; once the detector sees it
clear, its recurrence is a new episode, acted on once. Through the real loop — the Celery scan
task, the orchestrator's pass, the in-process worker — on PostgreSQL and on SQLite."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from switchboard.db.models import ActionExecution, AgentRun, ProactiveInsight, SourceRecord
from switchboard.db.queries import TERMINAL_RUN_STATUSES
from switchboard.db.records import upsert_records
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import EXPECTED, demo_records
from switchboard.tasks.orchestrator import poll
from switchboard.tasks.watch import scan
from tests.support.runs import on_database
from tests.support.services import DatabaseFactory

SOURCES = ["stripe", "hubspot", "calls"]


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(
    request: pytest.FixtureRequest, pg_database_factory: DatabaseFactory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, celery_worker: object,
) -> Iterator[str]:  # fmt: skip
    url = pg_database_factory.create() if request.param == "postgresql" else f"sqlite:///{tmp_path / 'episodes.db'}"
    with on_database(url, monkeypatch):
        yield request.param


def _scan_and_dispatch() -> dict[str, int]:
    """One Watcher scan (the beat job) and one orchestrator pass, then every run to its end."""
    outcome = scan.delay(SOURCES).get(timeout=60)
    counts = poll()
    deadline = time.monotonic() + 90
    while True:
        with session_scope() as session:
            unfinished = session.scalar(
                select(func.count()).select_from(AgentRun).where(AgentRun.status.not_in(TERMINAL_RUN_STATUSES))
            )
        if not unfinished:
            return {"created": int(outcome["created"]), "dispatched": counts["dispatched"]}
        assert time.monotonic() < deadline, f"{unfinished} run(s) unfinished after 90 s"
        time.sleep(0.1)


def _state() -> tuple[list[tuple[int, str, int, bool]], int, int]:
    """(insights as (id, kind, occurrences, cleared)), runs, action executions."""
    with session_scope() as session:
        insights = [
            (i.id, i.kind, i.occurrences, i.cleared_at is not None)
            for i in session.scalars(select(ProactiveInsight).order_by(ProactiveInsight.id))
        ]
        runs = session.scalar(select(func.count()).select_from(AgentRun)) or 0
        executions = session.scalar(select(func.count()).select_from(ActionExecution)) or 0
    return insights, runs, executions


def test_a_persisting_anomaly_is_acted_on_once_until_it_clears_and_its_recurrence_once_more(backend: str) -> None:
    now = dt.datetime.now(dt.UTC)
    records = demo_records(now)
    with session_scope() as session:
        upsert_records(session, records)
    anomalies = len(EXPECTED)

    first = _scan_and_dispatch()
    assert first == {"created": anomalies, "dispatched": anomalies}
    insights, runs, executions = _state()
    assert runs == anomalies and executions >= anomalies  # every plan acted (or recorded no action)

    for _ in range(2):  # the anomaly persists: the next scans add occurrences, and nothing runs
        assert _scan_and_dispatch() == {"created": 0, "dispatched": 0}
    again, runs_after, executions_after = _state()
    assert [(i, kind, cleared) for i, kind, _, cleared in again] == [(i, k, c) for i, k, _, c in insights]
    assert {occurrences for _, _, occurrences, _ in again} == {3}
    assert (runs_after, executions_after) == (runs, executions)
    print(f"{backend}: 3 scans over {anomalies} persisting anomalies -> {runs} runs, {executions} actions executed")

    # the anomalies clear: the detectors no longer find them, so their episodes end
    with session_scope() as session:
        session.execute(delete(SourceRecord))
    assert _scan_and_dispatch() == {"created": 0, "dispatched": 0}
    cleared, _, _ = _state()
    assert all(is_cleared for *_, is_cleared in cleared)

    # and recur: a second episode each, run and acted on once more
    with session_scope() as session:
        upsert_records(session, demo_records(dt.datetime.now(dt.UTC)))
    assert _scan_and_dispatch() == {"created": anomalies, "dispatched": anomalies}
    assert _scan_and_dispatch() == {"created": 0, "dispatched": 0}
    recurred, runs_final, executions_final = _state()
    assert len(recurred) == 2 * anomalies and len({i for i, *_ in recurred}) == 2 * anomalies
    assert (runs_final, executions_final) == (2 * runs, 2 * executions)
