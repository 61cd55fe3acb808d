"""Processing accepted events (the work the old stack's edge functions did).

Each accepted event becomes the latest state of the object it describes in `source_records`
(what detectors and agent tools read): a Stripe event carries its object (`data.object`); a
HubSpot webhook names an object and one changed property, merged into the stored object (or,
with a HubSpot token, the object is re-read live); a call event carries the call. An event is
processed once: its status goes `received → processed | failed`, under a row lock, so a
redelivered task skips it.

The Watcher feed: an event whose type is in SWITCHBOARD_CRITICAL_EVENT_TYPES triggers a Watcher
scan of its source at once (instead of waiting for the periodic scan); the scan dispatches
any new critical insight immediately.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from switchboard.celery_app import app
from switchboard.db.models import Event, SourceRecord
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.settings import get_settings

log = logging.getLogger("switchboard.ingest")

STRIPE_OBJECTS = {
    "charge", "invoice", "payout", "balance_transaction", "dispute", "refund", "customer", "payment_intent",
}  # fmt: skip
HUBSPOT_OBJECTS = {"deal": "deal", "contact": "contact", "company": "company"}  # event type prefix → object


class UnprocessableEvent(ValueError):
    """The event does not describe an object we store (recorded on the event as its error)."""


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and value > 0:
        return dt.datetime.fromtimestamp(value / 1000 if value > 10**11 else value, dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def record_for(event: Event, stored: dict[tuple[str, str, str], SourceRecord]) -> RecordIn | None:
    """The source record an event updates (None: nothing to store, e.g. a deletion we ignore)."""
    payload = event.payload or {}
    received = event.occurred_at or dt.datetime.now(dt.UTC)
    if event.source == "stripe":
        obj = (payload.get("data") or {}).get("object") if "data" in payload else payload
        if not isinstance(obj, dict) or not obj.get("id") or obj.get("object") not in STRIPE_OBJECTS:
            raise UnprocessableEvent(f"Stripe event {event.external_id} carries no supported object")
        return RecordIn("stripe", str(obj["object"]), str(obj["id"]), _timestamp(obj.get("created")) or received, obj)
    if event.source == "hubspot":
        object_type = HUBSPOT_OBJECTS.get(event.type.split(".", 1)[0])
        object_id = payload.get("objectId")
        if object_type is None or object_id is None:
            raise UnprocessableEvent(
                f"HubSpot event {event.external_id} ({event.type}) names no deal, contact or company"
            )
        if event.type.endswith(".deletion"):
            return None
        current = stored.get(("hubspot", object_type, str(object_id)))
        data: dict[str, Any] = dict(current.data) if current is not None else {"id": str(object_id), "properties": {}}
        snapshot = payload.get("object")
        if event.type.endswith(".snapshot") and isinstance(snapshot, dict):
            # a backfilled object as HubSpot returned it: its properties win, ours are kept
            data["properties"] = {**(data.get("properties") or {}), **(snapshot.get("properties") or {})}
            updated = snapshot.get("updated_at") or snapshot.get("updatedAt")
            if updated:
                data["updatedAt"] = str(updated)
        if payload.get("propertyName"):
            data["properties"] = {
                **(data.get("properties") or {}),
                payload["propertyName"]: payload.get("propertyValue"),
            }
        occurred = _timestamp(payload.get("occurredAt")) or received
        return RecordIn("hubspot", object_type, str(object_id), current.occurred_at if current else occurred, data)
    if event.source == "calls":
        call = payload.get("metaData") if isinstance(payload.get("metaData"), dict) else payload
        if not isinstance(call, dict) or not call.get("id"):
            raise UnprocessableEvent(f"call event {event.external_id} carries no call id")
        return RecordIn("calls", "call", str(call["id"]), _timestamp(call.get("started")) or received, call)
    raise UnprocessableEvent(f"unknown source {event.source}")


@app.task(name="switchboard.tasks.ingest.process_events", acks_late=True)
def process_events(event_ids: list[int]) -> dict[str, int]:
    """Turn accepted events into source records, once each; returns counts."""
    settings = get_settings()
    counts = {"processed": 0, "failed": 0, "skipped": 0}
    critical_sources: set[str] = set()
    with session_scope() as session:
        events = list(
            session.scalars(
                select(Event).where(Event.id.in_(event_ids), Event.status == "received").order_by(Event.id)
                .with_for_update(skip_locked=True)
            )
        )  # fmt: skip
        counts["skipped"] = len(event_ids) - len(events)
        keys = {
            str(event.payload["objectId"])
            for event in events
            if event.source == "hubspot" and event.payload and isinstance(event.payload.get("objectId"), int | str)
        }
        stored = {
            (r.source, r.object_type, r.object_id): r
            for r in session.scalars(
                select(SourceRecord).where(SourceRecord.source == "hubspot", SourceRecord.object_id.in_(keys))
            )
        } if keys else {}  # fmt: skip
        now = dt.datetime.now(dt.UTC)
        for event in events:
            try:
                record = record_for(event, stored)
            except UnprocessableEvent as error:
                event.status, event.error, event.processed_at = "failed", str(error)[:2000], now
                counts["failed"] += 1
                continue
            if record is not None:
                upsert_records(session, [record])
            event.status, event.processed_at = "processed", now
            counts["processed"] += 1
            if event.type in settings.critical_event_types:
                critical_sources.add(event.source)
    if critical_sources:
        from switchboard.tasks.watch import scan

        scan.apply_async(args=[sorted(critical_sources)], priority=0)
        log.info("critical events from %s: watcher scan triggered", sorted(critical_sources))
    return counts


SWEEP_AFTER = dt.timedelta(seconds=30)


@app.task(name="switchboard.tasks.ingest.sweep_received", acks_late=True, ignore_result=True)
def sweep_received(limit: int = 1000) -> int:
    """Beat job: process events accepted but never processed (their task was lost, or the
    broker was down when they arrived). Nothing accepted is left behind."""
    cutoff = dt.datetime.now(dt.UTC) - SWEEP_AFTER
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(Event.id)
                .where(Event.status == "received", Event.received_at < cutoff)
                .order_by(Event.id)
                .limit(limit)
            )
        )  # fmt: skip
    for start in range(0, len(ids), 500):
        process_events.delay(ids[start : start + 500])
    return len(ids)


def enqueue(event_ids: list[int]) -> None:
    """Queue newly accepted events for processing; if the broker is unreachable they stay
    `received` and the sweep picks them up."""
    if not event_ids:
        return
    try:
        process_events.delay(event_ids)
    except Exception as error:  # the events are stored: the sweep will process them
        log.warning(
            "could not queue %d event(s) for processing (%s); the sweep will", len(event_ids), type(error).__name__
        )
