"""Gap detection and tracked backfills.

Gap detection (beat, every SWITCHBOARD_GAP_DETECTION_INTERVAL_S) compares each provider with the
store over the last SWITCHBOARD_GAP_DETECTION_LOOKBACK_S, leaving out the newest
SWITCHBOARD_GAP_DETECTION_SETTLE_S (their webhooks may still be on the way): Stripe's
`events.list` (`created[gte]`/`created[lt]`) against `events`; HubSpot deals, contacts and
companies modified in the window against `source_records`; the call list against
`source_records`. What is missing becomes a `backfill_jobs` row (`trigger=gap_detection`, the
window narrowed to the missing items, `expected` and `missing_ids` set) and a backfill task.

A backfill pages through the provider from its saved cursor. Each page is committed in one
transaction: its events (`INSERT … ON CONFLICT (source, external_id) DO NOTHING`), the counts,
the next cursor and `pages`, which is compared-and-set: when two runners hold one job (a message
redelivered after a crash next to a live one), a page is committed once and the loser's insert
is rolled back. A worker killed mid-page loses only that page; the redelivered task resumes
from the cursor. After SWITCHBOARD_BACKFILL_PAGES_PER_TASK pages a task re-queues itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from celery import Task
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from switchboard.celery_app import app
from switchboard.db.models import BackfillJob, Event, SourceRecord
from switchboard.db.session import get_engine, session_scope
from switchboard.errors import Permanent
from switchboard.integrations.resilience import CallContext, Deferred
from switchboard.redaction import scrub
from switchboard.settings import Settings, get_settings
from switchboard.tasks.base import SwitchboardTask, real_retries
from switchboard.utc import as_utc

log = logging.getLogger("switchboard.backfill")

SOURCES = ("stripe", "hubspot", "calls")
OPEN_STATUSES = ("pending", "running")
# Inside a scan a spent rate budget is waited out when the wait is this short; a longer one
# (an open circuit) re-queues the scan instead.
PACE_MAX_S = 2.0
# Keys of what gap detection found missing, kept on the job (beyond this only the count).
MAX_MISSING_IDS = 50_000

T = TypeVar("T")


class UnknownSource(ValueError):
    """A backfill or scan was asked for a source Switchboard does not know."""


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


# --------------------------------------------------------------------------- sources


@dataclass
class Page:
    """One provider page turned into event rows, the next cursor and a progress estimate."""

    rows: list[dict[str, Any]]
    next_cursor: str | None
    progress: float | None = None
    keys: list[str] = field(default_factory=list)  # the object key of each row (gap matching)


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


# --------------------------------------------------------------------------- jobs


def create_job(
    source: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    trigger: str,
    expected: int | None = None,
    missing_ids: list[str] | None = None,
    reason: str | None = None,
) -> str:
    """A new pending backfill job for [since, until); returns its id (not yet dispatched)."""
    if source not in SOURCES:
        raise UnknownSource(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    since, until = as_utc(since), as_utc(until)
    if since >= until:
        raise ValueError(f"the window is empty: since ({since.isoformat()}) must be before until ({until.isoformat()})")
    with session_scope() as session:
        job = BackfillJob(
            source=source, window_start=since, window_end=until, status="pending", trigger=trigger,
            expected=expected, missing_ids=missing_ids, reason=reason, fetched=0, stored=0, duplicates=0,
            progress=0.0, pages=0,
        )  # fmt: skip
        session.add(job)
        session.flush()
        return job.id


def dispatch(job_id: str) -> None:
    """Queue the job's first task (the low queue: backfills must not delay live work)."""
    run_backfill.delay(job_id)


def job_summary(job: BackfillJob) -> dict[str, Any]:
    """The job as JSON-ready progress (the API's and the CLI's view)."""

    def iso(value: dt.datetime | None) -> str | None:
        return as_utc(value).isoformat() if value is not None else None

    return {
        "id": job.id, "source": job.source, "status": job.status, "trigger": job.trigger,
        "window_start": iso(job.window_start), "window_end": iso(job.window_end),
        "expected": job.expected, "fetched": job.fetched, "stored": job.stored, "duplicates": job.duplicates,
        "pages": job.pages, "progress": round(float(job.progress or 0.0), 4), "cursor": job.cursor,
        "reason": job.reason, "error": job.error, "created_at": iso(job.created_at),
        "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
    }  # fmt: skip


def get_job(job_id: str) -> dict[str, Any] | None:
    with session_scope() as session:
        job = session.get(BackfillJob, job_id)
        return job_summary(job) if job is not None else None


@dataclass(frozen=True)
class _Snapshot:
    source: str
    status: str
    pages: int
    cursor: str | None
    start: dt.datetime
    end: dt.datetime
    missing: frozenset[str] | None


def _claim(job_id: str) -> _Snapshot | None:
    """The job's current state; a pending job becomes running. None when it is finished."""
    with session_scope() as session:
        job = session.get(BackfillJob, job_id, with_for_update=True)
        if job is None:
            raise Permanent(f"backfill job {job_id} does not exist")
        if job.status in ("done", "failed"):
            return None
        if job.status == "pending":
            job.status, job.started_at = "running", dt.datetime.now(dt.UTC)
        assert job.window_start is not None and job.window_end is not None
        return _Snapshot(job.source, job.status, job.pages, job.cursor, job.window_start, job.window_end,
                         frozenset(job.missing_ids) if job.missing_ids else None)  # fmt: skip


def commit_page(job_id: str, seen: _Snapshot, page: Page) -> list[int] | None:
    """Store one page and advance the job in one transaction; None when another runner
    committed this page first (nothing of it is kept). Returns the new events' ids."""
    rows = page.rows
    skipped = 0
    if seen.missing is not None and seen.source == "hubspot":
        # a gap job stores what was found missing; the rest is already current in the store
        wanted = [row for row, key in zip(rows, page.keys, strict=True) if key in seen.missing]
        skipped, rows = len(rows) - len(wanted), wanted
    engine = get_engine()
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as connection:
        new_ids: list[int] = []
        if rows:
            statement = (
                dialect.insert(Event).values([{**row, "status": "received"} for row in rows])
                .on_conflict_do_nothing(index_elements=["source", "external_id"]).returning(Event.id)
            )  # fmt: skip
            new_ids = list(connection.scalars(statement))
        done = page.next_cursor is None
        now = dt.datetime.now(dt.UTC)
        values: dict[str, Any] = {
            "pages": seen.pages + 1,
            "cursor": page.next_cursor if not done else seen.cursor,
            "fetched": BackfillJob.fetched + len(page.rows),
            "stored": BackfillJob.stored + len(new_ids),
            "duplicates": BackfillJob.duplicates + (len(rows) - len(new_ids)) + skipped,
            "updated_at": now,
        }
        if page.progress is not None:
            values["progress"] = page.progress
        if done:
            values.update(status="done", progress=1.0, finished_at=now)
        advanced = connection.execute(
            update(BackfillJob)
            .where(BackfillJob.id == job_id, BackfillJob.pages == seen.pages, BackfillJob.status == "running")
            .values(**values)
        )
        if advanced.rowcount != 1:
            connection.rollback()  # another runner committed this page: keep nothing of ours
            return None
    return new_ids


def fail_job(job_id: str, error: BaseException) -> None:
    with session_scope() as session:
        session.execute(
            update(BackfillJob)
            .where(BackfillJob.id == job_id, BackfillJob.status.in_(OPEN_STATUSES))
            .values(status="failed", error=scrub(f"{type(error).__name__}: {error}")[:2000],
                    finished_at=dt.datetime.now(dt.UTC))
        )  # fmt: skip


def advance(job_id: str, max_pages: int, context: CallContext | None = None) -> tuple[bool, int]:
    """Run up to `max_pages` pages of a job; returns (finished, pages committed). Provider
    errors propagate (Deferred, Retryable, Permanent): the cursor is saved after every page."""
    settings = get_settings()
    committed = 0
    source: Source | None = None
    while committed < max_pages:
        seen = _claim(job_id)
        if seen is None:
            return True, committed
        source = source or source_for(seen.source, settings, context)
        page = source.page(seen.start, seen.end, seen.cursor)
        new_ids = commit_page(job_id, seen, page)
        if new_ids is None:
            continue  # another runner committed that page: carry on from the job's cursor
        committed += 1
        if new_ids:
            from switchboard.tasks.ingest import enqueue

            enqueue(new_ids)
        if page.next_cursor is None:
            return True, committed
    return False, committed


class BackfillTask(SwitchboardTask):
    """A backfill page task: when it fails for good (a permanent error, exhausted retries, a
    missing credential), its job is marked failed with the reason."""

    abstract = True

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        fail_job(args[0] if args else kwargs["job_id"], exc)


@app.task(name="switchboard.tasks.backfill.run_backfill", base=BackfillTask, bind=True, acks_late=True, max_retries=8)
def run_backfill(self: Task[Any, Any], job_id: str) -> dict[str, Any]:
    """Page a backfill job forward from its saved cursor; re-queues itself until done."""
    settings = get_settings()
    finished, pages = advance(job_id, settings.backfill_pages_per_task, CallContext(attempt=real_retries(self) + 1))
    if not finished:
        run_backfill.delay(job_id)
    summary = get_job(job_id) or {}
    log.info("backfill %s: %d page(s) this task, status %s", job_id, pages, summary.get("status"))
    return summary


# --------------------------------------------------------------------------- gap detection


def _open_job(source: str) -> str | None:
    with session_scope() as session:
        return session.scalar(
            select(BackfillJob.id).where(BackfillJob.source == source, BackfillJob.status.in_(OPEN_STATUSES)).limit(1)
        )


def find_gaps(
    source: str, start: dt.datetime, end: dt.datetime, settings: Settings | None = None
) -> tuple[list[Missing], str | None]:
    """Compare one source with the store over [start, end); a gap becomes a pending backfill
    job over the missing items' span. Returns (missing, job id or None)."""
    settings = settings or get_settings()
    missing = source_for(source, settings).missing(start, end)
    if not missing:
        return missing, None
    first = min(m.at for m in missing)
    last = max(m.at for m in missing)
    keys = sorted(m.key for m in missing)
    job_id = create_job(
        source, max(start, first), min(end, last + dt.timedelta(seconds=1)), trigger="gap_detection",
        expected=len(missing), missing_ids=keys if len(keys) <= MAX_MISSING_IDS else None,
        reason=f"gap detection: {len(missing)} {source} item(s) in {start.isoformat()} .. {end.isoformat()} "
        "missing from the store",
    )  # fmt: skip
    return missing, job_id


def _window(settings: Settings, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    end = now - dt.timedelta(seconds=settings.gap_detection_settle_s)
    return now - dt.timedelta(seconds=settings.gap_detection_lookback_s), end


def scan_sources(sources: list[str] | None, now: dt.datetime) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = get_settings()
    start, end = _window(settings, now)
    for source in sources or list(SOURCES):
        if not configured(source, settings):
            yield source, {"skipped": "not configured"}
            continue
        open_job = _open_job(source)
        if open_job is not None:
            # the open job will fill what it covers; the next pass looks again
            yield source, {"skipped": f"backfill {open_job} still open"}
            continue
        missing, job_id = find_gaps(source, start, end, settings)
        if job_id is not None:
            dispatch(job_id)
            log.warning("gap detection: %d %s item(s) missing, backfill %s queued", len(missing), source, job_id)
        yield source, {"missing": len(missing), "job_id": job_id}


@app.task(name="switchboard.tasks.backfill.detect_gaps", base=SwitchboardTask, bind=True, acks_late=True,
          max_retries=5)  # fmt: skip
def detect_gaps(self: Task[Any, Any], sources: list[str] | None = None) -> dict[str, Any]:
    """Beat job: compare each configured provider with the store; queue a backfill per gap."""
    return dict(scan_sources(sources, dt.datetime.now(dt.UTC)))
