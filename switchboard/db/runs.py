"""THE run lifecycle: the code that changes run, step and insight status.

Insights are **episodes**: an anomaly is one insight from the scan that first sees it until it
clears. While it persists, each scan adds an occurrence to that insight — whether its run is
still going or long finished — and a worse severity re-opens a finished one for another run.
Only when the detector no longer finds it (`clear_episodes`) or an operator resolves it
(`resolve_insight`) does the episode end; the next occurrence is a new insight. Actions are
keyed to the episode (`contracts.action_key`), so however often an episode is analysed, each
of its actions happens once.

Functions take the caller's `session` and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from switchboard.contracts import SEVERITY_ORDER, Alert
from switchboard.db.models import OPEN_INSIGHT_STATUSES, ProactiveInsight
from switchboard.settings import Settings

# Finished work whose episode may go on: a persisting anomaly adds occurrences to it.
HANDLED_INSIGHT_STATUSES = ("done", "failed", "expired")
DETECTOR = "detector"


class InsightError(LookupError):
    """The insight does not exist, or cannot be resolved in its state."""


def record_occurrence(session: Session, alert: Alert, now: dt.datetime, settings: Settings) -> tuple[int, bool]:
    """Add an alert to its episode, or open a new one; (insight id, whether it is work to run).

    Work to run is a new episode, or a finished one whose severity got worse. The partial
    unique index on uncleared dedupe keys makes two concurrent scans converge on one insight.
    """
    for _ in range(3):
        episode = session.scalars(
            select(ProactiveInsight)
            .where(ProactiveInsight.dedupe_key == alert.dedupe_key, ProactiveInsight.cleared_at.is_(None))
            .with_for_update()
        ).first()
        if episode is not None:
            episode.occurrences += 1
            worse = SEVERITY_ORDER[alert.severity] > SEVERITY_ORDER[episode.severity]
            if worse:
                episode.severity = alert.severity
            if episode.status == "new":
                episode.payload = alert.model_dump(mode="json")
            if worse and episode.status in HANDLED_INSIGHT_STATUSES:
                # worse than when it was handled: run it again (its actions keep their keys)
                episode.status = "new"
                episode.payload = alert.model_dump(mode="json")
                episode.title = alert.title
                episode.attempts = 0
                episode.next_attempt_at = now
                episode.sla_deadline = now + dt.timedelta(seconds=settings.sla_for(alert.severity))
                return episode.id, True
            return episode.id, False
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
            continue  # a concurrent scan inserted it first: add to that one
    raise RuntimeError(f"could not store insight {alert.dedupe_key}")


def clear_episodes(session: Session, *, kinds: Iterable[str], seen: Iterable[str], now: dt.datetime) -> int:
    """End the finished episodes of alert `kinds` whose detectors ran and no longer found them
    (their dedupe keys are not in `seen`); how many ended. Open ones are left to their run,
    whose Watcher step re-checks the alert."""
    kinds, seen = list(kinds), list(seen)
    if not kinds:
        return 0
    cleared = session.execute(
        update(ProactiveInsight)
        .where(
            ProactiveInsight.cleared_at.is_(None),
            ProactiveInsight.kind.in_(kinds),
            ProactiveInsight.status.in_(HANDLED_INSIGHT_STATUSES),
            ProactiveInsight.dedupe_key.not_in(seen),
        )
        .values(cleared_at=now, cleared_by=DETECTOR)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(cleared, "rowcount", 0) or 0)


def resolve_insight(session: Session, insight_id: int, *, by: str, now: dt.datetime) -> None:
    """An operator ends an episode: the anomaly's next occurrence is a new insight."""
    insight = session.get(ProactiveInsight, insight_id, with_for_update=True)
    if insight is None:
        raise InsightError(f"no insight {insight_id}")
    if insight.status in OPEN_INSIGHT_STATUSES:
        raise InsightError(f"insight {insight_id} is {insight.status}: resolve it once its run has finished")
    if insight.cleared_at is None:
        insight.cleared_at = now
        insight.cleared_by = by[:64]
