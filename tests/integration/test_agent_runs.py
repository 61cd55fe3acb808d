"""Agent runs end to end: chain through a real worker on Postgres + Redis, offline provider."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from switchboard.agents import watcher
from switchboard.agents.tools import MAX_FIND
from switchboard.approvals import execute_approval, list_approvals
from switchboard.db.models import (
    ActionExecution,
    AgentConversation,
    AgentDecision,
    AgentRun,
    AgentStep,
    Approval,
    ProactiveInsight,
    new_id,
)
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import EXPECTED, closed_won_without_payment, demo_records
from switchboard.errors import InvalidState
from switchboard.settings import get_settings
from switchboard.tasks.actions import approve
from switchboard.tasks.runs import dispatch_insight
from switchboard.tasks.steps import analyst_step, watcher_step
from switchboard.tasks.watch import scan
from tests.support.runs import empty_tables, wait_for_runs, wait_for_status

SOURCES = ["stripe", "hubspot", "calls"]


@pytest.fixture()
def clean(database_url: str, celery_worker: object) -> Iterator[None]:
    empty_tables(database_url)
    yield


def _seed_and_dispatch(records: list[RecordIn]) -> list[str]:
    with session_scope() as session:
        upsert_records(session, records)
    outcome = scan.delay(SOURCES).get(timeout=60)
    return [dispatch_insight(insight_id) for insight_id in outcome["insights"]]


def test_demo_scenarios_run_to_done_and_normal_data_raises_nothing(clean: None) -> None:
    run_ids = _seed_and_dispatch(demo_records(dt.datetime.now(dt.UTC)))
    runs = wait_for_runs(run_ids)
    assert sorted(str(run["insight_kind"]) for run in runs) == sorted(anomaly.kind for anomaly in EXPECTED)
    assert {run["status"] for run in runs} == {"done"}
    with session_scope() as session:
        entities = set(session.scalars(select(ProactiveInsight.entity_id)))
        assert entities == {anomaly.entity_id for anomaly in EXPECTED}
        for run_id in run_ids:
            steps = session.scalars(select(AgentStep).where(AgentStep.run_id == run_id).order_by(AgentStep.id)).all()
            assert [s.step for s in steps] == ["watcher", "analyst", "advisor"]
            assert all(s.status == "done" and s.latency_ms is not None and s.latency_ms > 0 for s in steps)
            assert all(s.queue_wait_ms is not None and s.queue_wait_ms >= 0 for s in steps)
            assert all(s.provider == "offline" and s.attempt == 1 and s.retries == 0 for s in steps)
            run = session.get(AgentRun, run_id)
            assert run is not None and run.provider == "offline" and run.latency_ms and run.latency_ms > 0
            tool_calls = session.scalars(
                select(AgentDecision).where(AgentDecision.run_id == run_id, AgentDecision.kind == "tool_call")
            ).all()
            assert [(t.status, t.attempts) for t in tool_calls] == [("done", 1)]
            output = tool_calls[0].output
            assert output is not None
            if run.insight_kind == "calls_connect_rate_drop":  # a rep: the model lists the rep's calls
                assert tool_calls[0].tool == "llm:find_records"  # 20 calls: the logged summary is truncated
                assert output["truncated"].startswith(f'{{"count": {MAX_FIND}, "objects": [{{')
            else:
                assert tool_calls[0].tool == "llm:get_record" and output["value"]["found"] is True
            messages = session.scalar(
                select(func.count()).select_from(AgentConversation).where(AgentConversation.run_id == run_id)
            )
            assert messages and messages >= 6  # a prompt and an answer per step, plus the tool turn
            executed = session.scalars(select(ActionExecution).where(ActionExecution.run_id == run_id)).all()
            assert len(executed) == 1 and executed[0].status == "done"
        statuses = set(session.scalars(select(ProactiveInsight.status)))
        assert statuses == {"done"}


def _start_run_with_payload(step_task: object, payload: dict[str, object]) -> str:
    run_id = new_id()
    with session_scope() as session:
        session.add(AgentRun(id=run_id, status="queued", enqueued_at=dt.datetime.now(dt.UTC)))
    step_task.apply_async(args=[payload], kwargs={"run_id": run_id}, queue=get_settings().queue_name("default"))  # type: ignore[attr-defined]
    return run_id


@pytest.mark.parametrize(
    ("step_task", "step", "payload", "where"),
    [
        (watcher_step, "watcher", {"run_id": "x", "alert": {"kind": "not_a_kind"}}, "watcher input"),
        (analyst_step, "analyst", {"run_id": "x", "alert": {}, "unexpected": 1}, "analyst input"),
    ],
)
def test_contract_violation_fails_the_run_permanently(
    clean: None, step_task: object, step: str, payload: dict[str, object], where: str
) -> None:
    run_id = _start_run_with_payload(step_task, payload)
    [run] = wait_for_runs([run_id], timeout_s=30)
    assert run["status"] == "failed"
    assert run["retries"] == 0
    assert str(run["error"]).startswith(f"{step}: ContractViolation: {where}: payload is not a valid")
    with session_scope() as session:
        row = session.scalars(select(AgentStep).where(AgentStep.run_id == run_id)).one()
        assert (row.step, row.status, row.retries, row.attempt) == (step, "failed", 0, 1)
        assert row.input == payload


def test_high_risk_action_waits_for_approval_then_executes_once(clean: None) -> None:
    [run_id] = _seed_and_dispatch(closed_won_without_payment(dt.datetime.now(dt.UTC)))
    [run] = wait_for_runs([run_id])
    assert (run["insight_kind"], run["status"]) == ("hubspot_closed_won_without_payment", "awaiting_approval")
    assert run["actions_executed"] == 1 and run["actions_awaiting_approval"] == 1  # finance flag ran at once
    [pending] = list_approvals("pending")
    assert (pending.run_id, pending.action_type, pending.risk) == (run_id, "draft_customer_message", "high")

    approve(pending.id)
    run = wait_for_status(run_id, "done")
    assert run["actions_executed"] == 2
    with pytest.raises(InvalidState, match="already executed"):
        approve(pending.id)
    assert execute_approval(pending.id) is False  # a redelivered execution finds it done
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ActionExecution)) == 2
        assert session.scalars(select(Approval.status)).all() == ["executed"]
        assert session.scalars(select(ProactiveInsight.status)).all() == ["done"]


def test_insights_are_deduplicated_while_open(clean: None) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, closed_won_without_payment(now))
    first = watcher.scan(SOURCES, now, get_settings())
    second = watcher.scan(SOURCES, now, get_settings())
    assert [(created, severity) for _, created, severity in first] == [(True, "high")]
    assert second == [(first[0][0], False, "high")]
    with session_scope() as session:
        insight = session.scalars(select(ProactiveInsight)).one()
        assert insight.occurrences == 2 and insight.status == "new"
