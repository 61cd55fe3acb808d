"""THE run lifecycle: the only code that changes run, step and insight status.

**Runs** go `queued → running ⇄ retrying → done | awaiting_approval → done | failed` (and
`expired` for routine work past its SLA). A step's attempt starts (`start_step`), then
succeeds (`finish_step`), retries (`retry_step`) or fails (`fail_step`); a step starts only
with its predecessor's output, so its start also closes the predecessor (even when the worker
that ran it died before recording it), and a redelivered step that already finished is handed
on as it is (`Prior`). The last step settles the run: waiting for approval while any of its
actions is pending one, until `settle_run` after the decisions.

Insights are **episodes**: an anomaly is one insight from the scan that first sees it until it
clears. While it persists, each scan adds an occurrence to that insight — whether its run is
still going or long finished — and a worse severity re-opens a finished one for another run.
Only when the detector no longer finds it (`clear_episodes`) or an operator resolves it
(`resolve_insight`) does the episode end; the next occurrence is a new insight. An operator may
also acknowledge an insight (`acknowledge_insight`: it is run, not expired, past its SLA) or
snooze it (`snooze_insight`: no run before then, however often it recurs). Actions are
keyed to the episode (`contracts.action_key`), so however often an episode is analysed, each
of its actions happens once.

Functions take the caller's `session` and never commit: the caller owns the transaction —
except the four step writes, each its own transaction by design (one statement on PostgreSQL,
`db/runs_postgres.py`; the portable path everywhere else, held to the same rows by
`tests/integration/test_step_hooks.py`), retried while the database is unreachable.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from switchboard import tracing
from switchboard.contracts import SEVERITY_ORDER, SOURCES, Alert
from switchboard.db import runs_postgres
from switchboard.db.models import (
    INSIGHT_STATUSES,
    OPEN_INSIGHT_STATUSES,
    AgentConversation,
    AgentDecision,
    AgentRun,
    AgentStep,
    Approval,
    ApprovalStatus,
    InsightStatus,
    ProactiveInsight,
    RunStatus,
    new_id,
)
from switchboard.db.session import database_unreachable, get_engine, get_for_update, session_scope
from switchboard.errors import InvalidState, NotFound
from switchboard.pipeline import is_final, previous_step
from switchboard.settings import Settings
from switchboard.utc import as_utc

log = logging.getLogger("switchboard.lifecycle")

# Finished work whose episode may go on: a persisting anomaly adds occurrences to it.
HANDLED_INSIGHT_STATUSES = (InsightStatus.DONE, InsightStatus.FAILED, InsightStatus.EXPIRED)
DETECTOR = "detector"


def record_occurrence(session: Session, alert: Alert, now: dt.datetime, settings: Settings) -> tuple[int, bool]:
    """Add an alert to its episode, or open a new one; (insight id, whether it is work to run).

    Work to run is a new episode, or a finished one whose severity got worse. The partial
    unique index on uncleared dedupe keys makes two concurrent scans converge on one insight.
    """
    for _ in range(3):
        episode = session.scalars(
            select(ProactiveInsight)
            .where(ProactiveInsight.dedupe_key == alert.dedupe_key, ProactiveInsight.cleared_at.is_(None))
            .with_for_update()
        ).first()
        if episode is not None:
            episode.occurrences += 1
            worse = SEVERITY_ORDER[alert.severity] > SEVERITY_ORDER[episode.severity]
            if worse:
                episode.severity = alert.severity
            if episode.status == InsightStatus.NEW:
                episode.payload = alert.model_dump(mode="json")
            if worse and episode.status in HANDLED_INSIGHT_STATUSES:
                # worse than when it was handled: run it again (its actions keep their keys) —
                # once its snooze is over, when an operator snoozed it
                episode.status = InsightStatus.NEW
                episode.payload = alert.model_dump(mode="json")
                episode.title = alert.title
                episode.attempts = 0
                episode.next_attempt_at = snoozed_until(episode, now) or now
                episode.sla_deadline = now + dt.timedelta(seconds=settings.sla_for(alert.severity))
                episode.traceparent = tracing.traceparent()  # its new run continues this scan's trace
                return episode.id, True
            return episode.id, False
        insight = ProactiveInsight(
            kind=alert.kind,
            source=alert.source,
            severity=alert.severity,
            title=alert.title,
            entity_type=alert.entity.type,
            entity_id=alert.entity.id,
            payload=alert.model_dump(mode="json"),
            dedupe_key=alert.dedupe_key,
            status=InsightStatus.NEW,
            sla_deadline=now + dt.timedelta(seconds=settings.sla_for(alert.severity)),
            next_attempt_at=now,
            traceparent=tracing.traceparent(),  # the event's or scan's span: the run continues its trace
        )
        try:
            with session.begin_nested():
                session.add(insight)
            return insight.id, True
        except IntegrityError:
            continue  # a concurrent scan inserted it first: add to that one
    raise RuntimeError(f"could not store insight {alert.dedupe_key}")


def clear_episodes(session: Session, *, kinds: Iterable[str], seen: Iterable[str], now: dt.datetime) -> int:
    """End the finished episodes of alert `kinds` whose detectors ran and no longer found them
    (their dedupe keys are not in `seen`); how many ended. Open ones are left to their run,
    whose Watcher step re-checks the alert."""
    kinds, seen = list(kinds), list(seen)
    if not kinds:
        return 0
    cleared = session.execute(
        update(ProactiveInsight)
        .where(
            ProactiveInsight.cleared_at.is_(None),
            ProactiveInsight.kind.in_(kinds),
            ProactiveInsight.status.in_(HANDLED_INSIGHT_STATUSES),
            ProactiveInsight.dedupe_key.not_in(seen),
        )
        .values(cleared_at=now, cleared_by=DETECTOR)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(cleared, "rowcount", 0) or 0)


def _uncleared(session: Session, insight_id: int, doing: str) -> ProactiveInsight:
    insight = get_for_update(session, ProactiveInsight, insight_id)
    if insight is None:
        raise NotFound(f"no insight {insight_id}")
    if insight.cleared_at is not None:
        raise InvalidState(f"insight {insight_id} is resolved (by {insight.cleared_by}): nothing to {doing}")
    return insight


def _note(insight: ProactiveInsight, note: str | None) -> None:
    if note:
        insight.note = note[:4000]


def resolve_insight(
    session: Session, insight_id: int, *, by: str, now: dt.datetime, note: str | None = None
) -> ProactiveInsight:
    """An operator ends an episode: no run is dispatched for it any more, and the anomaly's
    next occurrence is a new insight. Refused while a run is working on it."""
    insight = get_for_update(session, ProactiveInsight, insight_id)
    if insight is None:
        raise NotFound(f"no insight {insight_id}")
    if insight.status in OPEN_INSIGHT_STATUSES and insight.status != InsightStatus.NEW:
        raise InvalidState(f"insight {insight_id} is {insight.status}: resolve it once its run has finished")
    if insight.cleared_at is None:
        insight.cleared_at = now
        insight.cleared_by = by[:64]
        insight.next_attempt_at = None
        _note(insight, note)
    return insight


def acknowledge_insight(
    session: Session, insight_id: int, *, by: str, now: dt.datetime, note: str | None = None
) -> ProactiveInsight:
    """An operator has seen it and owns it: recorded; routine work past its SLA is run rather
    than expired (the orchestrator), since a person is waiting for the answer."""
    insight = _uncleared(session, insight_id, "acknowledge")
    insight.acknowledged_at, insight.acknowledged_by = now, by[:64]
    _note(insight, note)
    return insight


def snooze_insight(
    session: Session, insight_id: int, *, until: dt.datetime, by: str, now: dt.datetime, note: str | None = None
) -> ProactiveInsight:
    """No run for it before `until`: the orchestrator does not claim it, and a worse occurrence
    the Watcher sees re-opens it for then, not now. Occurrences are still counted."""
    until = as_utc(until)
    if until <= now:
        raise InvalidState(f"snooze until {until.isoformat()} is not in the future")
    insight = _uncleared(session, insight_id, "snooze")
    insight.snoozed_until = until
    if insight.status == InsightStatus.NEW:
        insight.next_attempt_at = max(as_utc(insight.next_attempt_at or now), until)
    insight.acknowledged_at = insight.acknowledged_at or now  # snoozing it is seeing it
    insight.acknowledged_by = insight.acknowledged_by or by[:64]
    _note(insight, note or f"snoozed by {by} until {until.isoformat()}")
    return insight


def snoozed_until(insight: ProactiveInsight, now: dt.datetime) -> dt.datetime | None:
    """When the insight's snooze ends, if it is snoozed now."""
    if insight.snoozed_until is None or as_utc(insight.snoozed_until) <= now:
        return None
    return as_utc(insight.snoozed_until)


QUARANTINE = "quarantine"  # cleared_by of an insight Switchboard cannot run


def unfit(insight: Any) -> str | None:
    """Why a stored insight cannot be run as the contracts say — a row the old stack wrote into
    an adopted `proactive_insights`, or any row not made by Switchboard — or None."""
    problems = []
    if insight.status not in INSIGHT_STATUSES:
        problems.append(f"status {insight.status!r} is not one of {', '.join(INSIGHT_STATUSES)}")
    if insight.severity not in SEVERITY_ORDER:
        problems.append(f"severity {insight.severity!r} is not one of {', '.join(SEVERITY_ORDER)}")
    if insight.source in SOURCES or insight.source is None:
        try:
            Alert.model_validate(insight.payload)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "payload"
            problems.append(f"its payload is not an alert ({where}: {first['msg']})")
    return "; ".join(problems) or None


def quarantine_insight(session: Session, insight: ProactiveInsight, *, reason: str, now: dt.datetime) -> None:
    """Set an unfit insight aside, with the reason: never run, out of the open list, kept as it is."""
    insight.quarantine_reason = reason[:4000]
    insight.cleared_at = insight.cleared_at or now
    insight.cleared_by = QUARANTINE
    insight.next_attempt_at = None


def open_insight(session: Session, **fields: Any) -> None:
    """An insight raised by something other than a detector (an eval regression): new work."""
    session.add(ProactiveInsight(status=InsightStatus.NEW, **fields))


# --------------------------------------------------------------------------- runs


def queue_run(
    session: Session, insight: ProactiveInsight, *, queue: str, priority: int, now: dt.datetime,
    request: dict[str, Any], run_id: str | None = None, trace_id: str | None = None,
) -> str:  # fmt: skip
    """Record a queued run for ``insight`` (whose run it becomes) and mark the insight queued."""
    run_id = run_id or new_id()
    session.add(
        AgentRun(id=run_id, insight_id=insight.id, insight_kind=insight.kind, status=RunStatus.QUEUED, queue=queue,
                 priority=priority, enqueued_at=now, input=request, trace_id=trace_id)
    )  # fmt: skip
    insight.status = InsightStatus.QUEUED
    insight.run_id = run_id
    insight.queue = queue
    insight.attempts += 1
    return run_id


def claim_insight(session: Session, insight_id: int, *, expire: bool) -> bool:
    """Take a new insight for dispatch (or expiry): compare-and-set from `new`, so of several
    orchestrators exactly one wins; whether this one did."""
    claimed = session.execute(
        update(ProactiveInsight)
        .where(ProactiveInsight.id == insight_id, ProactiveInsight.status == InsightStatus.NEW)
        .values(status=InsightStatus.EXPIRED if expire else InsightStatus.QUEUED)
        .execution_options(synchronize_session=False)
    )
    return getattr(claimed, "rowcount", 0) == 1


def expire_insight(session: Session, insight: ProactiveInsight, *, reason: str, now: dt.datetime) -> None:
    """A claimed routine insight past its SLA: an `expired` run records that it was never run."""
    session.add(
        AgentRun(id=new_id(), insight_id=insight.id, insight_kind=insight.kind, status=RunStatus.EXPIRED, error=reason,
                 finished_at=now)
    )  # fmt: skip
    insight.status = InsightStatus.EXPIRED


def requeue_failed_run(session: Session, run_id: str, *, by: str, now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """Queue a failed run again from its failed step; (that step, the input it received).
    NotFound for an unknown run, InvalidState with the reason for one that cannot be replayed."""
    run = get_for_update(session, AgentRun, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    if run.status != RunStatus.FAILED:
        raise InvalidState(f"run {run_id} is {run.status}: only failed runs can be replayed")
    failed = session.scalars(
        select(AgentStep).where(AgentStep.run_id == run_id, AgentStep.status == RunStatus.FAILED).order_by(AgentStep.id)
    ).first()
    if failed is None:
        raise InvalidState(f"run {run_id} has no failed agent step to replay from")
    if failed.input is None or "raw" in failed.input:
        raise InvalidState(
            f"run {run_id}: the {failed.step} step's input was not stored as JSON; it cannot be replayed"
        )
    previous_error = run.error
    run.status = RunStatus.QUEUED
    run.error = None
    run.finished_at = None
    if run.insight_id is not None:
        insight = session.get(ProactiveInsight, run.insight_id)
        if insight is not None:
            insight.status = InsightStatus.QUEUED
    session.add(
        AgentDecision(run_id=run_id, step=failed.step, agent="operator", kind="replay",
                      input={"from_step": failed.step, "by": by, "previous_error": previous_error},
                      output={"queued_at": now.isoformat()}, status="done")
    )  # fmt: skip
    return failed.step, dict(failed.input)


def settle_run(session: Session, run_id: str) -> None:
    """A run waiting for approvals is done once none is pending or approved-but-unexecuted."""
    open_count = session.scalar(
        select(func.count())
        .select_from(Approval)
        .where(Approval.run_id == run_id, Approval.status.in_((ApprovalStatus.PENDING, ApprovalStatus.APPROVED)))
    )
    run = get_for_update(session, AgentRun, run_id)
    if open_count or run is None or run.status != RunStatus.AWAITING_APPROVAL:
        return
    run.status = RunStatus.DONE
    _set_insight_status(session, run, InsightStatus.DONE)


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Prior:
    """A step's state when an attempt of it starts: a finished step's output is handed on
    instead of being made again, and the Advisor re-uses a plan an earlier attempt persisted
    instead of asking the model for a second one."""

    status: str | None
    output: dict[str, Any] | None


@dataclass(frozen=True)
class Attempt:
    """What one attempt of a step spent and said, written with its outcome."""

    tokens_in: int = 0
    tokens_out: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0  # None: unknown (a model without a price)
    provider: str | None = None
    model: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    conversation: list[dict[str, Any]] = field(default_factory=list)  # rows, secrets scrubbed
    raw_outputs: list[str] = field(default_factory=list)  # unparseable model answers, scrubbed


RAW_OUTPUTS = "raw_outputs"  # a failed step's unparseable model answers, kept in its output
T = TypeVar("T")
# An outcome that cannot be written because the database is down (a restart, a failover) is
# written when it is back, not lost: the write waits, in the worker, for up to this long.
OUTAGE_WAIT_S = 60.0


def _on_postgres() -> bool:
    return get_engine().dialect.name == "postgresql"


def _transaction(write: Callable[[Session], T], *, autocommit: bool = False, wait_s: float = OUTAGE_WAIT_S) -> T:
    """Run ``write`` in one transaction (or, with ``autocommit``, its one statement), retried
    from scratch while the database is unreachable, for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    delay = 0.25
    while True:
        try:
            with session_scope(autocommit=autocommit) as session:
                return write(session)
        except Exception as error:
            if not database_unreachable(error) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable while recording a step (%s); retrying", type(error).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def ms_between(start: dt.datetime | None, end: dt.datetime) -> float | None:
    """Milliseconds from ``start`` (None: unknown) to ``end``."""
    return (end - as_utc(start)).total_seconds() * 1000 if start else None


def _lock_step(session: Session, run_id: str, step: str, agent: str) -> tuple[AgentRun, AgentStep] | None:
    """The run (locked first: the writes of one run serialise on its row, on both databases: `get_for_update`)
    and its step's row, made if missing; None for an unknown run."""
    run = get_for_update(session, AgentRun, run_id)
    return (run, _step_row(session, run_id, step, agent)) if run is not None else None


def _step_row(session: Session, run_id: str, step: str, agent: str) -> AgentStep:
    row = session.scalars(
        select(AgentStep).where(AgentStep.run_id == run_id, AgentStep.step == step).with_for_update()
    ).first()
    if row is None:
        row = AgentStep(run_id=run_id, step=step, agent=agent, status=RunStatus.PENDING, attempt=0, retries=0)
        session.add(row)
        session.flush()
    return row


def _set_insight_status(session: Session, run: AgentRun, status: str) -> None:
    if run.insight_id is not None:
        insight = session.get(ProactiveInsight, run.insight_id)
        if insight is not None and insight.run_id == run.id:
            insight.status = status


def add_cost(total: float | None, cost: float | None) -> float | None:
    """A sum of costs in which one unknown makes the total unknown (as SQL's + with NULL)."""
    return None if total is None or cost is None else total + cost


def _add_usage(step: AgentStep, run: AgentRun, attempt: Attempt) -> None:
    for row in (step, run):
        row.tokens_in += attempt.tokens_in
        row.tokens_out += attempt.tokens_out
        row.cache_read_tokens += attempt.cache_read_tokens
        row.cache_write_tokens += attempt.cache_write_tokens
        row.cost_usd = add_cost(row.cost_usd, attempt.cost_usd)
    step.provider = attempt.provider or step.provider
    step.model = attempt.model or step.model
    if attempt.provider:
        providers = set(filter(None, (run.provider or "").split("+"))) | {attempt.provider}
        run.provider = "+".join(sorted(providers))
        run.model = attempt.model


def _write_conversation(session: Session, run_id: str, step: str, agent: str, attempt: Attempt) -> None:
    for row in attempt.conversation:
        session.add(
            AgentConversation(run_id=run_id, step=step, agent=agent, entity_type=attempt.entity_type,
                              entity_id=attempt.entity_id, **row)
        )  # fmt: skip


def _prior(found: tuple[str | None, dict[str, Any] | None] | None) -> Prior | None:
    return Prior(*found) if found is not None else None


def start_step(
    *, run_id: str, step: str, agent: str, task_id: str | None, queue: str | None, now: dt.datetime,
    enqueued: dt.datetime | None, step_input: dict[str, Any] | None,
) -> Prior | None:  # fmt: skip
    """An attempt of ``step`` starts: the step (unless it already finished), its run and
    insight are running, its predecessor done. The step's prior state, or None for an unknown run."""
    previous = previous_step(step)
    wait_ms = ms_between(enqueued, now)
    if _on_postgres():
        return _transaction(
            lambda session: _prior(runs_postgres.step_started(
                session, run_id=run_id, step=step, agent=agent, previous=previous, task_id=task_id, queue=queue,
                now=now, enqueued=enqueued, wait_ms=wait_ms, step_input=step_input,
            )),
            autocommit=True,
            wait_s=0,
        )  # fmt: skip

    def write(session: Session) -> Prior | None:
        locked = _lock_step(session, run_id, step, agent)
        if locked is None:
            return None
        run, row = locked
        # a row made just now was not there before: no prior state (as on PostgreSQL)
        prior = (
            Prior(None, None) if row.attempt == 0 and row.status == RunStatus.PENDING else Prior(row.status, row.output)
        )
        if row.status != RunStatus.DONE:  # a finished step is handed on as it is (see Prior)
            row.status = RunStatus.RUNNING
            row.attempt += 1
            row.task_id = task_id
            row.queue = queue
            row.started_at = now
            row.enqueued_at = enqueued
            row.queue_wait_ms = wait_ms
            if row.input is None:
                row.input = step_input
        run.status = RunStatus.RUNNING
        run.agent = agent
        if run.started_at is None:
            run.started_at = now
            run.queue_wait_ms = wait_ms
        _set_insight_status(session, run, InsightStatus.RUNNING)
        if previous is not None:
            session.execute(
                update(AgentStep)
                .where(AgentStep.run_id == run_id, AgentStep.step == previous, AgentStep.status != RunStatus.DONE)
                .values(status=RunStatus.DONE, error=None, finished_at=func.coalesce(AgentStep.finished_at, now))
            )
        return prior

    # no wait: a start that cannot be written is deferred by the task (`tasks/base.py`), which
    # frees the worker instead of holding it through the outage
    return _transaction(write, wait_s=0)


def finish_step(
    *, run_id: str, step: str, agent: str, now: dt.datetime, output: dict[str, Any], attempt: Attempt
) -> float | None:
    """``step`` succeeded with ``output``; after the last step the run is settled. Its latency (ms)."""
    final = is_final(step)
    if _on_postgres():
        return _transaction(
            lambda session: runs_postgres.step_succeeded(
                session, run_id=run_id, step=step, agent=agent, final=final, now=now, output=output,
                tokens_in=attempt.tokens_in, tokens_out=attempt.tokens_out, cache_read=attempt.cache_read_tokens,
                cache_write=attempt.cache_write_tokens, cost_usd=attempt.cost_usd,
                provider=attempt.provider, model=attempt.model,
                entity_type=attempt.entity_type, entity_id=attempt.entity_id, conversation=attempt.conversation,
            )[1],
            autocommit=True,
        )  # fmt: skip

    def write(session: Session) -> float | None:
        locked = _lock_step(session, run_id, step, agent)
        if locked is None:
            return None
        run, row = locked
        _add_usage(row, run, attempt)
        if row.status != RunStatus.DONE or row.output is None:
            # a step its own success already recorded (done, with its output) keeps that outcome;
            # one closed by its successor's start (done, no output) gets it now
            row.output = output
            row.finished_at = now
            row.latency_ms = ms_between(row.started_at, now)
        row.status = RunStatus.DONE
        row.error = None
        _write_conversation(session, run_id, step, agent, attempt)
        if final:
            pending = session.scalar(
                select(func.count())
                .select_from(Approval)
                .where(Approval.run_id == run_id, Approval.status == ApprovalStatus.PENDING)
            )
            run.status = RunStatus.AWAITING_APPROVAL if pending else RunStatus.DONE
            run.finished_at = now
            run.latency_ms = ms_between(run.enqueued_at or run.created_at, now)
            run.error = None
            _set_insight_status(session, run, run.status)
        return row.latency_ms

    return _transaction(write)


def retry_step(*, run_id: str, step: str, agent: str, reason: str, deferred: bool, attempt: Attempt) -> None:
    """``step`` will be tried again; a deferral (nothing was sent) is not counted as a retry."""

    def write(session: Session) -> None:
        locked = _lock_step(session, run_id, step, agent)
        if locked is None:
            return
        run, row = locked
        _add_usage(row, run, attempt)
        if row.status == RunStatus.DONE:
            # a second runner of a step its twin already finished (a redelivered message next to
            # a live one): what it spent counts, its retry does not undo the step's outcome
            return
        row.status = RunStatus.RETRYING
        row.retries += 0 if deferred else 1
        row.error = reason
        run.status = RunStatus.RETRYING
        run.retries += 0 if deferred else 1

    _transaction(write)


def fail_step(*, run_id: str, step: str, agent: str, now: dt.datetime, reason: str, attempt: Attempt) -> float | None:
    """``step`` failed for good: the run (and its insight) failed, with the reason. Its latency (ms)."""

    def write(session: Session) -> float | None:
        locked = _lock_step(session, run_id, step, agent)
        if locked is None:
            return None
        run, row = locked
        _add_usage(row, run, attempt)
        if row.status == RunStatus.DONE:
            return None  # a stale twin of a finished step: the run went on without it
        row.status = RunStatus.FAILED
        row.finished_at = now
        row.latency_ms = ms_between(row.started_at, now)
        row.error = reason
        if attempt.raw_outputs:
            # beside what the step already stored: the Advisor's persisted plan must survive,
            # or a replay would ask for a second plan and act on both
            row.output = {**(row.output or {}), RAW_OUTPUTS: attempt.raw_outputs}
        _write_conversation(session, run_id, step, agent, attempt)
        run.status = RunStatus.FAILED
        run.agent = agent
        run.error = f"{step}: {reason}"
        run.finished_at = now
        run.latency_ms = ms_between(run.enqueued_at or run.created_at, now)
        _set_insight_status(session, run, InsightStatus.FAILED)
        return row.latency_ms

    return _transaction(write)
