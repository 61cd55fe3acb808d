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


def test_an_operator_resolves_an_episode_no_run_is_working_on(session: Session) -> None:
    insight_id, _ = lifecycle.record_occurrence(session, _alert(entity="d6"), NOW, SETTINGS)
    session.get(ProactiveInsight, insight_id).status = "running"  # type: ignore[union-attr]
    with pytest.raises(InvalidState, match="is running"):
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


# --------------------------------------------------------------------------- a run's transitions


@pytest.fixture()
def on_sqlite(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The step writes open their own transactions on the configured database: this SQLite file."""
    from switchboard.settings import get_settings

    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", database)
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _queued_run(database: str, entity: str) -> tuple[str, int]:
    with session_scope(database) as session:
        insight_id, _ = lifecycle.record_occurrence(session, _alert(entity=entity), NOW, SETTINGS)
        insight = session.get(ProactiveInsight, insight_id)
        assert insight is not None
        run_id = lifecycle.queue_run(session, insight, queue="default", priority=5, now=NOW, request={"r": 1})
    return run_id, insight_id


def _statuses(database: str, run_id: str, insight_id: int) -> tuple[str, dict[str, str], str]:
    from switchboard.db.models import AgentRun, AgentStep

    with session_scope(database) as session:
        run = session.get(AgentRun, run_id)
        insight = session.get(ProactiveInsight, insight_id)
        assert run is not None and insight is not None
        steps = {s.step: s.status for s in session.query(AgentStep).filter_by(run_id=run_id)}
        return run.status, steps, insight.status


def _start(run_id: str, step: str) -> lifecycle.Prior | None:
    return lifecycle.start_step(run_id=run_id, step=step, agent=step, task_id=f"t-{step}", queue="default", now=NOW,
                                enqueued=NOW, step_input={"step": step})  # fmt: skip


def test_a_run_goes_through_its_steps_and_a_redelivered_finished_step_is_handed_on(
    database: str, on_sqlite: None
) -> None:
    run_id, insight_id = _queued_run(database, "r1")
    assert _statuses(database, run_id, insight_id) == ("queued", {}, "queued")
    assert _start(run_id, "watcher") == lifecycle.Prior(None, None)
    assert _statuses(database, run_id, insight_id) == ("running", {"watcher": "running"}, "running")
    lifecycle.finish_step(run_id=run_id, step="watcher", agent="watcher", now=NOW, output={"w": 1},
                          attempt=lifecycle.Attempt())  # fmt: skip
    assert _start(run_id, "watcher") == lifecycle.Prior("done", {"w": 1})  # redelivered: handed on
    _start(run_id, "analyst")
    _start(run_id, "advisor")  # the analyst's success was never written: its successor closes it
    assert _statuses(database, run_id, insight_id)[1] == {"watcher": "done", "analyst": "done", "advisor": "running"}
    lifecycle.finish_step(run_id=run_id, step="advisor", agent="advisor", now=NOW, output={"a": 1},
                          attempt=lifecycle.Attempt())  # fmt: skip
    assert _statuses(database, run_id, insight_id)[::2] == ("done", "done")
    assert _start("no-such-run", "watcher") is None


def test_a_stale_twin_of_a_finished_step_neither_retries_nor_fails_it(database: str, on_sqlite: None) -> None:
    """Two runners of one step (a redelivered message next to a live one, bench/chaos.py): the
    one that finished wins; the other's later retry or failure counts its usage and nothing else."""
    run_id, insight_id = _queued_run(database, "r-twin")
    _start(run_id, "watcher")
    _start(run_id, "watcher")  # the twin
    lifecycle.finish_step(run_id=run_id, step="watcher", agent="watcher", now=NOW, output={"w": 1},
                          attempt=lifecycle.Attempt())  # fmt: skip
    _start(run_id, "analyst")
    lifecycle.retry_step(run_id=run_id, step="watcher", agent="watcher", reason="Deferred: budget", deferred=True,
                         attempt=lifecycle.Attempt(tokens_in=7))  # fmt: skip
    lifecycle.fail_step(run_id=run_id, step="watcher", agent="watcher", now=NOW, reason="Permanent: late",
                        attempt=lifecycle.Attempt(tokens_in=3))  # fmt: skip
    assert _statuses(database, run_id, insight_id) == ("running", {"watcher": "done", "analyst": "running"}, "running")
    from switchboard.db.models import AgentRun

    with session_scope(database) as session:
        run = session.get(AgentRun, run_id)
        assert run is not None and (run.tokens_in, run.retries, run.error) == (10, 0, None)


def test_retries_deferrals_and_a_permanent_failure_then_a_replay(database: str, on_sqlite: None) -> None:
    from switchboard.db.models import AgentRun, AgentStep

    run_id, insight_id = _queued_run(database, "r2")
    _start(run_id, "watcher")
    lifecycle.retry_step(run_id=run_id, step="watcher", agent="watcher", reason="Retryable: 529", deferred=False,
                         attempt=lifecycle.Attempt())  # fmt: skip
    lifecycle.retry_step(run_id=run_id, step="watcher", agent="watcher", reason="Deferred: budget", deferred=True,
                         attempt=lifecycle.Attempt())  # fmt: skip
    with session_scope(database) as session:
        run = session.get(AgentRun, run_id)
        assert run is not None and (run.status, run.retries) == ("retrying", 1)  # a deferral is no retry
    _start(run_id, "watcher")
    lifecycle.fail_step(run_id=run_id, step="watcher", agent="watcher", now=NOW, reason="ContractViolation: bad",
                        attempt=lifecycle.Attempt(raw_outputs=["not json"]))  # fmt: skip
    assert _statuses(database, run_id, insight_id) == ("failed", {"watcher": "failed"}, "failed")
    with session_scope(database) as session:
        step = session.query(AgentStep).filter_by(run_id=run_id).one()
        assert step.output == {lifecycle.RAW_OUTPUTS: ["not json"]} and step.error == "ContractViolation: bad"

    with session_scope(database) as session:
        assert lifecycle.requeue_failed_run(session, run_id, by="ops", now=NOW) == ("watcher", {"step": "watcher"})
    assert _statuses(database, run_id, insight_id)[::2] == ("queued", "queued")
    with pytest.raises(InvalidState, match="only failed runs"), session_scope(database) as session:
        lifecycle.requeue_failed_run(session, run_id, by="ops", now=NOW)
    with pytest.raises(NotFound), session_scope(database) as session:
        lifecycle.requeue_failed_run(session, "no-such-run", by="ops", now=NOW)


def test_a_run_waits_for_its_approvals_and_is_settled_by_the_last_decision(database: str, on_sqlite: None) -> None:
    from switchboard.db.models import Approval

    run_id, insight_id = _queued_run(database, "r3")
    with session_scope(database) as session:
        session.add(Approval(run_id=run_id, action_key=f"{run_id}:m", action_type="draft_customer_message",
                             action={}, risk="high", status="pending"))  # fmt: skip
    _start(run_id, "advisor")
    lifecycle.finish_step(run_id=run_id, step="advisor", agent="advisor", now=NOW, output={"a": 1},
                          attempt=lifecycle.Attempt())  # fmt: skip
    assert _statuses(database, run_id, insight_id)[::2] == ("awaiting_approval", "awaiting_approval")
    with session_scope(database) as session:
        lifecycle.settle_run(session, run_id)  # still pending: nothing changes
    assert _statuses(database, run_id, insight_id)[0] == "awaiting_approval"
    with session_scope(database) as session:
        session.query(Approval).filter_by(run_id=run_id).update({"status": "rejected"})
        lifecycle.settle_run(session, run_id)
    assert _statuses(database, run_id, insight_id)[::2] == ("done", "done")


def test_writers_of_one_run_in_several_threads_lose_no_usage(database: str, on_sqlite: None) -> None:
    """A step's success hook runs after its successor was published, so two steps of one run can
    write at once (and a redelivered twin beside them). On SQLite, where FOR UPDATE is ignored,
    each write must still see the one before it: the run's totals are the sum of every write."""
    import threading

    from switchboard.db.models import AgentRun, AgentStep

    run_id, _ = _queued_run(database, "r-threads")
    steps, rounds = ("watcher", "analyst", "advisor"), 15
    for step in steps:
        _start(run_id, step)
    go = threading.Barrier(len(steps) * 2)

    def write(step: str) -> None:
        go.wait()
        for _ in range(rounds):
            lifecycle.retry_step(run_id=run_id, step=step, agent=step, reason="Deferred: budget", deferred=True,
                                 attempt=lifecycle.Attempt(tokens_in=1, cache_read_tokens=2))  # fmt: skip

    threads = [threading.Thread(target=write, args=(step,)) for step in steps * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with session_scope(database) as session:
        run = session.get(AgentRun, run_id)
        assert run is not None
        assert (run.tokens_in, run.cache_read_tokens) == (len(threads) * rounds, 2 * len(threads) * rounds)
        for step in session.query(AgentStep).filter_by(run_id=run_id):
            assert step.tokens_in == 2 * rounds, step.step
