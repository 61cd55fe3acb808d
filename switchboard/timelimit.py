"""A task's time limit, kept by Switchboard as well as by Celery.

Celery enforces `task_time_limit` and `task_soft_time_limit` only in the prefork pool; the thread
pool (the workers' default) lets a task run as long as it takes. Every external call is bounded
by its client's timeout (`SWITCHBOARD_LLM_TIMEOUT_S`, `SWITCHBOARD_INTEGRATION_TIMEOUT_S`), so
what can outrun the limit is a task that makes many calls: a tool loop, retries waited out in
place. The task base opens a deadline at the soft limit (`running`); every call through the
resilience layer checks it first (`check`), and past it the task fails permanently with
`TimeLimitExceeded`, as Celery's soft limit ends a prefork task. That keeps the invariants the
limit stands for on both pools: a task ends well inside the broker's visibility timeout (so it is
not delivered twice while it runs) and inside an action's lease (so nobody takes it over).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from switchboard.errors import TimeLimitExceeded


@dataclass(frozen=True)
class _Deadline:
    started: float
    soft_limit_s: float


_current: ContextVar[_Deadline | None] = ContextVar("switchboard_task_deadline", default=None)


@contextmanager
def running(soft_limit_s: float | None) -> Iterator[None]:
    """Hold a deadline of ``soft_limit_s`` from now for the code inside (per thread and task)."""
    token = _current.set(_Deadline(time.monotonic(), soft_limit_s) if soft_limit_s else None)
    try:
        yield
    finally:
        _current.reset(token)


def exceeded_error(elapsed_s: float, soft_limit_s: float, before: str) -> TimeLimitExceeded:
    return TimeLimitExceeded(
        f"the task ran {elapsed_s:.0f} s, past its soft time limit of {soft_limit_s:g} s, and stopped before "
        f"{before} (raise SWITCHBOARD_TASK_TIME_LIMIT_S, which must stay below SWITCHBOARD_VISIBILITY_TIMEOUT_S)"
    )


def check(before: str) -> None:
    """Raise `TimeLimitExceeded` if the current task is past its deadline (no deadline: no-op)."""
    deadline = _current.get()
    if deadline is None:
        return
    elapsed = time.monotonic() - deadline.started
    if elapsed > deadline.soft_limit_s:
        raise exceeded_error(elapsed, deadline.soft_limit_s, before)


def remaining_s() -> float:
    """Seconds left before the current task's soft limit (infinite outside a task)."""
    deadline = _current.get()
    if deadline is None:
        return float("inf")
    return max(0.0, deadline.soft_limit_s - (time.monotonic() - deadline.started))
