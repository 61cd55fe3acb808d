"""Failed runs and their replay: re-run a failed run from the step that failed, with the input
that step received (persisted by the hooks). Steps that already finished are not re-run, and
side effects that already happened are not repeated: every action claims its idempotency key.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from switchboard.db import runs as lifecycle
from switchboard.db.models import AgentRun, AgentStep
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from switchboard.tasks.runs import send_from_step


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
    """Queue a failed run again from its failed step; returns that step's name. NotFound for
    an unknown run, InvalidState (with the reason) for one that cannot be replayed."""
    with session_scope() as session:
        step_name, payload = lifecycle.requeue_failed_run(session, run_id, by=by, now=dt.datetime.now(dt.UTC))
        run = session.get(AgentRun, run_id)
        assert run is not None  # locked by requeue_failed_run
        queue, priority = run.queue or get_settings().queue_name("default"), run.priority
    send_from_step(run_id, step_name, payload, queue, priority)
    return step_name
