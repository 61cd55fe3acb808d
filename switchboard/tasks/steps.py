"""The three agent steps as thin Celery tasks: validate the input contract, call the agent,
return the output contract. Retries and failures are the task base's (`tasks/base.py`),
bookkeeping the signal hooks', the step order `pipeline.py`'s."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from celery import Task

from switchboard import tracing
from switchboard.agents import advisor, analyst, watcher
from switchboard.agents.context import StepContext
from switchboard.celery_app import app
from switchboard.contracts import ActionPlan, Analysis, Contract, WatchRequest, WatchResult, parse_contract
from switchboard.pipeline import step_named
from switchboard.settings import get_settings
from switchboard.tasks.base import AgentStepTask

RESULT_REPR_CHARS = 200
_ALLOWED_OPTIONS = {"max_retries", "time_limit", "soft_time_limit"}

StepBody = Callable[[StepContext, Any], Contract]


def agent_task(step: str, **options: Any) -> Callable[[StepBody], Task[Any, Any]]:
    """Declare the task of pipeline step ``step``; unknown options fail at import, like
    dramatiq's actors. Retries, deferrals, permanent failures and a finished step's stored
    output are the task base's (`tasks/base.py`); bookkeeping is the hooks'."""
    unknown = set(options) - _ALLOWED_OPTIONS
    if unknown:
        raise TypeError(f"agent_task got unknown options {sorted(unknown)}; allowed: {sorted(_ALLOWED_OPTIONS)}")
    definition = step_named(step)

    def decorate(body: StepBody) -> Task[Any, Any]:
        # ignore_result: a step's outcome lives in Postgres (agent_steps.output, written by the
        # hooks) and the chain hands it to the next step in the message; a second copy in the
        # Redis result backend would cost a round trip per step and fail the step when Redis blinks.
        # resultrepr_maxsize: the start of the output is enough in Flower's task-succeeded event
        # (Celery renders it on every success; the whole output is on the dashboard).
        @app.task(
            name=definition.task_name, base=AgentStepTask, step=definition, bind=True, acks_late=True,
            reject_on_worker_lost=True, ignore_result=True, resultrepr_maxsize=RESULT_REPR_CHARS,
            **{"max_retries": 5, **options},
        )  # fmt: skip
        def run_step(self: AgentStepTask, payload: Any, *, run_id: str) -> dict[str, Any]:
            with tracing.agent_span(definition.agent, run_id, definition.name, self.request.retries + 1):
                begun = self.begin(payload, run_id)
                if isinstance(begun, dict):
                    return begun
                return body(begun, payload).model_dump(mode="json")

        return run_step

    return decorate


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@agent_task("watcher")
def watcher_step(ctx: StepContext, payload: Any) -> WatchResult:
    request = parse_contract(WatchRequest, payload, where="watcher input")
    return watcher.watch(ctx, request, get_settings(), _now())


@agent_task("analyst")
def analyst_step(ctx: StepContext, payload: Any) -> Analysis:
    watched = parse_contract(WatchResult, payload, where="analyst input")
    return analyst.analyse(ctx, watched, get_settings(), _now())


@agent_task("advisor")
def advisor_step(ctx: StepContext, payload: Any) -> ActionPlan:
    analysis = parse_contract(Analysis, payload, where="advisor input")
    settings = get_settings()
    result = advisor.plan(ctx, analysis, settings)
    ctx.notes["actions"] = advisor.apply_plan(result, settings)
    return result
