"""The orchestrator: claims due insights, places them (queue, priority) by severity and SLA
slack, expires routine work past its deadline, and dispatches runs — never one insight twice.

Claiming is `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, so orchestrators running at
once take disjoint batches; on SQLite (one writer at a time) the status change is a
compare-and-set (`UPDATE … WHERE status = 'new'`) whose row count decides the winner. Per-entity
concurrency is checked under a transaction-scoped advisory lock per entity on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections import Counter
from typing import Any

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.orm import Session

from switchboard.celery_app import app
from switchboard.contracts import SOURCES
from switchboard.db import runs as lifecycle
from switchboard.db.locks import lock_names
from switchboard.db.models import ACTIVE_RUN_STATUSES, AgentDecision, AgentRun, AgentStep, ProactiveInsight
from switchboard.db.session import session_scope
from switchboard.pipeline import STEP_NAMES, is_final
from switchboard.scheduling import place
from switchboard.settings import Settings, get_settings
from switchboard.tasks.runs import PreparedRun, prepare_run, send_from_step, send_run

log = logging.getLogger("switchboard.orchestrator")

ENTITY_BACKOFF = dt.timedelta(seconds=5)
STEP_RETRY_BUDGET = 5


def _entity_key(insight: ProactiveInsight) -> str:
    return f"{insight.source}:{insight.entity_type}:{insight.entity_id}"


def _active_per_entity(session: Session, insights: list[ProactiveInsight]) -> Counter[str]:
    """Active runs per entity, for the entities of the claimed insights only."""
    counts: Counter[str] = Counter()
    entities = sorted({(i.source, i.entity_type, i.entity_id) for i in insights}, key=str)
    for start in range(0, len(entities), 500):
        rows = session.execute(
            select(ProactiveInsight.source, ProactiveInsight.entity_type, ProactiveInsight.entity_id, func.count())
            .join(AgentRun, AgentRun.insight_id == ProactiveInsight.id)
            .where(
                AgentRun.status.in_(ACTIVE_RUN_STATUSES),
                tuple_(ProactiveInsight.source, ProactiveInsight.entity_type, ProactiveInsight.entity_id).in_(
                    entities[start : start + 500]
                ),
            )
            .group_by(ProactiveInsight.source, ProactiveInsight.entity_type, ProactiveInsight.entity_id)
        ).all()
        for source, entity_type, entity_id, count in rows:
            counts[f"{source}:{entity_type}:{entity_id}"] = int(count)
    return counts


def claim_and_place(session: Session, now: dt.datetime, settings: Settings) -> tuple[list[PreparedRun], dict[str, int]]:
    """Claim due insights and decide each one, inside the caller's transaction."""
    query = (
        select(ProactiveInsight)
        .where(
            ProactiveInsight.status == "new",
            ProactiveInsight.source.in_(SOURCES),  # e.g. an eval regression is for a human, not an agent run
            or_(ProactiveInsight.next_attempt_at.is_(None), ProactiveInsight.next_attempt_at <= now),
            ProactiveInsight.cleared_at.is_(None),  # resolved by an operator before it ran
            or_(ProactiveInsight.snoozed_until.is_(None), ProactiveInsight.snoozed_until <= now),
        )
        .order_by(ProactiveInsight.sla_deadline.asc(), ProactiveInsight.id.asc())
        .limit(settings.dispatch_batch_size)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    insights = list(session.scalars(query))
    prepared: list[PreparedRun] = []
    counts = {"dispatched": 0, "expired": 0, "deferred": 0, "lost_race": 0, "quarantined": 0}
    if not insights:
        return prepared, counts
    # the per-entity concurrency check is serialised across orchestrators (PostgreSQL)
    lock_names(session, [_entity_key(i) for i in insights])
    active = _active_per_entity(session, insights)
    for insight in insights:
        problem = lifecycle.unfit(insight)
        if problem:  # e.g. a row the old stack wrote: set aside with the reason, never retried
            lifecycle.quarantine_insight(session, insight, reason=problem, now=now)
            log.warning("insight %s quarantined: %s", insight.id, problem)
            counts["quarantined"] += 1
            continue
        placement = place(insight.severity, insight.sla_deadline, insight.created_at, now, settings)
        if placement.action == "expire" and insight.acknowledged_at is not None:
            # an operator acknowledged it and waits for the answer: run it late rather than drop it
            reason = f"{placement.reason}; acknowledged by {insight.acknowledged_by}: run, not expired"
            placement = dataclasses.replace(placement, action="dispatch", reason=reason)
        key = _entity_key(insight)
        if placement.action == "dispatch" and active[key] >= settings.max_runs_per_entity:
            insight.next_attempt_at = now + ENTITY_BACKOFF
            counts["deferred"] += 1
            continue
        if not lifecycle.claim_insight(session, insight.id, expire=placement.action == "expire"):
            counts["lost_race"] += 1
            continue
        if placement.action == "expire":
            lifecycle.expire_insight(session, insight, reason=placement.reason, now=now)
            counts["expired"] += 1
            _record(session, None, insight, placement.level, placement.priority, placement.reason, "expired")
            continue
        queue = settings.queue_name(placement.level)
        run = prepare_run(session, insight, queue, placement.priority, now)
        active[key] += 1
        prepared.append(run)
        counts["dispatched"] += 1
        _record(session, run.run_id, insight, queue, placement.priority, placement.reason, "dispatched")
    return prepared, counts


def _record(
    session: Session,
    run_id: str | None,
    insight: ProactiveInsight,
    queue: str,
    priority: int,
    reason: str,
    outcome: str,
) -> None:
    session.add(
        AgentDecision(
            run_id=run_id,
            agent="orchestrator",
            kind="dispatch",
            input={
                "insight_id": insight.id,
                "severity": insight.severity,
                "queue": queue,
                "priority": priority,
                "retry_budget": STEP_RETRY_BUDGET,
                "reason": reason,
                "attempt": insight.attempts,
            },
            output={"outcome": outcome},
            status="done",
        )
    )


def resend_stale_runs(now: dt.datetime, settings: Settings) -> int:
    """Re-send runs queued long ago whose first step never started (the publish was lost)."""
    cutoff = now - dt.timedelta(seconds=settings.stale_dispatch_s)
    with session_scope() as session:
        started = select(AgentStep.run_id).where(AgentStep.run_id == AgentRun.id)
        stale = session.scalars(
            select(AgentRun)
            .where(AgentRun.status == "queued", AgentRun.enqueued_at < cutoff, ~started.exists())
            .limit(settings.dispatch_batch_size)
        ).all()
        runs = [
            PreparedRun(r.id, _request(r), r.queue or settings.queue_name("default"), r.priority or 5) for r in stale
        ]
        for run in stale:
            run.enqueued_at = now
    for prepared in runs:
        send_run(prepared)
    return len(runs)


def stalled_after_s(settings: Settings) -> float:
    """How long a running run may show no progress before it counts as stalled: longer than any
    step may run plus the time Redis takes to hand back the message of a worker that died."""
    return float(max(settings.stale_dispatch_s, settings.visibility_timeout_s + settings.task_time_limit_s))


def _resume_point(run: AgentRun, steps: dict[str, AgentStep]) -> tuple[str, dict[str, Any]] | None:
    """The step a stalled run continues from and its input (the previous step's stored output)."""
    previous_output: dict[str, Any] | None = dict(run.input) if run.input else None
    for name in STEP_NAMES:
        row = steps.get(name)
        if row is None or row.status != "done" or is_final(name):
            # Not started, lost mid-way, or the last step (whose outcome was never written): send
            # it again; a step that did finish returns its stored output without redoing anything.
            return (name, previous_output) if previous_output is not None else None
        previous_output = dict(row.output) if row.output else None
    return None


def resend_stalled_runs(now: dt.datetime, settings: Settings) -> int:
    """Re-send runs that stopped moving because a step message was lost on the way to a worker.

    Redis hands a message to a worker (BRPOP) a moment before it is recorded as unacknowledged;
    a worker killed in between takes the message with it, and nothing in the broker brings it
    back. The database knows better: a running run with no progress for `stalled_after_s` is
    sent again from the step it is stuck at. Duplicates are harmless — a finished step returns
    its stored output and every action claims its idempotency key."""
    threshold = stalled_after_s(settings)
    cutoff = now - dt.timedelta(seconds=threshold)
    resumes: list[tuple[str, str, dict[str, Any], str, int | None]] = []
    with session_scope() as session:
        stalled = session.scalars(
            select(AgentRun)
            .where(AgentRun.status.in_(("running", "retrying")), AgentRun.updated_at < cutoff)
            .order_by(AgentRun.updated_at)
            .limit(settings.dispatch_batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        for run in stalled:
            steps = {row.step: row for row in session.scalars(select(AgentStep).where(AgentStep.run_id == run.id))}
            resume = _resume_point(run, steps)
            run.updated_at = now  # the next look comes a full threshold later
            if resume is None:
                continue
            step_name, payload = resume
            session.add(
                AgentDecision(
                    run_id=run.id, step=step_name, agent="orchestrator", kind="resend",
                    input={"from_step": step_name, "reason": f"no progress for {threshold:.0f} s"},
                    output={"queued_at": now.isoformat()}, status="done",
                )
            )  # fmt: skip
            resumes.append((run.id, step_name, payload, run.queue or settings.queue_name("default"), run.priority))
    for run_id, step_name, payload, queue, priority in resumes:
        log.warning("run %s stalled: re-sent from its %s step", run_id, step_name)
        send_from_step(run_id, step_name, payload, queue, priority)
    return len(resumes)


def _request(run: AgentRun) -> Any:
    from switchboard.contracts import WatchRequest

    return WatchRequest.model_validate(run.input)


def poll(now: dt.datetime | None = None, settings: Settings | None = None, *, resend: bool = True) -> dict[str, int]:
    """One orchestrator pass: claim, place, dispatch (after commit); returns counts.

    `resend=False` (the immediate trigger for critical insights) skips the sweep for lost
    sends, which the periodic pass does, so a burst of triggers stays cheap."""
    settings = settings or get_settings()
    now = now or dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    with session_scope() as session:
        prepared, counts = claim_and_place(session, now, settings)
    for run in prepared:
        send_run(run)
    counts["resent"] = resend_stale_runs(now, settings) if resend else 0
    counts["stalled"] = resend_stalled_runs(now, settings) if resend else 0
    if any(counts.values()):
        log.info("orchestrator pass in %.0f ms: %s", (time.perf_counter() - started) * 1000, counts)
    return counts


@app.task(name="switchboard.tasks.orchestrator.poll_insights", acks_late=True, ignore_result=True)
def poll_insights(trigger: bool = False) -> dict[str, int]:
    """Beat job (and, with trigger=True, the immediate trigger for critical insights): one pass."""
    return poll(resend=not trigger)


def trigger_poll() -> None:
    """Ask for an orchestrator pass now (a new critical insight must not wait for the beat)."""
    poll_insights.apply_async(kwargs={"trigger": True})  # routed to the critical queue at priority 0
