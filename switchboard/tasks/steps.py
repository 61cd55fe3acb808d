"""The three agent steps as thin Celery tasks: validate the input contract, call the agent,
return the output contract. Retries, failures and metrics are handled by `agent_task` and the
signal hooks, not here."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from typing import Any

from celery import Task

from switchboard.agents import advisor, analyst, watcher
from switchboard.agents.context import Prior, StepContext, open_context, read_prior, take_prior
from switchboard.celery_app import app
from switchboard.contracts import ActionPlan, Analysis, Contract, WatchRequest, WatchResult, parse_contract
from switchboard.db.session import database_unreachable
from switchboard.errors import Permanent, Retryable
from switchboard.integrations.resilience import Deferred
from switchboard.settings import get_settings

BACKOFF_BASE_S = 2.0
RESULT_REPR_CHARS = 200
_ALLOWED_OPTIONS = {"max_retries", "time_limit", "soft_time_limit"}

StepBody = Callable[[StepContext, Any], Contract]


def retry_countdown(retries: int, retry_after_s: float | None) -> float:
    """Exponential backoff with full jitter, capped; never sooner than the server asked."""
    cap = get_settings().retry_backoff_cap_s
    backoff = random.uniform(0, min(cap, BACKOFF_BASE_S * (2**retries)))
    return min(cap, max(backoff, retry_after_s or 0.0))


DEFERRALS_HEADER = "sb_deferrals"


def defer(task: Task[Any, Any], deferred: Deferred) -> Exception:
    """Re-queue ``task`` because a call could not be made now (open circuit, spent rate budget).
    Nothing was sent, so a deferral does not use up the task's retry budget."""
    request = task.request
    deferrals = int(request.get(DEFERRALS_HEADER) or 0) + 1
    headers = {**(request.headers or {}), DEFERRALS_HEADER: deferrals}
    headers.pop("sb_enqueued_at", None)  # the re-queued message gets its own send time
    return task.retry(  # type: ignore[no-any-return]
        exc=deferred, countdown=deferred.retry_after_s or 1.0, max_retries=request.retries + 1, headers=headers
    )


# A database that cannot be reached (restart, failover, a network blip) is an outage, not a
# fault of this step: the step waits it out without using up its retry budget, for up to
# DB_OUTAGE_MAX_DEFERRALS * DB_OUTAGE_RETRY_S (about 5 minutes), and only then counts retries.
DB_OUTAGE_RETRY_S = 3.0
DB_OUTAGE_MAX_DEFERRALS = 100


def deferrals(task: Task[Any, Any]) -> int:
    """How many times the task was re-queued without a real attempt."""
    return int(task.request.get(DEFERRALS_HEADER) or 0)


def real_retries(task: Task[Any, Any]) -> int:
    """Retries of the task so far, not counting deferrals (which sent nothing)."""
    return int(task.request.retries or 0) - int(task.request.get(DEFERRALS_HEADER) or 0)


def retry_budget(task: Task[Any, Any]) -> int:
    """The task's max_retries, not counting deferrals."""
    return int(task.max_retries or 0) + int(task.request.get(DEFERRALS_HEADER) or 0)


def _prior(task_id: str, run_id: str, step: str) -> Prior:
    """The step's state before this attempt: as the start hook found it, or (when the hook
    could not record the start) read here."""
    return take_prior(task_id) or read_prior(run_id, step)


def agent_task(*, step: str, agent: str, **options: Any) -> Callable[[StepBody], Task[Any, Any]]:
    """Declare an agent step task; unknown options fail at import, like dramatiq's actors."""
    unknown = set(options) - _ALLOWED_OPTIONS
    if unknown:
        raise TypeError(f"agent_task got unknown options {sorted(unknown)}; allowed: {sorted(_ALLOWED_OPTIONS)}")
    name = f"switchboard.agents.{step}"

    def decorate(body: StepBody) -> Task[Any, Any]:
        # ignore_result: a step's outcome lives in Postgres (agent_steps.output, written by the
        # hooks) and the chain hands it to the next step in the message; a second copy in the
        # Redis result backend would cost a round trip per step and fail the step when Redis blinks.
        # resultrepr_maxsize: the start of the output is enough in Flower's task-succeeded event
        # (Celery renders it on every success; the whole output is on the dashboard).
        @app.task(
            name=name, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True,
            resultrepr_maxsize=RESULT_REPR_CHARS, **{"max_retries": 5, **options},
        )  # fmt: skip
        def run_step(self: Task[Any, Any], payload: Any, *, run_id: str) -> dict[str, Any]:
            try:
                prior = _prior(str(self.request.id), run_id, step)
                if prior.status == "done" and prior.output:
                    # A redelivered message of a finished step hands the stored output on
                    # instead of calling the model (and paying) again.
                    return dict(prior.output)
                ctx = open_context(
                    StepContext(run_id=run_id, step=step, agent=agent, task_id=str(self.request.id), prior=prior)
                )
                return body(ctx, payload).model_dump(mode="json")
            except Permanent:
                raise
            except Deferred as deferred:  # nothing was sent (open circuit, rate budget): no retry used up
                raise defer(self, deferred) from None
            except Retryable as error:
                countdown = retry_countdown(real_retries(self), error.retry_after_s)
                raise self.retry(exc=error, countdown=countdown, max_retries=retry_budget(self)) from None
            except Exception as error:  # unexpected: retried a bounded number of times, then failed
                if database_unreachable(error) and deferrals(self) < DB_OUTAGE_MAX_DEFERRALS:
                    outage = Deferred(f"database unreachable ({type(error).__name__})", retry_after_s=DB_OUTAGE_RETRY_S)
                    raise defer(self, outage) from None
                countdown = retry_countdown(real_retries(self), None)
                raise self.retry(exc=error, countdown=countdown, max_retries=retry_budget(self)) from None

        return run_step

    return decorate


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@agent_task(step="watcher", agent="watcher")
def watcher_step(ctx: StepContext, payload: Any) -> WatchResult:
    request = parse_contract(WatchRequest, payload, where="watcher input")
    return watcher.watch(ctx, request, get_settings(), _now())


@agent_task(step="analyst", agent="analyst")
def analyst_step(ctx: StepContext, payload: Any) -> Analysis:
    watched = parse_contract(WatchResult, payload, where="analyst input")
    return analyst.analyse(ctx, watched, get_settings(), _now())


@agent_task(step="advisor", agent="advisor")
def advisor_step(ctx: StepContext, payload: Any) -> ActionPlan:
    analysis = parse_contract(Analysis, payload, where="advisor input")
    settings = get_settings()
    result = advisor.plan(ctx, analysis, settings)
    ctx.notes["actions"] = advisor.apply_plan(result, settings)
    return result
