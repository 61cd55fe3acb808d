"""The Watcher: deterministic detectors raise alerts into proactive_insights; in a run, the
Watcher step re-checks its alert against current data and the model (Gemini by default)
only summarises it and ranks it among the open alerts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from switchboard.agents.context import StepContext
from switchboard.agents.detectors import REFERENCE_TYPES, Facts, Record, inputs_for, reads_of, run_detectors
from switchboard.agents.llm import provider_for
from switchboard.agents.llm.base import LLMRequest, Message
from switchboard.agents.toolloop import ask_for_json
from switchboard.contracts import SEVERITY_ORDER, Alert, WatchRequest, WatchResult
from switchboard.db.models import OPEN_INSIGHT_STATUSES, ProactiveInsight, SourceRecord
from switchboard.db.session import session_scope
from switchboard.settings import Settings

LOOKBACK = dt.timedelta(days=60)

SYSTEM = (
    "You are the Watcher of a revenue-operations team. Summarise the alert in one sentence a busy "
    "operator can act on, and rank it among the open alerts (1 = most urgent). Answer with ONE JSON object: "
    '{"summary": "...", "rank": 1}.'
)


def load_facts(
    session: Session, *, sources: Iterable[str], now: dt.datetime, inputs: Iterable[str] | None = None
) -> Facts:
    """Stored records the detectors of `sources` read (or exactly the sources `inputs`), within
    their lookback window."""
    rows = session.execute(
        select(
            SourceRecord.source, SourceRecord.object_type, SourceRecord.object_id, SourceRecord.occurred_at,
            SourceRecord.data,
        ).where(
            SourceRecord.source.in_(list(inputs) if inputs is not None else inputs_for(sources)),
            or_(SourceRecord.occurred_at >= now - LOOKBACK, SourceRecord.object_type.in_(REFERENCE_TYPES)),
        )
    ).all()  # fmt: skip
    return Facts(
        Record(
            source=row.source,
            object_type=row.object_type,
            object_id=row.object_id,
            occurred_at=row.occurred_at if row.occurred_at.tzinfo else row.occurred_at.replace(tzinfo=dt.UTC),
            data=row.data,
        )
        for row in rows
    )


def raise_insight(session: Session, alert: Alert, now: dt.datetime, settings: Settings) -> tuple[int, bool]:
    """Store an alert as an insight, merged into an open one with the same dedupe key.

    Returns (insight id, created). The partial unique index on open dedupe keys makes two
    concurrent scans converge on one insight.
    """
    for _ in range(3):
        open_one = session.scalars(
            select(ProactiveInsight)
            .where(ProactiveInsight.dedupe_key == alert.dedupe_key, ProactiveInsight.status.in_(OPEN_INSIGHT_STATUSES))
            .with_for_update()
        ).first()
        if open_one is not None:
            open_one.occurrences += 1
            if SEVERITY_ORDER[alert.severity] > SEVERITY_ORDER[open_one.severity]:
                open_one.severity = alert.severity
            if open_one.status == "new":
                open_one.payload = alert.model_dump(mode="json")
            return open_one.id, False
        insight = ProactiveInsight(
            kind=alert.kind,
            source=alert.source,
            severity=alert.severity,
            title=alert.title,
            entity_type=alert.entity.type,
            entity_id=alert.entity.id,
            payload=alert.model_dump(mode="json"),
            dedupe_key=alert.dedupe_key,
            status="new",
            sla_deadline=now + dt.timedelta(seconds=settings.sla_for(alert.severity)),
            next_attempt_at=now,
        )
        try:
            with session.begin_nested():
                session.add(insight)
            return insight.id, True
        except IntegrityError:
            continue  # a concurrent scan inserted it first: merge into that one
    raise RuntimeError(f"could not store insight {alert.dedupe_key}")


def scan(sources: Iterable[str], now: dt.datetime, settings: Settings) -> list[tuple[int, bool, str]]:
    """Run the detectors over stored data and raise their alerts; [(insight id, created, severity)]."""
    source_list = list(sources)
    with session_scope() as session:
        facts = load_facts(session, sources=source_list, now=now)
        alerts = run_detectors(facts, now, sources=source_list, disabled=settings.disabled_detectors)
        return [(*raise_insight(session, alert, now, settings), alert.severity) for alert in alerts]


def _open_alerts(session: Session, source: str, exclude: int | None) -> list[dict[str, Any]]:
    rows = session.execute(
        select(ProactiveInsight.id, ProactiveInsight.severity, ProactiveInsight.kind, ProactiveInsight.title)
        .where(ProactiveInsight.source == source, ProactiveInsight.status.in_(OPEN_INSIGHT_STATUSES))
        .order_by(ProactiveInsight.created_at)
        .limit(50)
    ).all()
    return [{"severity": r.severity, "kind": r.kind, "title": r.title} for r in rows if r.id != exclude]


def watch(ctx: StepContext, request: WatchRequest, settings: Settings, now: dt.datetime) -> WatchResult:
    """Re-check the alert against current data, then have the model summarise and rank it."""
    alert = request.alert
    ctx.entity_type, ctx.entity_id = alert.entity.type, alert.entity.id
    # Only the detector that raised the alert can confirm it: run that one, on what it reads.
    reads = reads_of(alert.kind)
    with session_scope(autocommit=True) as session:  # reads only
        facts = load_facts(session, sources=[alert.source], now=now, inputs=reads)
        others = _open_alerts(session, alert.source, request.insight_id)
    current = run_detectors(
        facts, now, sources=[alert.source], disabled=settings.disabled_detectors,
        kinds=[alert.kind] if reads is not None else None,
    )  # fmt: skip
    refreshed = next((fresh for fresh in current if fresh.dedupe_key == alert.dedupe_key), alert)
    llm_request = LLMRequest(
        purpose="watcher.summarise",
        system=SYSTEM,
        messages=(
            Message(role="user", text=f"Alert:\n{refreshed.model_dump_json(indent=1)}\n\nOpen alerts:\n{others}"),
        ),
        facts={"alert": refreshed.model_dump(mode="json"), "open_alerts": others},
        max_tokens=400,
    )

    def validate(answer: dict[str, Any]) -> Alert:
        if not isinstance(answer.get("summary"), str) or not answer["summary"].strip():
            raise ValueError("summary: a non-empty string is required")
        if not isinstance(answer.get("rank"), int):
            raise ValueError("rank: an integer >= 1 is required")
        return Alert.model_validate(
            {**refreshed.model_dump(), "summary": answer.get("summary"), "rank": answer.get("rank")}
        )

    summarised = ask_for_json(ctx, provider_for("watcher", settings), llm_request, {}, validate)
    return WatchResult(run_id=request.run_id, insight_id=request.insight_id, alert=summarised)
