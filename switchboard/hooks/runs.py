"""Signal hooks that write every agent step's outcome back: agent_steps, agent_runs totals,
the insight's status, and the step's conversation. Task bodies never do this bookkeeping.

Each hook runs in the worker thread/process that ran the task, in its own transaction, and
never raises: losing a metric must not lose the task's result.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import signals
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from switchboard.agents.context import RAW_OUTPUTS, Prior, StepContext, pop_context, remember_prior
from switchboard.db.models import AgentConversation, AgentRun, AgentStep, Approval, ProactiveInsight
from switchboard.db.session import database_unreachable, get_engine, session_scope
from switchboard.hooks import metrics, postgres
from switchboard.integrations.resilience import Deferred
from switchboard.pipeline import is_final, previous_step, step_of_task
from switchboard.redaction import redact, scrub

log = logging.getLogger("switchboard.hooks")

ENQUEUED_HEADER = "sb_enqueued_at"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite returns naive datetimes; every stored time is UTC.
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _ms_between(start: dt.datetime | None, end: dt.datetime) -> float | None:
    start = _aware(start)
    return (end - start).total_seconds() * 1000 if start else None


def _step_of(task: Any) -> tuple[str, str] | None:
    step = step_of_task(getattr(task, "name", None))
    return (step.name, step.agent) if step is not None else None


def _safe(handler: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            log.exception("bookkeeping hook %s failed", handler.__name__)

    wrapper.__name__ = handler.__name__
    return wrapper


T = TypeVar("T")

# An outcome that cannot be written because the database is down (a restart, a failover) is
# written when it is back, not lost: the hook waits, in the worker, for up to this long.
HOOK_DB_OUTAGE_S = 60.0


def _transaction(write: Callable[[Session], T], *, autocommit: bool = False) -> T:
    """Run ``write`` in one transaction (or, with ``autocommit``, its one statement), retried
    from scratch while the database is unreachable."""
    deadline = time.monotonic() + HOOK_DB_OUTAGE_S
    delay = 0.25
    while True:
        try:
            with session_scope(autocommit=autocommit) as session:
                return write(session)
        except Exception as error:
            if not database_unreachable(error) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unreachable while recording an outcome (%s); retrying", type(error).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _step_row(session: Session, run_id: str, step: str, agent: str) -> AgentStep:
    row = session.scalars(
        select(AgentStep).where(AgentStep.run_id == run_id, AgentStep.step == step).with_for_update()
    ).first()
    if row is None:
        row = AgentStep(run_id=run_id, step=step, agent=agent, status="pending", attempt=0, retries=0)
        session.add(row)
        session.flush()
    return row


def _close_previous_step(session: Session, run_id: str, step_name: str, now: dt.datetime) -> None:
    # A step starts only with its predecessor's output, so the predecessor finished — even when
    # the worker that ran it died between publishing this step and writing its own outcome.
    previous = previous_step(step_name)
    if previous is None:
        return
    session.execute(
        update(AgentStep)
        .where(AgentStep.run_id == run_id, AgentStep.step == previous, AgentStep.status != "done")
        .values(status="done", error=None, finished_at=func.coalesce(AgentStep.finished_at, now))
    )


def _set_insight_status(session: Session, run: AgentRun, status: str) -> None:
    if run.insight_id is not None:
        insight = session.get(ProactiveInsight, run.insight_id)
        if insight is not None and insight.run_id == run.id:
            insight.status = status


def _add_usage(step: AgentStep, run: AgentRun, ctx: StepContext | None) -> None:
    if ctx is None:
        return
    step.tokens_in += ctx.tokens_in
    step.tokens_out += ctx.tokens_out
    step.cost_usd += ctx.cost_usd
    step.provider = ctx.provider or step.provider
    step.model = ctx.model or step.model
    run.tokens_in += ctx.tokens_in
    run.tokens_out += ctx.tokens_out
    run.cost_usd += ctx.cost_usd
    if ctx.provider:
        providers = set(filter(None, (run.provider or "").split("+"))) | {ctx.provider}
        run.provider = "+".join(sorted(providers))
        run.model = ctx.model


def _export(agent: str | None, latency_ms: float | None, ctx: StepContext | None) -> None:
    """Add the step to the Redis-held /metrics counters, after its rows are committed."""
    try:
        if ctx is None:
            metrics.record_step(agent, latency_ms)
        else:
            metrics.record_step(agent, latency_ms, ctx.provider, ctx.tokens_in, ctx.tokens_out, ctx.cost_usd)
    except Exception:  # a metric lost to a Redis hiccup must not fail the bookkeeping
        log.exception("exporting step metrics failed")


def _conversation(ctx: StepContext | None) -> list[dict[str, Any]]:
    """The step's messages as rows (content scrubbed of secrets)."""
    if ctx is None:
        return []
    return [
        {"role": entry.role, "content": scrub(entry.content), "provider": entry.provider, "model": entry.model,
         "tokens_in": entry.tokens_in, "tokens_out": entry.tokens_out}
        for entry in ctx.conversation
    ]  # fmt: skip


def _write_conversation(session: Session, ctx: StepContext | None) -> None:
    if ctx is None:
        return
    for row in _conversation(ctx):
        session.add(
            AgentConversation(run_id=ctx.run_id, step=ctx.step, agent=ctx.agent, entity_type=ctx.entity_type,
                              entity_id=ctx.entity_id, **row)
        )  # fmt: skip


def _usage(ctx: StepContext | None) -> postgres.Usage:
    if ctx is None:
        return postgres.Usage()
    return postgres.Usage(ctx.tokens_in, ctx.tokens_out, ctx.cost_usd, ctx.provider, ctx.model)


@_safe
def stamp_enqueued_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Every published message carries its send time, so queue wait can be measured."""
    if headers is not None:
        headers.setdefault(ENQUEUED_HEADER, time.time())


def _on_postgres() -> bool:
    return get_engine().dialect.name == "postgresql"


@_safe
def on_prerun(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    which = _step_of(task)
    run_id = (kwargs or {}).get("run_id")
    if which is None or not run_id:
        return
    step_name, agent = which
    now = _now()
    sent = task.request.get(ENQUEUED_HEADER)
    enqueued = dt.datetime.fromtimestamp(float(sent), dt.UTC) if sent else None
    queue = (task.request.delivery_info or {}).get("routing_key")
    step_input: dict[str, Any] | None = None
    if args:
        step_input = redact(args[0]) if isinstance(args[0], dict) else {"raw": scrub(repr(args[0]))[:2000]}

    def started(session: Session) -> Prior | None:
        return postgres.step_started(
            session, run_id=run_id, step=step_name, agent=agent, previous=previous_step(step_name),
            task_id=task_id, queue=queue, now=now, enqueued=enqueued, wait_ms=_ms_between(enqueued, now),
            step_input=step_input,
        )  # fmt: skip

    def write(session: Session) -> Prior | None:
        run = session.get(AgentRun, run_id, with_for_update=True)
        if run is None:
            return None
        step = _step_row(session, run_id, step_name, agent)
        prior = Prior(step.status, step.output)
        if step.status != "done":  # a finished step is handed on as it is (see Prior)
            step.status = "running"
            step.attempt += 1
            step.task_id = task_id
            step.queue = queue
            step.started_at = now
            step.enqueued_at = enqueued
            step.queue_wait_ms = _ms_between(enqueued, now)
            if step.input is None:
                step.input = step_input
        run.status = "running"
        run.agent = agent
        if run.started_at is None:
            run.started_at = now
            run.queue_wait_ms = _ms_between(enqueued, now)
        _set_insight_status(session, run, "running")
        _close_previous_step(session, run_id, step_name, now)
        return prior

    prior = _transaction(started, autocommit=True) if _on_postgres() else _transaction(write)
    if prior is None:
        log.warning("step %s of unknown run %s", step_name, run_id)
    elif task_id:
        remember_prior(task_id, prior)


@_safe
def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    which = _step_of(sender)
    if which is None:
        return
    request = sender.request
    run_id = (request.kwargs or {}).get("run_id")
    ctx = pop_context(str(request.id))
    if not run_id:
        return
    step_name, agent = which
    now = _now()
    output = result if isinstance(result, dict) else {"result": result}
    final = is_final(step_name)

    def succeeded(session: Session) -> float | None:
        _, latency = postgres.step_succeeded(
            session, run_id=run_id, step=step_name, agent=agent, final=final, now=now, output=output,
            usage=_usage(ctx), entity_type=ctx.entity_type if ctx else None,
            entity_id=ctx.entity_id if ctx else None, conversation=_conversation(ctx),
        )  # fmt: skip
        return latency

    def write(session: Session) -> float | None:
        run = session.get(AgentRun, run_id, with_for_update=True)
        if run is None:
            return None
        step = _step_row(session, run_id, step_name, agent)
        _add_usage(step, run, ctx)
        if step.status != "done" or step.output is None:
            # a step its own success already recorded (done, with its output) keeps that outcome;
            # one closed by its successor's start (done, no output) gets it now
            step.output = output
            step.finished_at = now
            step.latency_ms = _ms_between(step.started_at, now)
        step.status = "done"
        step.error = None
        _write_conversation(session, ctx)
        if final:
            pending = session.scalar(
                select(func.count())
                .select_from(Approval)
                .where(Approval.run_id == run_id, Approval.status == "pending")
            )
            run.status = "awaiting_approval" if pending else "done"
            run.finished_at = now
            run.latency_ms = _ms_between(run.enqueued_at or run.created_at, now)
            run.error = None
            _set_insight_status(session, run, run.status)
        return step.latency_ms

    latency_ms = _transaction(succeeded, autocommit=True) if _on_postgres() else _transaction(write)
    _export(agent, latency_ms, ctx)
    log.info("run %s step %s done in %.0f ms", run_id, step_name, latency_ms or 0)


@_safe
def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    which = _step_of(sender)
    run_id = (getattr(request, "kwargs", None) or {}).get("run_id")
    if which is None or not run_id:
        return
    ctx = pop_context(str(request.id))
    step_name, agent = which

    def write(session: Session) -> None:
        run = session.get(AgentRun, run_id, with_for_update=True)
        if run is None:
            return
        step = _step_row(session, run_id, step_name, agent)
        _add_usage(step, run, ctx)
        deferred = isinstance(getattr(reason, "exc", None), Deferred)  # nothing was sent: not a retry
        step.status = "retrying"
        step.retries += 0 if deferred else 1
        step.error = scrub(f"{type(reason).__name__}: {reason}")[:4000]
        run.status = "retrying"
        run.retries += 0 if deferred else 1

    _transaction(write)
    _export(None, None, ctx)
    log.warning("run %s step %s retrying: %s", run_id, step_name, scrub(str(reason))[:300])


@_safe
def on_failure(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, kwargs: Any = None, **_: Any
) -> None:
    which = _step_of(sender)
    run_id = (kwargs or {}).get("run_id")
    if which is None or not run_id:
        return
    ctx = pop_context(str(task_id))
    step_name, agent = which
    now = _now()
    reason = scrub(f"{type(exception).__name__}: {exception}")[:4000]

    def write(session: Session) -> float | None:
        run = session.get(AgentRun, run_id, with_for_update=True)
        if run is None:
            return None
        step = _step_row(session, run_id, step_name, agent)
        _add_usage(step, run, ctx)
        step.status = "failed"
        step.finished_at = now
        step.latency_ms = _ms_between(step.started_at, now)
        step.error = reason
        if ctx is not None and ctx.raw_outputs:
            # beside what the step already stored: the Advisor's persisted plan must survive,
            # or a replay would ask for a second plan and act on both
            raw = [scrub(text)[:8000] for text in ctx.raw_outputs]
            step.output = {**(step.output or {}), RAW_OUTPUTS: raw}
        _write_conversation(session, ctx)
        run.status = "failed"
        run.agent = agent
        run.error = f"{step_name}: {reason}"
        run.finished_at = now
        run.latency_ms = _ms_between(run.enqueued_at or run.created_at, now)
        _set_insight_status(session, run, "failed")
        return step.latency_ms

    latency_ms = _transaction(write)
    _export(agent, latency_ms, ctx)
    log.error("run %s failed at %s: %s", run_id, step_name, reason[:300])


def connect() -> None:
    signals.before_task_publish.connect(stamp_enqueued_at, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_success.connect(on_success, weak=False)
    signals.task_retry.connect(on_retry, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
