"""Read models over the run tables: the recent-runs list used by the CLI, demo and API."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select

from switchboard.db.models import ActionExecution, AgentRun, Approval
from switchboard.db.session import session_scope

TERMINAL_RUN_STATUSES = ("done", "failed", "awaiting_approval", "expired")


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def recent_runs(limit: int = 50, run_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The newest runs (or the given ones) as plain dicts, with their actions summarised."""
    with session_scope() as session:
        query = select(AgentRun).order_by(AgentRun.created_at.desc(), AgentRun.id.desc())
        query = query.where(AgentRun.id.in_(run_ids)) if run_ids is not None else query.limit(limit)
        runs = list(session.scalars(query))
        ids = [run.id for run in runs]
        executed = Counter(session.scalars(select(ActionExecution.run_id).where(ActionExecution.run_id.in_(ids))).all())
        approvals: dict[str, Counter[str]] = {}
        for run_id, status in session.execute(
            select(Approval.run_id, Approval.status).where(Approval.run_id.in_(ids))
        ).all():
            approvals.setdefault(run_id, Counter())[status] += 1
        return [
            {
                "run_id": run.id,
                "insight_id": run.insight_id,
                "insight_kind": run.insight_kind,
                "agent": run.agent,
                "status": run.status,
                "queue": run.queue,
                "latency_ms": None if run.latency_ms is None else round(run.latency_ms, 1),
                "queue_wait_ms": None if run.queue_wait_ms is None else round(run.queue_wait_ms, 1),
                "tokens_in": run.tokens_in,
                "tokens_out": run.tokens_out,
                "cost_usd": round(run.cost_usd, 6),
                "provider": run.provider,
                "model": run.model,
                "retries": run.retries,
                "error": run.error,
                "actions_executed": executed.get(run.id, 0),
                "actions_awaiting_approval": approvals.get(run.id, Counter()).get("pending", 0),
                "created_at": _iso(run.created_at),
                "finished_at": _iso(run.finished_at),
            }
            for run in runs
        ]
