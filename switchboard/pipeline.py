"""A run's steps, in order, with the contract each takes and returns — pure definitions.

A run is watcher → analyst → advisor: each step is one Celery task (`tasks/steps.py`) named
`task_name`, whose input is the previous step's output contract. Everything that needs step
order, step names or which step is last reads it here (chains, the run lifecycle, replay, the
orchestrator's re-send, logs, dead letters); nothing here imports Celery or the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.contracts import ActionPlan, Analysis, Contract, WatchRequest, WatchResult


@dataclass(frozen=True)
class Step:
    name: str
    agent: str
    takes: type[Contract]
    returns: type[Contract]

    @property
    def task_name(self) -> str:
        """The Celery task that runs this step."""
        return f"switchboard.agents.{self.name}"


# Every published message carries its send time in this header (hooks/runs.py stamps it), so a
# step's queue wait can be measured where it starts.
ENQUEUED_HEADER = "sb_enqueued_at"

STEPS: tuple[Step, ...] = (
    Step("watcher", "watcher", WatchRequest, WatchResult),
    Step("analyst", "analyst", WatchResult, Analysis),
    Step("advisor", "advisor", Analysis, ActionPlan),
)
STEP_NAMES: tuple[str, ...] = tuple(step.name for step in STEPS)
AGENTS: tuple[str, ...] = tuple(dict.fromkeys(step.agent for step in STEPS))
FIRST_STEP = STEPS[0].name
FINAL_STEP = STEPS[-1].name

_BY_NAME = {step.name: step for step in STEPS}
_BY_TASK = {step.task_name: step for step in STEPS}


def step_named(name: str) -> Step:
    """The step called ``name`` (KeyError for another name)."""
    return _BY_NAME[name]


def step_of_task(task_name: str | None) -> Step | None:
    """The step a Celery task name runs, or None for any other task."""
    return _BY_TASK.get(task_name or "")


def previous_step(name: str) -> str | None:
    """The step before ``name`` (None for the first)."""
    index = STEP_NAMES.index(name)
    return STEP_NAMES[index - 1] if index > 0 else None


def steps_from(name: str) -> tuple[Step, ...]:
    """``name`` and every step after it."""
    return STEPS[STEP_NAMES.index(name) :]


def is_final(name: str) -> bool:
    """Whether ``name`` is the run's last step (its success settles the run)."""
    return name == FINAL_STEP
