"""The one task base: what a Switchboard task does when a call fails, written once.

- a `Permanent` error fails the task at once (the hooks record the reason);
- a `Deferred` call — an open circuit, a spent rate budget, the database unreachable — re-queues
  it after the wait it names, without spending a retry: nothing was sent;
- a `Retryable` error retries with exponential backoff and full jitter, capped, never sooner
  than the server's `Retry-After`;
- any other error fails the task, or, for tasks that say `retry_unexpected`, retries a bounded
  number of times too.

`AgentStepTask` adds what every agent step does before its body: record the attempt's start
(`db/runs.start_step`), hand a step that already finished on with its stored output instead
of calling the model again, and open the step's context on the task request, where the hooks
find it. Nothing here is process-wide state: under a thread pool, each task has its own request.

Every task on this base holds a deadline at its soft time limit (`switchboard/timelimit.py`):
Celery keeps time limits on prefork only, and the workers run the thread pool by default.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any, ClassVar

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from switchboard import timelimit
from switchboard.agents.context import StepContext, attach
from switchboard.db import runs as lifecycle
from switchboard.db.session import database_unreachable
from switchboard.errors import ConfigurationError, Permanent, Retryable
from switchboard.integrations.resilience import Deferred
from switchboard.pipeline import ENQUEUED_HEADER, Step
from switchboard.redaction import redact, scrub
from switchboard.settings import get_settings

BACKOFF_BASE_S = 2.0
DEFERRALS_HEADER = "sb_deferrals"
# A database that cannot be reached (restart, failover, a network blip) is an outage, not a
# fault of the task: it waits it out without using up its retry budget, for up to
# DB_OUTAGE_MAX_DEFERRALS * DB_OUTAGE_RETRY_S (about 5 minutes), and only then counts retries.
DB_OUTAGE_RETRY_S = 3.0
DB_OUTAGE_MAX_DEFERRALS = 100


def retry_countdown(retries: int, retry_after_s: float | None) -> float:
    """Exponential backoff with full jitter, capped; never sooner than the server asked."""
    cap = get_settings().retry_backoff_cap_s
    backoff = random.uniform(0, min(cap, BACKOFF_BASE_S * (2**retries)))
    return min(cap, max(backoff, retry_after_s or 0.0))


def deferrals(task: Task[Any, Any]) -> int:
    """How many times the task was re-queued without a real attempt."""
    return int(task.request.get(DEFERRALS_HEADER) or 0)


def real_retries(task: Task[Any, Any]) -> int:
    """Retries of the task so far, not counting deferrals (which sent nothing)."""
    return int(task.request.retries or 0) - deferrals(task)


def retry_budget(task: Task[Any, Any]) -> int:
    """The task's max_retries, not counting deferrals."""
    return int(task.max_retries or 0) + deferrals(task)


def defer(task: Task[Any, Any], deferred: Deferred) -> Exception:
    """Re-queue ``task`` because a call could not be made now. Nothing was sent, so a deferral
    does not use up the task's retry budget."""
    request = task.request
    headers = {**(request.headers or {}), DEFERRALS_HEADER: deferrals(task) + 1}
    headers.pop(ENQUEUED_HEADER, None)  # the re-queued message gets its own send time
    return task.retry(  # type: ignore[no-any-return]
        exc=deferred, countdown=deferred.retry_after_s or 1.0, max_retries=request.retries + 1, headers=headers
    )


class SwitchboardTask(Task):  # type: ignore[misc]
    """Base of every task that calls out (bind=True is implied by `self` in `__call__`)."""

    abstract = True
    retry_unexpected: ClassVar[bool] = False
    # Expected failures: Celery records them as failed and logs one line, not an error with a
    # traceback ("raised unexpected"); the reason is stored by the hooks (or the job).
    throws = (Permanent, ConfigurationError)

    def soft_time_limit_s(self) -> float | None:
        """This delivery's soft limit: the tightest of the message's, the task's and the app's."""
        _hard, soft = self.request.timelimit or (None, None)
        limits = [float(x) for x in (soft, self.soft_time_limit, self.app.conf.task_soft_time_limit) if x]
        return min(limits) if limits else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            with timelimit.running(self.soft_time_limit_s()):  # kept on the thread pool too
                return self.run(*args, **kwargs)
        except SoftTimeLimitExceeded:  # Celery's own (prefork), reported as the thread pool's
            limit = float(self.soft_time_limit_s() or 0)
            raise timelimit.exceeded_error(limit, limit, "finishing") from None
        except (Permanent, ConfigurationError):  # retrying will not set a missing key
            raise
        except Deferred as deferred:  # nothing was sent: no retry used up
            raise defer(self, deferred) from None
        except Retryable as error:
            countdown = retry_countdown(real_retries(self), error.retry_after_s)
            raise self.retry(exc=error, countdown=countdown, max_retries=retry_budget(self)) from None
        except Exception as error:
            if database_unreachable(error) and deferrals(self) < DB_OUTAGE_MAX_DEFERRALS:
                outage = Deferred(f"database unreachable ({type(error).__name__})", retry_after_s=DB_OUTAGE_RETRY_S)
                raise defer(self, outage) from None
            if not self.retry_unexpected:
                raise
            countdown = retry_countdown(real_retries(self), None)
            raise self.retry(exc=error, countdown=countdown, max_retries=retry_budget(self)) from None


class AgentStepTask(SwitchboardTask):
    """Base of the agent steps: `step` says which; the body is `run(payload, run_id=...)`."""

    abstract = True
    retry_unexpected = True  # a model or parser surprise gets a bounded number of retries
    step: ClassVar[Step]

    def begin(self, payload: Any, run_id: str) -> StepContext | dict[str, Any]:
        """Record this attempt's start; the stored output of a step that already finished, or
        the context the body fills (attached to the task request for the hooks)."""
        request = self.request
        now = dt.datetime.now(dt.UTC)
        sent = request.get(ENQUEUED_HEADER)
        step_input = redact(payload) if isinstance(payload, dict) else {"raw": scrub(repr(payload))[:2000]}
        prior = lifecycle.start_step(
            run_id=run_id, step=self.step.name, agent=self.step.agent, task_id=request.id,
            queue=(request.delivery_info or {}).get("routing_key"), now=now,
            enqueued=dt.datetime.fromtimestamp(float(sent), dt.UTC) if sent else None, step_input=step_input,
        ) or lifecycle.Prior(None, None)  # fmt: skip
        if prior.status == "done" and prior.output:
            # A redelivered message of a finished step hands the stored output on instead of
            # calling the model (and paying) again.
            return dict(prior.output)
        context = StepContext(
            run_id=run_id, step=self.step.name, agent=self.step.agent, task_id=str(request.id), prior=prior
        )
        return attach(request, context)
