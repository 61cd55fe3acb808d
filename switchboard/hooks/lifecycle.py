"""Process and task lifecycle hooks: fresh DB pools after fork, one log line per outcome."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import signals

from switchboard.db.session import dispose_engines

log = logging.getLogger("switchboard.tasks")

_STARTED = "switchboard_started_at"  # perf_counter at the start, on the task's own request


def _after_fork(**_: Any) -> None:
    # Pooled connections inherited from the parent must not be shared with it.
    dispose_engines()


def _task_prerun(task: Any = None, **_: Any) -> None:
    if task is not None:
        setattr(task.request, _STARTED, time.perf_counter())


def _task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = getattr(getattr(task, "request", None), _STARTED, None)
    duration_ms = (time.perf_counter() - started) * 1000 if started is not None else -1.0
    delivery = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    log.info(
        "task %s %s %s queue=%s in %.1f ms",
        getattr(task, "name", "?"),
        task_id,
        state,
        delivery.get("routing_key"),
        duration_ms,
    )


def connect() -> None:
    signals.worker_process_init.connect(_after_fork, weak=False)
    signals.task_prerun.connect(_task_prerun, weak=False)
    signals.task_postrun.connect(_task_postrun, weak=False)
