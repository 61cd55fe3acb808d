"""Poison messages end as a dead-letter row, never as a redelivery loop or a silent drop.

Celery already acknowledges what it cannot use — an undecodable body, a task name nobody
registered, a message of unknown shape — but it only logs it. Here each of those, and a step
message that names a run that does not exist, is written to ``dead_letters`` with the reason,
the queue, the task name and id, and a redacted excerpt of the body, so an operator can see
it (`switchboard dead-letters`) and nothing is lost without a trace.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.worker.consumer import Consumer

from switchboard.pipeline import step_of_task
from switchboard.redaction import redact, scrub

log = logging.getLogger("switchboard.dead_letters")

BODY_EXCERPT_CHARS = 2000


def _excerpt(body: Any) -> str:
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body).decode("utf-8", errors="replace")
    else:
        text = repr(body) if not isinstance(body, str) else body
    return scrub(text[:BODY_EXCERPT_CHARS])


def record_dead_letter(
    reason: str,
    *,
    queue: str | None = None,
    task_name: str | None = None,
    task_id: str | None = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
) -> None:
    """Write one dead-letter row; never raises (the message is acknowledged either way)."""
    from switchboard.db.models import DeadLetter
    from switchboard.db.session import session_scope

    try:
        with session_scope() as session:
            session.add(
                DeadLetter(
                    reason=scrub(reason)[:2000],
                    queue=queue,
                    task_name=(task_name or None) and str(task_name)[:200],
                    task_id=(task_id or None) and str(task_id)[:64],
                    headers=redact({str(k): _jsonable(v) for k, v in (headers or {}).items()}),
                    body_excerpt=_excerpt(body) if body is not None else None,
                )
            )
        log.error("dead letter: %s (task %s, id %s, queue %s)", scrub(reason), task_name, task_id, queue)
    except Exception:
        log.exception("could not record a dead letter: %s", scrub(reason))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


def _queue_of(message: Any) -> str | None:
    delivery = getattr(message, "delivery_info", None) or {}
    return delivery.get("routing_key") or delivery.get("exchange") or None


class DeadLetterConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, recording undecodable messages before it acknowledges them."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        headers = dict(getattr(message, "headers", None) or {})
        record_dead_letter(
            f"undecodable message ({type(exc).__name__}: {exc}); content type {message.content_type!r}",
            queue=_queue_of(message),
            task_name=headers.get("task"),
            task_id=headers.get("id"),
            headers=headers,
            body=message.body,
        )
        super().on_decode_error(message, exc)


def _on_unknown_task(message: Any = None, exc: Exception | None = None, name: str | None = None,
                     id: str | None = None, **_: Any) -> None:  # fmt: skip
    record_dead_letter(
        f"unknown task {name!r}: no worker registers it",
        queue=_queue_of(message),
        task_name=name,
        task_id=id,
        headers=dict(getattr(message, "headers", None) or {}),
        body=getattr(message, "body", None),
    )


def _on_rejected(message: Any = None, exc: Exception | None = None, **_: Any) -> None:
    headers = dict(getattr(message, "headers", None) or {})
    what = f"{type(exc).__name__}: {exc}" if exc is not None else "a message of unknown format"
    record_dead_letter(
        f"rejected message ({what})",
        queue=_queue_of(message),
        task_name=headers.get("task"),
        task_id=headers.get("id"),
        headers=headers,
        body=getattr(message, "body", None),
    )


def _on_step_failure(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                     args: Any = None, kwargs: Any = None, **_: Any) -> None:  # fmt: skip
    # A step message naming no existing run has nowhere to record its failure: dead-letter it.
    from switchboard.db.models import AgentRun
    from switchboard.db.session import session_scope

    name = getattr(sender, "name", None)
    if step_of_task(name) is None:
        return
    run_id = (kwargs or {}).get("run_id")
    try:
        with session_scope() as session:
            exists = isinstance(run_id, str) and session.get(AgentRun, run_id) is not None
    except Exception:
        return  # the database is unreachable: the step's own retry path deals with that
    if not exists:
        record_dead_letter(
            f"step message for unknown run {run_id!r}: {type(exception).__name__}: {exception}",
            queue=_queue_of(getattr(sender, "request", None)),
            task_name=name,
            task_id=task_id,
            body={"args": args, "kwargs": kwargs},
        )


_connected = False


def connect() -> None:
    """Connect the dead-letter signal handlers once per process."""
    global _connected
    if not _connected:
        signals.task_unknown.connect(_on_unknown_task, weak=False)
        signals.task_rejected.connect(_on_rejected, weak=False)
        signals.task_failure.connect(_on_step_failure, weak=False)
        _connected = True
