"""The orchestrator: exactly-once dispatch under concurrency, escalation, expiry, entity limits."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from pathlib import Path

import redis
from sqlalchemy import func, insert, select

from switchboard.db.models import AgentDecision, AgentRun, AgentStep, ProactiveInsight
from switchboard.db.queries import recent_runs
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from switchboard.tasks.orchestrator import poll
from tests.support.env import worker_env
from tests.support.runs import empty_tables

ALERT = {
    "kind": "hubspot_deal_without_owner",
    "source": "hubspot",
    "severity": "medium",
    "title": "Deal has no owner",
    "entity": {"source": "hubspot", "type": "deal", "id": "placeholder"},
    "dedupe_key": "placeholder",
    "detected_at": "2026-11-24T00:00:00+00:00",
}


def _insight_rows(count: int, now: dt.datetime, *, severity: str = "medium", entity: str | None = None,
                  age_h: float = 0.0, sla_h: float = 4.0) -> list[dict[str, object]]:  # fmt: skip
    rows = []
    for n in range(count):
        entity_id = entity or f"deal-{n}"
        key = f"test:{uuid.uuid4().hex}"
        payload = {**ALERT, "severity": severity, "entity": {**ALERT["entity"], "id": entity_id}, "dedupe_key": key}  # type: ignore[dict-item]
        created = now - dt.timedelta(hours=age_h)
        rows.append({
            "kind": ALERT["kind"], "source": "hubspot", "severity": severity, "title": "Deal has no owner",
            "entity_type": "deal", "entity_id": entity_id, "payload": payload, "dedupe_key": key, "status": "new",
            "attempts": 0, "max_attempts": 3, "occurrences": 1, "created_at": created, "updated_at": created,
            "sla_deadline": created + dt.timedelta(hours=sla_h), "next_attempt_at": created,
        })  # fmt: skip
    return rows


def _insert(rows: list[dict[str, object]]) -> None:
    with session_scope() as session:
        session.execute(insert(ProactiveInsight), rows)


ORCHESTRATOR_LOOP = """
import sys
from switchboard.tasks.orchestrator import poll
total = 0
while True:
    counts = poll()
    total += counts["dispatched"]
    if counts["dispatched"] == 0 and counts["lost_race"] == 0:
        break
print(total)
"""


def test_two_orchestrators_dispatch_5000_insights_exactly_once(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    empty_tables(database_url)
    _insert(_insight_rows(5000, dt.datetime.now(dt.UTC)))
    prefix = f"o{uuid.uuid4().hex[:6]}."  # queues nobody consumes: the messages are counted, not run
    env = worker_env(database_url, redis_url, tmp_path, prefix=prefix)
    orchestrators = [
        subprocess.Popen([sys.executable, "-c", ORCHESTRATOR_LOOP], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    totals = [int(proc.communicate(timeout=240)[0].strip()) for proc in orchestrators]
    assert all(proc.returncode == 0 for proc in orchestrators)
    assert sum(totals) == 5000 and all(total > 0 for total in totals), totals  # both took a share
    with session_scope() as session:
        per_insight = session.execute(
            select(AgentRun.insight_id, func.count()).group_by(AgentRun.insight_id).having(func.count() > 1)
        ).all()
        assert per_insight == []
        assert session.scalar(select(func.count()).select_from(AgentRun)) == 5000
        assert session.scalar(select(func.count()).where(ProactiveInsight.status == "queued")) == 5000
        assert session.scalar(select(func.count()).where(AgentDecision.kind == "dispatch")) == 5000
    client = redis.Redis.from_url(redis_url)
    queued = sum(client.llen(key) for key in client.scan_iter(f"{prefix}*"))
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
    assert queued == 5000
    print(f"orchestrator shares: {totals}")


def test_aging_insight_is_escalated_and_expired_one_is_marked(database_url: str, redis_url: str) -> None:
    empty_tables(database_url)
    now = dt.datetime.now(dt.UTC)
    settings = get_settings().model_copy(update={"queue_prefix": f"e{uuid.uuid4().hex[:6]}."})
    _insert(_insight_rows(1, now, severity="medium", age_h=3.0, sla_h=4.0, entity="aging"))
    _insert(_insight_rows(1, now, severity="low", age_h=25.0, sla_h=24.0, entity="late"))
    counts = poll(now, settings)
    assert (counts["dispatched"], counts["expired"]) == (1, 1)
    with session_scope() as session:
        aging = session.scalars(select(ProactiveInsight).where(ProactiveInsight.entity_id == "aging")).one()
        late = session.scalars(select(ProactiveInsight).where(ProactiveInsight.entity_id == "late")).one()
        assert aging.status == "queued" and aging.queue == settings.queue_name("high")
        assert late.status == "expired" and late.run_id is None
        reasons = sorted(str(d.input["reason"]) for d in session.scalars(select(AgentDecision)))
    assert reasons[0].startswith("low: SLA deadline passed 3600 s ago")
    assert reasons[1] == "medium: only 25% of SLA left, escalated to high"
    listed = {run["insight_kind"]: run for run in recent_runs()}
    expired = [run for run in recent_runs() if run["status"] == "expired"]
    assert len(expired) == 1 and "SLA deadline passed" in str(expired[0]["error"])
    assert listed


def test_per_entity_concurrency_limit_defers_the_excess(database_url: str, redis_url: str) -> None:
    empty_tables(database_url)
    now = dt.datetime.now(dt.UTC)
    settings = get_settings().model_copy(update={"queue_prefix": f"c{uuid.uuid4().hex[:6]}.", "max_runs_per_entity": 2})
    _insert(_insight_rows(3, now, entity="same-customer"))
    first = poll(now, settings)
    assert (first["dispatched"], first["deferred"]) == (2, 1)
    second = poll(now + dt.timedelta(seconds=10), settings)
    assert (second["dispatched"], second["deferred"]) == (0, 1)  # two runs still active
    with session_scope() as session:
        session.execute(AgentRun.__table__.update().values(status="done"))
    third = poll(now + dt.timedelta(seconds=20), settings)
    assert third["dispatched"] == 1


def test_a_run_whose_next_step_message_was_lost_is_resent_and_completes(
    celery_worker: object, database_url: str, redis_url: str
) -> None:
    from switchboard.db.models import ActionExecution
    from switchboard.tasks.runs import dispatch_insight
    from switchboard.tasks.steps import watcher_step
    from tests.support.runs import wait_for_runs, wait_for_status

    empty_tables(database_url)
    settings = get_settings()
    now = dt.datetime.now(dt.UTC)
    _insert(_insight_rows(2, now))
    with session_scope() as session:
        lost_next, lost_outcome = session.scalars(select(ProactiveInsight.id).order_by(ProactiveInsight.id)).all()

    # 1. Only the watcher step is sent: the analyst message is "lost" (as when Redis hands it to a
    #    worker that is killed before it records the message as unacknowledged).
    from switchboard.tasks.runs import prepare_run

    with session_scope() as session:
        insight = session.get(ProactiveInsight, lost_next)
        assert insight is not None
        prepared = prepare_run(session, insight, settings.queue_name("default"), 5, now)
    watcher_step.s(prepared.request.model_dump(mode="json"), run_id=prepared.run_id).apply_async(queue=prepared.queue)
    wait_for_status(prepared.run_id, "running")
    _wait_step_done(prepared.run_id, "watcher")

    # 2. A run that finished, whose final write never happened (the database was away).
    finished = dispatch_insight(lost_outcome, queue=settings.queue_name("default"))
    wait_for_runs([finished])
    with session_scope() as session:
        session.execute(AgentRun.__table__.update().where(AgentRun.id == finished).values(status="running"))

    later = now + dt.timedelta(seconds=get_settings().visibility_timeout_s + get_settings().task_time_limit_s + 60)
    with session_scope() as session:  # no progress for longer than any step may take
        session.execute(
            AgentRun.__table__.update()
            .where(AgentRun.id.in_([prepared.run_id, finished]))
            .values(updated_at=now - dt.timedelta(hours=2))
        )
    counts = poll(later, settings)
    assert counts["stalled"] == 2
    runs = {run["run_id"]: run for run in wait_for_runs([prepared.run_id, finished])}
    assert runs[prepared.run_id]["status"] == "done" and runs[finished]["status"] == "done"
    with session_scope() as session:
        steps = session.scalars(select(AgentStep).where(AgentStep.run_id == prepared.run_id)).all()
        assert {s.step: (s.status, s.attempt) for s in steps}["watcher"] == ("done", 1)  # not run again
        assert sorted(s.step for s in steps) == ["advisor", "analyst", "watcher"]
        executions = session.scalars(select(ActionExecution).where(ActionExecution.run_id == finished)).all()
        assert len(executions) == 1  # the re-sent advisor step returned its stored plan, acting once
        resends = session.scalars(select(AgentDecision).where(AgentDecision.kind == "resend")).all()
        assert sorted(str(d.input["from_step"]) for d in resends) == ["advisor", "analyst"]
    assert poll(dt.datetime.now(dt.UTC), settings)["stalled"] == 0  # moving runs are left alone


def _wait_step_done(run_id: str, step: str, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with session_scope() as session:
            status = session.scalar(select(AgentStep.status).where(AgentStep.run_id == run_id, AgentStep.step == step))
        if status == "done":
            return
        time.sleep(0.1)
    raise AssertionError(f"{step} of {run_id} not done after {timeout_s:.0f} s")
