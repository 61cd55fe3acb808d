"""Backfill sources: one adapter per provider (Stripe events, HubSpot objects, calls) that pages
through a time window from a cursor and tells what the store lacks — `tasks/backfill.py` drives
them, `db/backfill_jobs.py` stores what they return.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import select

from switchboard.db.backfill_jobs import SOURCES, Page, UnknownSource
from switchboard.db.models import Event, SourceRecord
from switchboard.db.session import session_scope
from switchboard.integrations.resilience import CallContext, Deferred
from switchboard.settings import Settings, get_settings
from switchboard.utc import as_utc

# Inside a scan a spent rate budget is waited out when the wait is this short; a longer one
# (an open circuit) re-queues the scan instead.
PACE_MAX_S = 2.0
log = logging.getLogger("switchboard.backfill")

T = TypeVar("T")


def _parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value / 1000 if value > 10**11 else value, dt.UTC)
    if isinstance(value, str) and value:
        if value.isdigit():
            return _parse_time(int(value))
        try:
            return as_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _paced(fetch: Callable[[], T]) -> T:
    """`fetch()`, waiting out a short spent rate budget; a long wait propagates `Deferred`."""
    while True:
        try:
            return fetch()
        except Deferred as deferred:
            wait = deferred.retry_after_s or 0.05
            if wait > PACE_MAX_S:
                raise
            time.sleep(wait)


@dataclass(frozen=True)
class Missing:
    key: str
    at: dt.datetime


class Source(Protocol):
    name: str

    def page(self, start: dt.datetime, end: dt.datetime, cursor: str | None) -> Page:
        """One page of the window [start, end) from `cursor` (None: the first page)."""

    def missing(self, start: dt.datetime, end: dt.datetime) -> list[Missing]:
        """Everything the provider has in [start, end) that the store lacks."""


def _row(source: str, external_id: str, kind: str, payload: dict[str, Any], at: dt.datetime | None) -> dict[str, Any]:
    """An `events` row as a backfill stores it."""
    return {"source": source, "external_id": external_id, "type": kind, "payload": payload, "occurred_at": at}


def _fraction(start: dt.datetime, end: dt.datetime, at: dt.datetime | None, newest_first: bool) -> float | None:
    span = (end - start).total_seconds()
    if at is None or span <= 0:
        return None
    done = (end - at).total_seconds() if newest_first else (at - start).total_seconds()
    return min(1.0, max(0.0, done / span))


class StripeSource:
    """Stripe events (`GET /v1/events`, newest first, `starting_after` paging)."""

    name = "stripe"

    def __init__(self, settings: Settings, context: CallContext | None = None) -> None:
        from switchboard.integrations.stripe_client import StripeAPI

        self.api = StripeAPI(settings, context)

    @staticmethod
    def _range(start: dt.datetime, end: dt.datetime) -> dict[str, int]:
        return {"gte": int(start.timestamp()), "lt": int(end.timestamp())}

    def page(self, start: dt.datetime, end: dt.datetime, cursor: str | None) -> Page:
        data, next_cursor = self.api.page("event", cursor, created=self._range(start, end))
        rows = [
            _row("stripe", str(e["id"]), str(e.get("type") or "unknown"), e, _parse_time(e.get("created")))
            for e in data
        ]
        last = _parse_time(data[-1].get("created")) if data else None
        return Page(rows, next_cursor, _fraction(start, end, last, newest_first=True), [str(e["id"]) for e in data])

    def missing(self, start: dt.datetime, end: dt.datetime) -> list[Missing]:
        found: list[Missing] = []
        cursor: str | None = None
        while True:
            page = _paced(functools.partial(self.page, start, end, cursor))
            ids = [row["external_id"] for row in page.rows]
            query = select(Event.external_id).where(Event.source == "stripe", Event.external_id.in_(ids))
            with session_scope() as session:
                stored = set(session.scalars(query)) if ids else set()
            found += [Missing(r["external_id"], r["occurred_at"]) for r in page.rows if r["external_id"] not in stored]
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor


# HubSpot object type → (singular used in events and source_records, last-modified property)
HUBSPOT_TYPES = {
    "deals": ("deal", "hs_lastmodifieddate"),
    "contacts": ("contact", "lastmodifieddate"),
    "companies": ("company", "hs_lastmodifieddate"),
}


class HubSpotSource:
    """HubSpot deals, contacts and companies modified in the window (CRM search, `after` paging).
    Each becomes a `<type>.snapshot` event keyed by object and modification time."""

    name = "hubspot"

    def __init__(self, settings: Settings, context: CallContext | None = None) -> None:
        from switchboard.integrations.hubspot import HubSpotClient

        self.client = HubSpotClient(settings, context)

    def page(self, start: dt.datetime, end: dt.datetime, cursor: str | None) -> Page:
        state = json.loads(cursor) if cursor else {"type": "deals", "after": None}
        plural = str(state["type"])
        singular, modified = HUBSPOT_TYPES[plural]
        filters = [
            {"propertyName": modified, "operator": "GTE", "value": str(int(start.timestamp() * 1000))},
            {"propertyName": modified, "operator": "LT", "value": str(int(end.timestamp() * 1000))},
        ]
        results, after = self.client.search_page(
            plural,
            filters,
            [modified],
            state.get("after"),
            sorts=[{"propertyName": modified, "direction": "ASCENDING"}],
        )
        rows: list[dict[str, Any]] = []
        keys: list[str] = []
        for obj in results:
            updated = _parse_time(obj.get("updated_at") or obj.get("updatedAt")) or end
            external_id = f"{singular}:{obj['id']}:{int(updated.timestamp() * 1000)}"
            payload = {"objectId": str(obj["id"]), "object": obj}
            rows.append(_row("hubspot", external_id, f"{singular}.snapshot", payload, updated))
            keys.append(f"{singular}:{obj['id']}")
        order = list(HUBSPOT_TYPES)
        if after:
            next_cursor: str | None = json.dumps({"type": plural, "after": after})
        elif order.index(plural) + 1 < len(order):
            next_cursor = json.dumps({"type": order[order.index(plural) + 1], "after": None})
        else:
            next_cursor = None
        progress = (order.index(plural) + (0.5 if after else 1.0)) / len(order)
        return Page(rows, next_cursor, progress, keys)

    def missing(self, start: dt.datetime, end: dt.datetime) -> list[Missing]:
        found: list[Missing] = []
        cursor: str | None = None
        while True:
            page = _paced(functools.partial(self.page, start, end, cursor))
            by_type: dict[str, list[str]] = {}
            for key in page.keys:
                singular, object_id = key.split(":", 1)
                by_type.setdefault(singular, []).append(object_id)
            stored: dict[str, SourceRecord] = {}
            with session_scope() as session:
                for singular, ids in by_type.items():
                    for record in session.scalars(select(SourceRecord).where(
                        SourceRecord.source == "hubspot", SourceRecord.object_type == singular,
                        SourceRecord.object_id.in_(ids),
                    )):  # fmt: skip
                        stored[f"{singular}:{record.object_id}"] = record
            for key, row in zip(page.keys, page.rows, strict=True):
                have = stored.get(key)
                modified: dt.datetime = row["occurred_at"]
                # current when we wrote it after HubSpot's last change, or it carries that change
                known = _parse_time((have.data or {}).get("updatedAt")) if have is not None else None
                current = have is not None and (
                    as_utc(have.updated_at) >= modified or (known is not None and known >= modified)
                )
                if not current:
                    found.append(Missing(key, modified))
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor


class CallsSource:
    """Calls from the call-intelligence provider's call list (cursor paging)."""

    name = "calls"

    def __init__(self, settings: Settings, context: CallContext | None = None) -> None:
        from switchboard.integrations.calls import provider_for

        self.provider = provider_for(settings, context)

    def page(self, start: dt.datetime, end: dt.datetime, cursor: str | None) -> Page:
        calls, next_cursor = self.provider.list_calls(start, end, cursor)
        calls = [c for c in calls if c.get("id")]
        rows = [_row("calls", f"call:{c['id']}", "call.listed", c, _parse_time(c.get("started"))) for c in calls]
        last = _parse_time(calls[-1].get("started")) if calls else None
        progress = _fraction(start, end, last, newest_first=False)
        return Page(rows, next_cursor, progress, [f"call:{c['id']}" for c in calls])

    def missing(self, start: dt.datetime, end: dt.datetime) -> list[Missing]:
        found: list[Missing] = []
        cursor: str | None = None
        while True:
            page = _paced(functools.partial(self.page, start, end, cursor))
            ids = [str(row["payload"]["id"]) for row in page.rows]
            with session_scope() as session:
                stored = set(session.scalars(select(SourceRecord.object_id).where(
                    SourceRecord.source == "calls", SourceRecord.object_type == "call", SourceRecord.object_id.in_(ids)
                ))) if ids else set()  # fmt: skip
            found += [
                Missing(f"call:{row['payload']['id']}", row["occurred_at"] or start)
                for row in page.rows
                if str(row["payload"]["id"]) not in stored
            ]
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor


def source_for(name: str, settings: Settings | None = None, context: CallContext | None = None) -> Source:
    """The provider adapter for `name` (ConfigurationError when its credentials are not set)."""
    settings = settings or get_settings()
    classes: dict[str, Callable[[Settings, CallContext | None], Source]] = {
        "stripe": StripeSource, "hubspot": HubSpotSource, "calls": CallsSource,
    }  # fmt: skip
    if name not in classes:
        raise UnknownSource(f"unknown source {name!r}: expected one of {', '.join(SOURCES)}")
    return classes[name](settings, context)


def configured(name: str, settings: Settings) -> bool:
    """Whether the credentials a source needs are set."""
    return {
        "stripe": settings.stripe_api_key, "hubspot": settings.hubspot_access_token, "calls": settings.calls_api_key,
    }[name] is not None  # fmt: skip
