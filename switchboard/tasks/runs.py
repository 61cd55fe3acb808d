"""Building and dispatching runs: a run is chain(watcher, analyst, advisor) on one queue.

`build_run_chain` is pure (it only wires signatures); `prepare_run` records the run inside
the caller's transaction; `send_run` publishes it after that transaction commits, so a worker
that picks the message up always finds the run row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from celery import chain
from celery.canvas import Signature
from opentelemetry.trace import Span
from sqlalchemy.orm import Session

from switchboard import tracing
from switchboard.celery_app import app
from switchboard.contracts import Alert, WatchRequest
from switchboard.db import runs as lifecycle
from switchboard.db.models import ProactiveInsight, new_id
from switchboard.db.session import get_for_update, session_scope
from switchboard.pipeline import steps_from
from switchboard.scheduling import LEVEL_BY_SEVERITY, PRIORITY_BY_LEVEL
from switchboard.settings import get_settings


@dataclass(frozen=True)
class PreparedRun:
    run_id: str
    request: WatchRequest
    queue: str
    priority: int
    span: Span | None = None  # its `run {kind}` span, started, entered by `send_run`


def build_chain_from(
    run_id: str, step_name: str, payload: dict[str, Any], queue: str, priority: int | None
) -> Signature:
    """The rest of a run's canvas from ``step_name`` (its input ``payload``): each step on
    ``queue`` (with ``priority`` unless None), the run id on every step. Steps are named by
    their task names (`pipeline.Step.task_name`), so building a chain imports no task module."""
    options: dict[str, Any] = {"queue": queue}
    if priority is not None:
        options["priority"] = priority
    signatures = []
    for index, step in enumerate(steps_from(step_name)):
        # argsrepr: what Flower and the worker log show as the step's arguments. Celery would
        # otherwise render the payload itself (up to 1 KiB, walked on every publish); the
        # payload is in agent_steps.input, on the dashboard.
        step_options = {**options, "argsrepr": f"(<{step.takes.__name__} of run {run_id}>,)"}
        args = (payload,) if index == 0 else ()
        signatures.append(app.signature(step.task_name, args, {"run_id": run_id}).set(**step_options))
    return chain(*signatures)


def build_run_chain(run_id: str, request: WatchRequest, queue: str, priority: int | None) -> Signature:
    """The run's canvas: watcher → analyst → advisor (see `build_chain_from`)."""
    return build_chain_from(run_id, "watcher", request.model_dump(mode="json"), queue, priority)


def prepare_run(
    session: Session, insight: ProactiveInsight, queue: str, priority: int, now: dt.datetime
) -> PreparedRun:
    """Record a queued run for ``insight`` and mark the insight queued (caller commits). Its
    `run {kind}` span starts now, under the span that raised the insight, and is entered when
    the run is sent (`send_run`), so the steps are its children."""
    run_id = new_id()
    request = WatchRequest(run_id=run_id, insight_id=insight.id, alert=Alert.model_validate(insight.payload))
    attributes = {"switchboard.insight.id": insight.id, "switchboard.queue": queue, "switchboard.priority": priority}
    span = tracing.start_run_span(insight.kind, run_id, insight.traceparent, **attributes)
    lifecycle.queue_run(
        session,
        insight,
        queue=queue,
        priority=priority,
        now=now,
        request=request.model_dump(mode="json"),
        run_id=run_id,
        trace_id=tracing.span_trace_id(span),
    )
    return PreparedRun(run_id, request, queue, priority, span)


def send_from_step(run_id: str, step_name: str, payload: dict[str, Any], queue: str, priority: int | None) -> None:
    """Publish the rest of a run's chain, starting at ``step_name`` with ``payload`` as its input
    (a replay, or a stalled run re-sent)."""
    use_priority = priority if priority is not None and get_settings().queue_priorities else None
    build_chain_from(run_id, step_name, payload, queue, use_priority).apply_async()


def send_run(prepared: PreparedRun) -> None:
    """Publish a prepared run's chain, inside its run span."""
    priority = prepared.priority if get_settings().queue_priorities else None
    with tracing.entered(prepared.span):
        build_run_chain(prepared.run_id, prepared.request, prepared.queue, priority).apply_async()


def dispatch_insight(insight_id: int, *, queue: str | None = None, priority: int | None = None) -> str:
    """Dispatch one insight now, bypassing the orchestrator's policy (demo, replays, tests)."""
    settings = get_settings()
    with session_scope() as session:
        insight = get_for_update(session, ProactiveInsight, insight_id)
        if insight is None:
            raise LookupError(f"no insight {insight_id}")
        level = LEVEL_BY_SEVERITY[insight.severity]
        prepared = prepare_run(
            session,
            insight,
            queue or settings.queue_name(level),
            PRIORITY_BY_LEVEL[level] if priority is None else priority,
            dt.datetime.now(dt.UTC),
        )
    send_run(prepared)
    return prepared.run_id
