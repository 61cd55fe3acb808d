"""Read models over the run tables: the recent-runs list, one run's detail and the dashboard's
chart series, shared by the CLI, the demo, the API and /metrics.

Chart queries aggregate in the database on PostgreSQL (percentile_cont, date_trunc) and in
Python on SQLite, whose embedded deployments hold little data and have no percentile function.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from switchboard.contracts import describe_action
from switchboard.db.models import (
    INSIGHT_STATUSES,
    OPEN_INSIGHT_STATUSES,
    SEVERITIES,
    ActionExecution,
    AgentConversation,
    AgentDecision,
    AgentRun,
    AgentStep,
    Approval,
    EvalResult,
    EvalRun,
    ProactiveInsight,
    SourceRecord,
)
from switchboard.db.session import get_engine, session_scope
from switchboard.errors import NotFound
from switchboard.pipeline import AGENTS
from switchboard.settings import EVAL_RATE_METRICS, get_settings
from switchboard.utc import as_utc

TERMINAL_RUN_STATUSES = ("done", "failed", "awaiting_approval", "expired")
MAX_CHART_HOURS = 24 * 7
MAX_CHART_DAYS = 90


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).isoformat()


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _trace_url(trace_id: str | None) -> str | None:
    """Where the run's trace is (SWITCHBOARD_TRACE_URL_TEMPLATE), when it has one."""
    template = get_settings().trace_url_template
    return template.replace("{trace_id}", trace_id) if template and trace_id else None


def _run_summary(run: AgentRun, executed: int, pending: int) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "insight_id": run.insight_id,
        "insight_kind": run.insight_kind,
        "agent": run.agent,
        "status": run.status,
        "queue": run.queue,
        "latency_ms": _round(run.latency_ms),
        "queue_wait_ms": _round(run.queue_wait_ms),
        "tokens_in": run.tokens_in,
        "tokens_out": run.tokens_out,
        "cache_read_tokens": run.cache_read_tokens,
        "cache_write_tokens": run.cache_write_tokens,
        "cost_usd": round(run.cost_usd, 6) if run.cost_usd is not None else None,
        "provider": run.provider,
        "model": run.model,
        "retries": run.retries,
        "error": run.error,
        "replay_of": run.replay_of,
        "trace_id": run.trace_id,
        "trace_url": _trace_url(run.trace_id),
        "actions_executed": executed,
        "actions_awaiting_approval": pending,
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
    }


def recent_runs(
    limit: int = 50,
    run_ids: list[str] | None = None,
    *,
    agent: str | None = None,
    status: str | None = None,
    insight_kind: str | None = None,
) -> list[dict[str, Any]]:
    """The newest runs (or the given ones), optionally filtered, with their actions summarised."""
    with session_scope() as session:
        query = select(AgentRun).order_by(AgentRun.created_at.desc(), AgentRun.id.desc())
        if agent:
            query = query.where(AgentRun.agent == agent)
        if status:
            query = query.where(AgentRun.status == status)
        if insight_kind:
            query = query.where(AgentRun.insight_kind == insight_kind)
        query = query.where(AgentRun.id.in_(run_ids)) if run_ids is not None else query.limit(limit)
        runs = list(session.scalars(query))
        ids = [run.id for run in runs]
        if not ids:
            return []
        executed = Counter(session.scalars(select(ActionExecution.run_id).where(ActionExecution.run_id.in_(ids))).all())
        pending = Counter(
            session.scalars(select(Approval.run_id).where(Approval.run_id.in_(ids), Approval.status == "pending")).all()
        )
        return [_run_summary(run, executed.get(run.id, 0), pending.get(run.id, 0)) for run in runs]


def run_filter_options() -> dict[str, list[str]]:
    """The values the runs list can be filtered by (agents, statuses, insight kinds seen)."""
    from switchboard.db.models import RUN_STATUSES

    with session_scope() as session:
        kinds = session.scalars(
            select(ProactiveInsight.kind).distinct().order_by(ProactiveInsight.kind).limit(200)
        ).all()
    return {"agent": list(AGENTS), "status": list(RUN_STATUSES), "insight_kind": list(kinds)}


def _step_dict(step: AgentStep) -> dict[str, Any]:
    return {
        "step": step.step,
        "agent": step.agent,
        "status": step.status,
        "task_id": step.task_id,
        "queue": step.queue,
        "attempt": step.attempt,
        "retries": step.retries,
        "enqueued_at": _iso(step.enqueued_at),
        "started_at": _iso(step.started_at),
        "finished_at": _iso(step.finished_at),
        "queue_wait_ms": _round(step.queue_wait_ms),
        "latency_ms": _round(step.latency_ms),
        "tokens_in": step.tokens_in,
        "tokens_out": step.tokens_out,
        "cache_read_tokens": step.cache_read_tokens,
        "cache_write_tokens": step.cache_write_tokens,
        "cost_usd": round(step.cost_usd, 6) if step.cost_usd is not None else None,
        "provider": step.provider,
        "model": step.model,
        "error": step.error,
        "input": step.input,
        "output": step.output,
    }


def _decision_dict(row: AgentDecision) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "step": row.step,
        "agent": row.agent,
        "tool": row.tool,
        "status": row.status,
        "attempts": row.attempts,
        "latency_ms": _round(row.latency_ms),
        "error_class": row.error_class,
        "error_message": row.error_message,
        "input": row.input,
        "output": row.output,
        "created_at": _iso(row.created_at),
    }


def run_detail(run_id: str) -> dict[str, Any] | None:
    """One run with its steps, tool calls, other decisions, approvals and executed actions."""
    with session_scope() as session:
        run = session.get(AgentRun, run_id)
        if run is None:
            return None
        steps = session.scalars(select(AgentStep).where(AgentStep.run_id == run_id).order_by(AgentStep.id)).all()
        decisions = session.scalars(
            select(AgentDecision).where(AgentDecision.run_id == run_id).order_by(AgentDecision.id)
        ).all()
        approvals = session.scalars(select(Approval).where(Approval.run_id == run_id).order_by(Approval.id)).all()
        executions = session.scalars(
            select(ActionExecution).where(ActionExecution.run_id == run_id).order_by(ActionExecution.id)
        ).all()
        messages = session.scalar(
            select(func.count()).select_from(AgentConversation).where(AgentConversation.run_id == run_id)
        )
        insight = session.get(ProactiveInsight, run.insight_id) if run.insight_id is not None else None
        pending = sum(1 for a in approvals if a.status == "pending")
        detail = _run_summary(run, len(executions), pending)
        detail.update(
            {
                "task": run.task,
                "priority": run.priority,
                "enqueued_at": _iso(run.enqueued_at),
                "started_at": _iso(run.started_at),
                "input": run.input,
                "insight": None
                if insight is None
                else {
                    "id": insight.id,
                    "kind": insight.kind,
                    "source": insight.source,
                    "severity": insight.severity,
                    "title": insight.title,
                    "summary": insight.summary,
                    "entity_type": insight.entity_type,
                    "entity_id": insight.entity_id,
                    "status": insight.status,
                },
                "steps": [_step_dict(step) for step in steps],
                "tool_calls": [_decision_dict(row) for row in decisions if row.kind == "tool_call"],
                "decisions": [_decision_dict(row) for row in decisions if row.kind != "tool_call"],
                "approvals": [
                    {
                        "id": a.id,
                        "action_type": a.action_type,
                        "risk": a.risk,
                        "status": a.status,
                        "action": a.action,
                        "summary": describe_action(a.action_type, a.action),
                        "decided_at": _iso(a.decided_at),
                        "decided_by": a.decided_by,
                        "reason": a.reason,
                    }
                    for a in approvals
                ],
                "actions": [
                    {
                        "action_type": e.action_type,
                        "status": e.status,
                        "idempotency_key": e.idempotency_key,
                        "result": e.result,
                        "executed_at": _iso(e.executed_at),
                    }
                    for e in executions
                ],
                "messages": messages or 0,
            }
        )
        return detail


# --------------------------------------------------------------------------- chart series


def _hour_floor(value: dt.datetime) -> dt.datetime:
    return as_utc(value).replace(minute=0, second=0, microsecond=0)


def _day_floor(value: dt.datetime) -> dt.datetime:
    return _hour_floor(value).replace(hour=0)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def latency_percentiles(hours: int = 24, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """p50/p95 step latency per agent per hour over the last ``hours`` (finished steps)."""
    since = _hour_floor(now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=hours - 1)
    with session_scope() as session:
        if _is_postgres(session):
            rows = session.execute(
                text(
                    "SELECT agent, date_trunc('hour', started_at AT TIME ZONE 'UTC') AS bucket,"
                    " percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,"
                    " percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, count(*) AS n"
                    " FROM agent_steps WHERE started_at >= :since AND latency_ms IS NOT NULL"
                    " GROUP BY agent, bucket ORDER BY bucket, agent"
                ),
                {"since": since},
            ).all()
            return [
                {
                    "agent": r.agent,
                    "bucket": _iso(r.bucket.replace(tzinfo=dt.UTC)),
                    "p50_ms": round(r.p50, 1),
                    "p95_ms": round(r.p95, 1),
                    "steps": r.n,
                }
                for r in rows
            ]
        samples: dict[tuple[str, dt.datetime], list[float]] = defaultdict(list)
        for agent, started, latency in session.execute(
            select(AgentStep.agent, AgentStep.started_at, AgentStep.latency_ms).where(
                AgentStep.started_at >= since, AgentStep.latency_ms.is_not(None)
            )
        ):
            if started is not None and latency is not None:
                samples[(agent, _hour_floor(started))].append(float(latency))
    out = []
    for (agent, bucket), values in sorted(samples.items(), key=lambda item: (item[0][1], item[0][0])):
        ordered = sorted(values)
        out.append(
            {
                "agent": agent,
                "bucket": _iso(bucket),
                "p50_ms": round(_interpolated(ordered, 0.5), 1),
                "p95_ms": round(_interpolated(ordered, 0.95), 1),
                "steps": len(ordered),
            }
        )
    return out


def _interpolated(ordered: list[float], fraction: float) -> float:
    # percentile_cont's definition, so both databases chart the same figure
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _bucket_expression(session: Session, column: Any, unit: str) -> Any:
    if _is_postgres(session):
        return func.date_trunc(unit, func.timezone("UTC", column))
    return func.strftime("%Y-%m-%d %H:00:00" if unit == "hour" else "%Y-%m-%d 00:00:00", column)


def _as_bucket(value: Any) -> dt.datetime:
    parsed = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return as_utc(parsed)


def run_outcomes(hours: int = 24, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Runs created per hour over the last ``hours`` by outcome — succeeded (done), awaiting
    approval, failed (failed or expired), in flight — and the success rate of the finished ones
    (a run waiting for a decision is not finished)."""
    since = _hour_floor(now or dt.datetime.now(dt.UTC)) - dt.timedelta(hours=hours - 1)
    with session_scope() as session:
        bucket = _bucket_expression(session, AgentRun.created_at, "hour").label("bucket")
        query: Select[Any] = (
            select(bucket, AgentRun.status, func.count().label("n"))
            .where(AgentRun.created_at >= since)
            .group_by(bucket, AgentRun.status)
        )
        rows = session.execute(query).all()
    per_bucket: dict[dt.datetime, Counter[str]] = defaultdict(Counter)
    for row in rows:
        per_bucket[_as_bucket(row.bucket)][row.status] += row.n
    out = []
    for when in sorted(per_bucket):
        counts = per_bucket[when]
        succeeded, waiting = counts["done"], counts["awaiting_approval"]
        failed = counts["failed"] + counts["expired"]
        finished = succeeded + failed
        out.append(
            {
                "bucket": _iso(when),
                "succeeded": succeeded,
                "awaiting_approval": waiting,
                "failed": failed,
                "in_flight": sum(counts.values()) - finished - waiting,
                "success_rate": None if not finished else round(succeeded / finished, 4),
            }
        )
    return out


def usage_per_day(days: int = 14, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Tokens in/out/cache and estimated cost (USD) of the runs created each day over the last
    ``days``; `unpriced_runs` counts runs whose cost is unknown (left out of `cost_usd`)."""
    since = _day_floor(now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days - 1)
    with session_scope() as session:
        bucket = _bucket_expression(session, AgentRun.created_at, "day").label("bucket")
        rows = session.execute(
            select(
                bucket,
                func.sum(AgentRun.tokens_in).label("tokens_in"),
                func.sum(AgentRun.tokens_out).label("tokens_out"),
                func.sum(AgentRun.cache_read_tokens).label("cache_read_tokens"),
                func.sum(AgentRun.cache_write_tokens).label("cache_write_tokens"),
                func.sum(AgentRun.cost_usd).label("cost_usd"),
                func.count().label("runs"),
                func.count().filter(AgentRun.cost_usd.is_(None)).label("unpriced_runs"),
            )
            .where(AgentRun.created_at >= since)
            .group_by(bucket)
            .order_by(bucket)
        ).all()
    return [
        {
            "day": _as_bucket(row.bucket).date().isoformat(),
            "tokens_in": int(row.tokens_in or 0),
            "tokens_out": int(row.tokens_out or 0),
            "cache_read_tokens": int(row.cache_read_tokens or 0),
            "cache_write_tokens": int(row.cache_write_tokens or 0),
            "cost_usd": round(float(row.cost_usd or 0.0), 6),
            "runs": row.runs,
            "unpriced_runs": row.unpriced_runs,
        }
        for row in rows
    ]


def run_status_counts() -> dict[str, int]:
    """How many runs are in each status now."""
    with get_engine().connect() as connection:
        rows = connection.execute(select(AgentRun.status, func.count()).group_by(AgentRun.status)).all()
    return {status: count for status, count in rows}


def pending_approval_count() -> int:
    """Approvals waiting for a human."""
    with get_engine().connect() as connection:
        count = connection.execute(
            select(func.count()).select_from(Approval).where(Approval.status == "pending")
        ).scalar_one()
    return int(count)


# --------------------------------------------------------------------------- evals


def _eval_summary(row: EvalRun) -> dict[str, Any]:
    scores = row.scores or {}
    judge = scores.get("judge") or {}
    return {
        "id": row.id, "suite": row.suite, "provider": row.provider, "model": row.model, "status": row.status,
        "trigger": row.trigger, "created_at": _iso(row.created_at), "finished_at": _iso(row.finished_at),
        "regression": row.regression, "is_baseline": row.is_baseline, "baseline_id": row.baseline_id,
        "scores": {rate: scores.get(rate) for rate in (*EVAL_RATE_METRICS, "forbidden_actions", "scenarios_passed",
                                                        "scenarios")},
        "narrative_score": judge.get("narrative_score"), "error": scores.get("error"),
    }  # fmt: skip


def eval_runs(limit: int = 100) -> dict[str, Any]:
    """The newest eval runs (each suite's over time) and each suite's pinned baseline."""
    with session_scope(autocommit=True) as session:
        rows = session.scalars(select(EvalRun).order_by(EvalRun.created_at.desc()).limit(limit)).all()
        pinned = session.execute(select(EvalRun.suite, EvalRun.id).where(EvalRun.is_baseline.is_(True))).all()
        return {"runs": [_eval_summary(row) for row in rows], "baselines": {suite: run_id for suite, run_id in pinned}}


def eval_run_detail(eval_run_id: str) -> dict[str, Any] | None:
    """One eval run with each scenario's outcome, its diff against the baseline and the judge's verdicts."""
    with session_scope(autocommit=True) as session:
        row = session.get(EvalRun, eval_run_id)
        if row is None:
            return None
        results = session.scalars(
            select(EvalResult).where(EvalResult.eval_run_id == eval_run_id).order_by(EvalResult.scenario)
        ).all()
        details = [
            {"scenario": r.scenario, "suite": r.category, "passed": r.passed, "scores": r.scores or {},
             "problems": (r.details or {}).get("problems") or [], "diff": (r.details or {}).get("diff"),
             "judge": ((r.details or {}).get("judge") or {}).get("verdicts")}
            for r in results
        ]  # fmt: skip
        return {**_eval_summary(row), "by_suite": (row.scores or {}).get("by_suite") or {}, "results": details}


# --------------------------------------------------------------------------- insights

INSIGHT_FILTERS = ("open", "resolved", "quarantined", "all", *INSIGHT_STATUSES)


def insight_view(insight: ProactiveInsight, run_status: str | None, now: dt.datetime) -> dict[str, Any]:
    """One insight as the CLI, the API and the Insights page show it."""
    deadline = as_utc(insight.sla_deadline) if insight.sla_deadline else None
    snoozed = as_utc(insight.snoozed_until) if insight.snoozed_until else None
    return {
        "id": insight.id, "kind": insight.kind, "source": insight.source, "severity": insight.severity,
        "title": insight.title, "status": insight.status, "entity": f"{insight.entity_type} {insight.entity_id}",
        "occurrences": insight.occurrences, "created_at": _iso(insight.created_at),
        "sla_deadline": _iso(deadline),
        # the SLA matters while the insight waits for its answer, not once it is handled
        "sla_left_s": None if deadline is None or insight.status not in OPEN_INSIGHT_STATUSES
        else round((deadline - now).total_seconds()),
        "run_id": insight.run_id, "run_status": run_status,
        "acknowledged_at": _iso(insight.acknowledged_at), "acknowledged_by": insight.acknowledged_by,
        "snoozed_until": _iso(snoozed), "snoozed": snoozed is not None and snoozed > now,
        "resolved_at": _iso(insight.cleared_at), "resolved_by": insight.cleared_by, "note": insight.note,
        "quarantine_reason": insight.quarantine_reason,
    }  # fmt: skip


def insight(insight_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """One insight's view (NotFound when there is none)."""
    now = now or dt.datetime.now(dt.UTC)
    with session_scope() as session:
        found = session.get(ProactiveInsight, insight_id)
        if found is None:
            raise NotFound(f"no insight {insight_id}")
        run = session.get(AgentRun, found.run_id) if found.run_id else None
        return insight_view(found, run.status if run else None, now)


def insights(status: str = "open", limit: int = 200, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Insights to work, most severe and most urgent first: `open` (not resolved), `resolved`,
    `all`, or those in one status."""
    now = now or dt.datetime.now(dt.UTC)
    query = select(ProactiveInsight, AgentRun.status).outerjoin(AgentRun, AgentRun.id == ProactiveInsight.run_id)
    if status == "open":
        query = query.where(ProactiveInsight.cleared_at.is_(None))
    elif status == "resolved":
        query = query.where(ProactiveInsight.cleared_at.is_not(None), ProactiveInsight.quarantine_reason.is_(None))
    elif status == "quarantined":
        query = query.where(ProactiveInsight.quarantine_reason.is_not(None))
    elif status != "all":
        query = query.where(ProactiveInsight.status == status)
    query = query.order_by(ProactiveInsight.sla_deadline.asc(), ProactiveInsight.id.desc()).limit(limit)
    with session_scope() as session:
        rows = session.execute(query).all()
        views = [insight_view(insight, run_status, now) for insight, run_status in rows]
    rank = {severity: index for index, severity in enumerate(reversed(SEVERITIES))}
    return sorted(views, key=lambda v: (v["resolved_at"] is not None, rank.get(v["severity"], 9)))


def records_named(object_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The stored source records whose object id is `object_id` (evidence an analysis cites)."""
    with session_scope() as session:
        rows = session.scalars(
            select(SourceRecord).where(SourceRecord.object_id == object_id).order_by(SourceRecord.source).limit(limit)
        ).all()
        return [{"source": r.source, "type": r.object_type, "id": r.object_id, "occurred_at": _iso(r.occurred_at),
                 "data": r.data} for r in rows]  # fmt: skip
