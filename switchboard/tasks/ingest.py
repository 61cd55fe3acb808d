"""Processing accepted events (the work the old stack's edge functions did).

Each accepted event becomes the latest state of the object it describes in `source_records`
(what detectors and agent tools read): a Stripe event carries its object (`data.object`); a
HubSpot webhook names an object and one changed property, merged into the stored object (or,
with a HubSpot token, the object is re-read live); a call event carries the call. An event is
processed once: its status goes `received → processed | ignored | failed`, under a row lock,
so a redelivered task skips it — `ignored` for a well-formed event of a type Switchboard does
not store (e.g. Stripe's `customer.source.created`, HubSpot's `workflow.enrolled`), `failed`
for one that does not say what it should (no object, no id); both keep the reason.

Enrichment runs in the same transaction: the customers and calls the changed records touch
are re-linked (`switchboard/enrichment.py`, table `entity_links`), so an event is never marked
processed without its links. RAG prep — calls, HubSpot notes and descriptions becoming
knowledge-base chunks — is queued after commit (`switchboard.tasks.knowledge.index_records`;
a beat sweep catches up what a lost message missed).

The Watcher feed: an event whose type is in SWITCHBOARD_CRITICAL_EVENT_TYPES triggers a Watcher
scan of its source at once (instead of waiting for the periodic scan); the scan dispatches
any new critical insight immediately.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from switchboard.agents.rag_prep import RAG_SOURCES
from switchboard.celery_app import app
from switchboard.db.models import Event, SourceRecord
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.enrichment import enrich
from switchboard.settings import get_settings
from switchboard.tasks.knowledge import queue_indexing
from switchboard.utc import as_utc

log = logging.getLogger("switchboard.ingest")

STRIPE_OBJECTS = {
    "charge", "invoice", "payout", "balance_transaction", "dispute", "refund", "customer", "payment_intent",
}  # fmt: skip
# event type prefix → object; notes (engagements) arrive as backfilled snapshots or pushed events
HUBSPOT_OBJECTS = {"deal": "deal", "contact": "contact", "company": "company", "note": "note"}
# Parts of Gong's extensive call data kept next to the call's metaData (participants, CRM
# context, summary, transcript): enrichment and RAG prep read them. A later event without them
# (a bare listing from a backfill) keeps what was stored.
CALL_DETAIL_KEYS = ("parties", "context", "content", "transcript", "summary")


class UnprocessableEvent(ValueError):
    """The event does not say what it should (no object, no id): stored `failed` with the reason."""


class UnsupportedEvent(UnprocessableEvent):
    """A well-formed event of a type Switchboard does not store: stored `ignored` with the reason."""


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and value > 0:
        return dt.datetime.fromtimestamp(value / 1000 if value > 10**11 else value, dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return as_utc(parsed)
    return None


def record_for(event: Event, stored: dict[tuple[str, str, str], SourceRecord]) -> RecordIn | None:
    """The source record an event updates (None: nothing to store, e.g. a deletion we ignore)."""
    payload = event.payload or {}
    received = event.occurred_at or dt.datetime.now(dt.UTC)
    if event.source == "stripe":
        obj = (payload.get("data") or {}).get("object") if "data" in payload else payload
        if not isinstance(obj, dict) or not obj.get("id") or not isinstance(obj.get("object"), str):
            raise UnprocessableEvent(f"Stripe event {event.external_id} carries no object with an id and a type")
        if obj["object"] not in STRIPE_OBJECTS:
            raise UnsupportedEvent(
                f"Stripe event {event.external_id} ({event.type}) is about a {obj['object'][:64]}, "
                "which Switchboard does not store"
            )
        return RecordIn("stripe", str(obj["object"]), str(obj["id"]), _timestamp(obj.get("created")) or received, obj)
    if event.source == "hubspot":
        object_type = HUBSPOT_OBJECTS.get(event.type.split(".", 1)[0])
        object_id = payload.get("objectId")
        if object_type is None:
            raise UnsupportedEvent(
                f"HubSpot event {event.external_id} ({event.type}) is not about a deal, contact, company or note, "
                "which is all Switchboard stores"
            )
        if object_id is None:
            raise UnprocessableEvent(f"HubSpot event {event.external_id} ({event.type}) names no objectId")
        if event.type.endswith(".deletion"):
            return None
        current = stored.get(("hubspot", object_type, str(object_id)))
        data: dict[str, Any] = dict(current.data) if current is not None else {"id": str(object_id), "properties": {}}
        snapshot = payload.get("object")
        if event.type.endswith(".snapshot") and isinstance(snapshot, dict):
            # a backfilled object as HubSpot returned it: its properties win, ours are kept
            data["properties"] = {**(data.get("properties") or {}), **(snapshot.get("properties") or {})}
            if isinstance(snapshot.get("associations"), dict):  # read with ?associations=…: enrichment uses them
                data["associations"] = snapshot["associations"]
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
        call = _call_id(payload)
        if call is None:
            raise UnprocessableEvent(f"call event {event.external_id} carries no call id")
        meta = payload["metaData"] if isinstance(payload.get("metaData"), dict) else payload
        data = dict(meta)
        current = stored.get(("calls", "call", call))
        for key in CALL_DETAIL_KEYS:
            if key in payload and payload[key] is not None:
                data[key] = payload[key]
            elif current is not None and key in current.data:
                data[key] = current.data[key]
        return RecordIn("calls", "call", call, _timestamp(meta.get("started")) or received, data)
    raise UnprocessableEvent(f"unknown source {event.source}")


def _call_id(payload: dict[str, Any]) -> str | None:
    call = payload.get("metaData") if isinstance(payload.get("metaData"), dict) else payload
    return str(call["id"]) if isinstance(call, dict) and call.get("id") else None


def _stored_records(session: Session, events: list[Event]) -> dict[tuple[str, str, str], SourceRecord]:
    """The stored HubSpot objects and calls the events update (their events merge into them)."""
    hubspot = {
        str(event.payload["objectId"])
        for event in events
        if event.source == "hubspot" and event.payload and isinstance(event.payload.get("objectId"), int | str)
    }
    calls = {call for event in events if event.source == "calls" and (call := _call_id(event.payload or {}))}
    wanted = [(source, ids) for source, ids in (("hubspot", hubspot), ("calls", calls)) if ids]
    if not wanted:
        return {}
    condition = or_(*(and_(SourceRecord.source == source, SourceRecord.object_id.in_(sorted(ids)))
                      for source, ids in wanted))  # fmt: skip
    return {(r.source, r.object_type, r.object_id): r for r in session.scalars(select(SourceRecord).where(condition))}


@app.task(name="switchboard.tasks.ingest.process_events", acks_late=True)
def process_events(event_ids: list[int]) -> dict[str, Any]:
    """Turn accepted events into source records, once each, and re-link what they touch;
    returns counts (and the id of the RAG-prep task it queued, if any)."""
    settings = get_settings()
    counts: dict[str, Any] = {"processed": 0, "ignored": 0, "failed": 0, "skipped": 0, "links_changed": 0}
    critical_sources: set[str] = set()
    with session_scope() as session:
        events = list(
            session.scalars(
                select(Event).where(Event.id.in_(event_ids), Event.status == "received").order_by(Event.id)
                .with_for_update(skip_locked=True)
            )
        )  # fmt: skip
        counts["skipped"] = len(event_ids) - len(events)
        stored = _stored_records(session, events)
        changed: dict[tuple[str, str, str], RecordIn] = {}
        now = dt.datetime.now(dt.UTC)
        for event in events:
            try:
                record = record_for(event, stored)
            except UnprocessableEvent as error:
                status = "ignored" if isinstance(error, UnsupportedEvent) else "failed"
                event.status, event.error, event.processed_at = status, str(error)[:2000], now
                counts[status] += 1
                continue
            if record is not None:
                upsert_records(session, [record])
                key = (record.source, record.object_type, record.object_id)
                changed[key] = record
                # a later event in this batch about the same object merges into this state
                stored[key] = SourceRecord(source=record.source, object_type=record.object_type,
                                           object_id=record.object_id, data=record.data,
                                           occurred_at=record.occurred_at)  # fmt: skip
            event.status, event.processed_at = "processed", now
            counts["processed"] += 1
            if event.type in settings.critical_event_types:
                critical_sources.add(event.source)
        if changed:
            links = enrich(session, changed.values())
            counts["links_changed"] = links["added"] + links["updated"] + links["removed"]
    knowledge_keys = [list(key) for key in changed if key[0] in RAG_SOURCES]
    if knowledge_keys:
        counts["indexing"] = queue_indexing(knowledge_keys)
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
