"""The Watcher: deterministic detectors raise alerts into proactive_insights; in a run, the
Watcher step re-checks its alert against current data and the model (Gemini by default)
only summarises it and ranks it among the open alerts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from switchboard.agents import answers
from switchboard.agents.context import StepContext
from switchboard.agents.detectors import (
    REFERENCE_TYPES,
    Facts,
    Record,
    detectors_for,
    inputs_for,
    reads_of,
    run_detectors,
)
from switchboard.agents.llm import provider_for
from switchboard.agents.llm.base import LLMRequest, Message
from switchboard.agents.toolloop import ask
from switchboard.contracts import Alert, WatchRequest, WatchResult
from switchboard.db import runs
from switchboard.db.models import OPEN_INSIGHT_STATUSES, ProactiveInsight, SourceRecord
from switchboard.db.session import session_scope
from switchboard.settings import Settings

LOOKBACK = dt.timedelta(days=60)

SYSTEM = (
    "You are the Watcher of a revenue-operations team. Summarise the alert in one sentence a busy "
    "operator can act on, and rank it among the open alerts (1 = most urgent). Call the `answer` tool with "
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
            occurred_at=row.occurred_at,
            data=row.data,
        )
        for row in rows
    )


def scan(sources: Iterable[str], now: dt.datetime, settings: Settings) -> list[tuple[int, bool, str]]:
    """Run the detectors over stored data: each alert is an occurrence of its episode, and the
    finished episodes these detectors no longer find end. [(insight id, work to run, severity)]"""
    source_list = list(sources)
    ran = detectors_for(source_list, settings.disabled_detectors)
    with session_scope() as session:
        facts = load_facts(session, sources=source_list, now=now)
        alerts = run_detectors(facts, now, sources=source_list, disabled=settings.disabled_detectors)
        raised: list[tuple[int, bool, str]] = [
            (*runs.record_occurrence(session, alert, now, settings), alert.severity) for alert in alerts
        ]
        runs.clear_episodes(
            session, kinds=[detector.kind for detector in ran], seen=[alert.dedupe_key for alert in alerts], now=now
        )
        return raised


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
    max_tokens, thinking = settings.model_budget("watcher")
    llm_request = LLMRequest(
        purpose="watcher.summarise",
        system=SYSTEM,
        messages=(
            Message(role="user", text=f"Alert:\n{refreshed.model_dump_json(indent=1)}\n\nOpen alerts:\n{others}"),
        ),
        facts={"alert": refreshed.model_dump(mode="json"), "open_alerts": others},
        max_tokens=max_tokens,
        thinking_budget=thinking,
    )

    def validate(answer: dict[str, Any]) -> Alert:
        if not isinstance(answer.get("summary"), str) or not answer["summary"].strip():
            raise ValueError("summary: a non-empty string is required")
        if not isinstance(answer.get("rank"), int):
            raise ValueError("rank: an integer >= 1 is required")
        return Alert.model_validate(
            {**refreshed.model_dump(), "summary": answer.get("summary"), "rank": answer.get("rank")}
        )

    summarised = ask(ctx, provider_for("watcher", settings), llm_request, {}, answers.WATCHER, validate)
    return WatchResult(run_id=request.run_id, insight_id=request.insight_id, alert=summarised)
