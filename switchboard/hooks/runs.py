"""Signal hooks that record every agent step's outcome through the run lifecycle
(`db/runs.py`): success, retry, failure — and stamp every published message with its send time.

Hooks observe: they read the step from the task's name (`pipeline.step_of_task`) and the
attempt's context from its request (`agents/context.attached`), never steer a task body, and
import no task module. Each runs in the worker thread that ran the task and never raises:
losing a metric must not lose the task's result.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from celery import signals

from switchboard.agents.context import StepContext, attached
from switchboard.db import runs as lifecycle
from switchboard.hooks import metrics
from switchboard.integrations.resilience import Deferred
from switchboard.pipeline import ENQUEUED_HEADER, step_of_task
from switchboard.redaction import scrub

log = logging.getLogger("switchboard.hooks")


def _safe(handler: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            log.exception("bookkeeping hook %s failed", handler.__name__)

    wrapper.__name__ = handler.__name__
    return wrapper


def _attempt(ctx: StepContext | None) -> lifecycle.Attempt:
    """What the attempt spent and said, as the lifecycle writes it (content scrubbed of secrets)."""
    if ctx is None:
        return lifecycle.Attempt()
    conversation = [
        {"role": entry.role, "content": scrub(entry.content), "provider": entry.provider, "model": entry.model,
         "tokens_in": entry.tokens_in, "tokens_out": entry.tokens_out}
        for entry in ctx.conversation
    ]  # fmt: skip
    return lifecycle.Attempt(
        tokens_in=ctx.tokens_in, tokens_out=ctx.tokens_out, cache_read_tokens=ctx.cache_read_tokens,
        cache_write_tokens=ctx.cache_write_tokens, cost_usd=ctx.cost_usd, provider=ctx.provider,
        model=ctx.model, entity_type=ctx.entity_type, entity_id=ctx.entity_id, conversation=conversation,
        raw_outputs=[scrub(text)[:8000] for text in ctx.raw_outputs],
    )  # fmt: skip


def _export(agent: str | None, latency_ms: float | None, ctx: StepContext | None) -> None:
    """Add the step to the Redis-held /metrics counters, after its rows are committed."""
    try:
        if ctx is None:
            metrics.record_step(agent, latency_ms)
        else:
            metrics.record_step(agent, latency_ms, ctx.provider, ctx.tokens_in, ctx.tokens_out, ctx.cost_usd,
                                ctx.cache_read_tokens, ctx.cache_write_tokens)  # fmt: skip
    except Exception:  # a metric lost to a Redis hiccup must not fail the bookkeeping
        log.exception("exporting step metrics failed")


@_safe
def stamp_enqueued_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Every published message carries its send time, so queue wait can be measured."""
    if headers is not None:
        headers.setdefault(ENQUEUED_HEADER, time.time())


@_safe
def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
    step = step_of_task(getattr(sender, "name", None))
    if step is None:
        return
    request = sender.request
    run_id = (request.kwargs or {}).get("run_id")
    if not run_id:
        return
    ctx = attached(request)
    output = result if isinstance(result, dict) else {"result": result}
    latency_ms = lifecycle.finish_step(
        run_id=run_id, step=step.name, agent=step.agent, now=dt.datetime.now(dt.UTC), output=output,
        attempt=_attempt(ctx),
    )  # fmt: skip
    _export(step.agent, latency_ms, ctx)
    log.info("run %s step %s done in %.0f ms", run_id, step.name, latency_ms or 0)


@_safe
def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    step = step_of_task(getattr(sender, "name", None))
    run_id = (getattr(request, "kwargs", None) or {}).get("run_id")
    if step is None or not run_id:
        return
    ctx = attached(request)
    lifecycle.retry_step(
        run_id=run_id, step=step.name, agent=step.agent, reason=scrub(f"{type(reason).__name__}: {reason}")[:4000],
        deferred=isinstance(getattr(reason, "exc", None), Deferred),  # nothing was sent: not a retry
        attempt=_attempt(ctx),
    )  # fmt: skip
    _export(None, None, ctx)
    log.warning("run %s step %s retrying: %s", run_id, step.name, scrub(str(reason))[:300])


@_safe
def on_failure(
    sender: Any = None, task_id: str | None = None, exception: BaseException | None = None, kwargs: Any = None, **_: Any
) -> None:
    step = step_of_task(getattr(sender, "name", None))
    run_id = (kwargs or {}).get("run_id")
    if step is None or not run_id:
        return
    ctx = attached(sender.request)
    reason = scrub(f"{type(exception).__name__}: {exception}")[:4000]
    latency_ms = lifecycle.fail_step(
        run_id=run_id, step=step.name, agent=step.agent, now=dt.datetime.now(dt.UTC), reason=reason,
        attempt=_attempt(ctx),
    )  # fmt: skip
    _export(step.agent, latency_ms, ctx)
    log.error("run %s failed at %s: %s", run_id, step.name, reason[:300])


def connect() -> None:
    signals.before_task_publish.connect(stamp_enqueued_at, weak=False)
    signals.task_success.connect(on_success, weak=False)
    signals.task_retry.connect(on_retry, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
