"""The run lifecycle's insight episodes (`switchboard/db/runs.py`) on SQLite, in milliseconds:
occurrences, a worse severity re-opening a finished episode, clearing, resolving, and action
keys that belong to the episode."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from switchboard.agents.advisor import _build_plan
from switchboard.contracts import Alert, Analysis
from switchboard.db import migrate
from switchboard.db import runs as lifecycle
from switchboard.db.models import ProactiveInsight
from switchboard.db.session import dispose_engines, session_scope
from switchboard.errors import InvalidState, NotFound
from switchboard.settings import load_settings

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
SETTINGS = load_settings()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('lifecycle')) / 'lifecycle.db'}"
    migrate.upgrade(url)
    yield url
    dispose_engines()


@pytest.fixture()
def session(database: str) -> Iterator[Session]:
    with session_scope(database) as session:
        yield session
        session.rollback()


def _alert(severity: str = "medium", entity: str = "d1") -> Alert:
    return Alert.model_validate(
        {"kind": "hubspot_deal_without_owner", "source": "hubspot", "severity": severity, "title": f"Deal {entity}",
         "entity": {"source": "hubspot", "type": "deal", "id": entity},
         "dedupe_key": f"hubspot_deal_without_owner:deal:{entity}", "detected_at": NOW}
    )  # fmt: skip


def _finish(session: Session, insight_id: int, status: str = "done") -> None:
    session.execute(update(ProactiveInsight).where(ProactiveInsight.id == insight_id).values(status=status))


def test_a_persisting_anomaly_adds_occurrences_to_its_finished_episode(session: Session) -> None:
    first, new = lifecycle.record_occurrence(session, _alert(), NOW, SETTINGS)
    assert new
    _finish(session, first)
    for _ in range(2):
        assert lifecycle.record_occurrence(session, _alert(), NOW, SETTINGS) == (first, False)
    insight = session.get(ProactiveInsight, first)
    assert insight is not None and (insight.status, insight.occurrences) == ("done", 3)


def test_a_worse_severity_reopens_a_finished_episode(session: Session) -> None:
    first, _ = lifecycle.record_occurrence(session, _alert("medium", "d2"), NOW, SETTINGS)
    _finish(session, first, "failed")
    later = NOW + dt.timedelta(hours=1)
    assert lifecycle.record_occurrence(session, _alert("high", "d2"), later, SETTINGS) == (first, True)
    insight = session.get(ProactiveInsight, first)
    assert insight is not None
    assert (insight.status, insight.severity, insight.attempts) == ("new", "high", 0)
    assert insight.sla_deadline == later + dt.timedelta(seconds=SETTINGS.sla_high_s)
    # the same severity again is only an occurrence
    assert lifecycle.record_occurrence(session, _alert("high", "d2"), later, SETTINGS) == (first, False)


def test_an_episode_ends_when_its_detector_no_longer_finds_it_and_recurs_as_a_new_one(session: Session) -> None:
    gone, _ = lifecycle.record_occurrence(session, _alert(entity="d3"), NOW, SETTINGS)
    still, _ = lifecycle.record_occurrence(session, _alert(entity="d4"), NOW, SETTINGS)
    running, _ = lifecycle.record_occurrence(session, _alert(entity="d5"), NOW, SETTINGS)
    _finish(session, gone)
    _finish(session, still)
    _finish(session, running, "running")
    seen = [_alert(entity="d4").dedupe_key]
    assert lifecycle.clear_episodes(session, kinds=["other_kind"], seen=[], now=NOW) == 0  # its detector did not run
    assert lifecycle.clear_episodes(session, kinds=["hubspot_deal_without_owner"], seen=seen, now=NOW) >= 1
    session.expire_all()
    cleared = {i: session.get(ProactiveInsight, i) for i in (gone, still, running)}
    assert [(c.cleared_at is not None) for c in cleared.values() if c] == [True, False, False]
    assert cleared[gone] is not None and cleared[gone].cleared_by == "detector"
    recurred, new = lifecycle.record_occurrence(session, _alert(entity="d3"), NOW, SETTINGS)
    assert new and recurred != gone


def test_an_operator_resolves_a_finished_episode_only(session: Session) -> None:
    insight_id, _ = lifecycle.record_occurrence(session, _alert(entity="d6"), NOW, SETTINGS)
    with pytest.raises(InvalidState, match="is new"):
        lifecycle.resolve_insight(session, insight_id, by="ops@example.com", now=NOW)
    _finish(session, insight_id)
    lifecycle.resolve_insight(session, insight_id, by="ops@example.com", now=NOW)
    assert lifecycle.record_occurrence(session, _alert(entity="d6"), NOW, SETTINGS)[0] != insight_id
    with pytest.raises(NotFound, match="no insight"):
        lifecycle.resolve_insight(session, 10**9, by="ops", now=NOW)


def _analysis(run_id: str, insight_id: int | None) -> Analysis:
    return Analysis.model_validate(
        {"run_id": run_id, "insight_id": insight_id, "alert": _alert().model_dump(mode="json"),
         "root_cause": "crm_data_hygiene", "narrative": "n", "confidence": 0.9,
         "provider": "offline", "model": "rules"}
    )  # fmt: skip


def test_action_keys_belong_to_the_episode_and_target_not_the_run() -> None:
    answer = {
        "actions": [
            {"type": "create_hubspot_task", "subject": "Assign an owner", "body": "b"},
            {"type": "create_hubspot_task", "subject": "Check the import", "body": "b"},
            {"type": "flag_finance_review", "summary": "s"},
        ],
        "rationale": "r",
    }
    first = _build_plan(_analysis("run-1", 7), answer, "offline", "rules")
    rerun = _build_plan(_analysis("run-2", 7), {**answer, "rationale": "worded differently"}, "offline", "rules")
    other_episode = _build_plan(_analysis("run-3", 8), answer, "offline", "rules")
    keys = [action.idempotency_key for action in first.actions]
    assert len(set(keys)) == 3  # two tasks in one plan stay two
    assert [action.idempotency_key for action in rerun.actions] == keys
    assert not set(keys) & {action.idempotency_key for action in other_episode.actions}
