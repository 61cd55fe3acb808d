"""Failed runs and their replay: re-run a failed run from the step that failed, with the input
that step received (persisted by the hooks). Steps that already finished are not re-run, and
side effects that already happened are not repeated: every action claims its idempotency key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from switchboard.db.models import AgentDecision, AgentRun, AgentStep, ProactiveInsight
from switchboard.db.session import session_scope
from switchboard.errors import SwitchboardError
from switchboard.pipeline import STEP_NAMES
from switchboard.settings import get_settings
from switchboard.tasks.runs import build_chain_from


class ReplayError(SwitchboardError):
    """The run cannot be replayed (unknown, not failed, or nothing to replay from)."""


def failed_runs(limit: int = 50) -> list[dict[str, Any]]:
    """The newest failed runs with the step that failed and the stored reason."""
    with session_scope() as session:
        runs = session.scalars(
            select(AgentRun).where(AgentRun.status == "failed").order_by(AgentRun.created_at.desc()).limit(limit)
        ).all()
        out = []
        for run in runs:
            step = session.scalars(
                select(AgentStep.step).where(AgentStep.run_id == run.id, AgentStep.status == "failed")
            ).first()
            out.append(
                {
                    "run_id": run.id,
                    "insight_id": run.insight_id,
                    "insight_kind": run.insight_kind,
                    "failed_step": step,
                    "error": run.error,
                    "retries": run.retries,
                    "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                }
            )
        return out


def replay(run_id: str, *, by: str = "cli") -> str:
    """Queue a failed run again from its failed step; returns that step's name."""
    with session_scope() as session:
        run = session.get(AgentRun, run_id, with_for_update=True)
        if run is None:
            raise ReplayError(f"no run {run_id}")
        if run.status != "failed":
            raise ReplayError(f"run {run_id} is {run.status}: only failed runs can be replayed")
        failed = session.scalars(
            select(AgentStep).where(AgentStep.run_id == run_id, AgentStep.status == "failed").order_by(AgentStep.id)
        ).first()
        if failed is None or failed.step not in STEP_NAMES:
            raise ReplayError(f"run {run_id} has no failed agent step to replay from")
        if failed.input is None or "raw" in failed.input:
            raise ReplayError(
                f"run {run_id}: the {failed.step} step's input was not stored as JSON; it cannot be replayed"
            )
        payload, step_name = dict(failed.input), failed.step
        queue = run.queue or get_settings().queue_name("default")
        priority = run.priority
        previous_error = run.error
        run.status = "queued"
        run.error = None
        run.finished_at = None
        if run.insight_id is not None:
            insight = session.get(ProactiveInsight, run.insight_id)
            if insight is not None:
                insight.status = "queued"
        session.add(
            AgentDecision(
                run_id=run_id,
                step=step_name,
                agent="operator",
                kind="replay",
                input={"from_step": step_name, "by": by, "previous_error": previous_error},
                output={"queued_at": dt.datetime.now(dt.UTC).isoformat()},
                status="done",
            )
        )
    send_from_step(run_id, step_name, payload, queue, priority)
    return step_name


def send_from_step(run_id: str, step_name: str, payload: dict[str, Any], queue: str, priority: int | None) -> None:
    """Publish the rest of a run's chain, starting at ``step_name`` with ``payload`` as its input."""
    use_priority = priority if priority is not None and get_settings().queue_priorities else None
    build_chain_from(run_id, step_name, payload, queue, use_priority).apply_async()
