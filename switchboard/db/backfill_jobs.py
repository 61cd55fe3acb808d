"""Tracked backfill jobs: their rows in `backfill_jobs`, created, read, advanced one committed
page at a time and failed — the repository `tasks/backfill.py` and the CLI drive.

Each page is committed in one transaction: its events (`INSERT … ON CONFLICT (source,
external_id) DO NOTHING`), the counts, the next cursor and `pages`, which is compared-and-set:
when two runners hold one job (a message redelivered after a crash next to a live one), a page
is committed once and the loser's insert is rolled back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from switchboard.db.models import BackfillJob, Event
from switchboard.db.session import get_engine, get_for_update, session_scope
from switchboard.errors import Permanent
from switchboard.redaction import scrub
from switchboard.utc import as_utc

SOURCES = ("stripe", "hubspot", "calls")
OPEN_STATUSES = ("pending", "running")


class UnknownSource(ValueError):
    """A backfill or scan was asked for a source Switchboard does not know."""


@dataclass
class Page:
    """One provider page turned into event rows, the next cursor and a progress estimate."""

    rows: list[dict[str, Any]]
    next_cursor: str | None
    progress: float | None = None
    keys: list[str] = field(default_factory=list)  # the object key of each row (gap matching)


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


def recent_jobs(limit: int = 50) -> list[dict[str, Any]]:
    """The newest backfill jobs first."""
    with session_scope() as session:
        rows = session.scalars(select(BackfillJob).order_by(BackfillJob.created_at.desc()).limit(limit))
        return [job_summary(job) for job in rows]


@dataclass(frozen=True)
class JobSnapshot:
    source: str
    status: str
    pages: int
    cursor: str | None
    start: dt.datetime
    end: dt.datetime
    missing: frozenset[str] | None


def start_job(job_id: str) -> JobSnapshot | None:
    """The job's current state; a pending job becomes running. None when it is finished."""
    with session_scope() as session:
        job = get_for_update(session, BackfillJob, job_id)
        if job is None:
            raise Permanent(f"backfill job {job_id} does not exist")
        if job.status in ("done", "failed"):
            return None
        now = dt.datetime.now(dt.UTC)
        if job.status == "pending":
            job.status, job.started_at = "running", now
        job.updated_at = now  # the runner's heartbeat: a job nobody touches is stalled
        assert job.window_start is not None and job.window_end is not None
        return JobSnapshot(job.source, job.status, job.pages, job.cursor, job.window_start, job.window_end,
                         frozenset(job.missing_ids) if job.missing_ids else None)  # fmt: skip


def commit_page(job_id: str, seen: JobSnapshot, page: Page) -> list[int] | None:
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


def _reason(error: BaseException) -> str:
    """What a failed job says: our own permanent errors are worded for people; anything else
    keeps its class name."""
    return str(error) if isinstance(error, Permanent) else f"{type(error).__name__}: {error}"


def fail_job(job_id: str, error: BaseException) -> None:
    with session_scope() as session:
        session.execute(
            update(BackfillJob)
            .where(BackfillJob.id == job_id, BackfillJob.status.in_(OPEN_STATUSES))
            .values(status="failed", error=scrub(_reason(error))[:2000],
                    finished_at=dt.datetime.now(dt.UTC))
        )  # fmt: skip


def stalled_jobs(quiet_for: dt.timedelta) -> list[str]:
    """Running jobs no runner has touched for ``quiet_for``: their message was lost (a worker
    killed between taking it from the broker and recording it unacknowledged)."""
    cutoff = dt.datetime.now(dt.UTC) - quiet_for
    with session_scope() as session:
        return list(
            session.scalars(
                select(BackfillJob.id).where(BackfillJob.status == "running", BackfillJob.updated_at < cutoff)
            )
        )


def touch_job(job_id: str) -> None:
    """Mark the job as just re-dispatched, so the next sweep waits a full quiet period again."""
    with session_scope() as session:
        session.execute(update(BackfillJob).where(BackfillJob.id == job_id).values(updated_at=dt.datetime.now(dt.UTC)))


def open_job(source: str) -> str | None:
    """The id of a pending or running job of ``source``, if there is one."""
    with session_scope() as session:
        return session.scalar(
            select(BackfillJob.id).where(BackfillJob.source == source, BackfillJob.status.in_(OPEN_STATUSES)).limit(1)
        )
