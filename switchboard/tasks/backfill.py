"""Gap detection and tracked backfills, as thin tasks over the provider adapters
(`integrations/backfill_sources.py`) and the job repository (`db/backfill_jobs.py`).

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

Every run of a job's task (deferrals included) touches the job. A job left `running` and
untouched for longer than a redelivery could take (visibility timeout + task time limit + the
longest backoff) lost its message — Redis can drop one taken by a worker killed before it was
recorded unacknowledged — and gap detection re-dispatches it; the page compare-and-set makes a
second runner harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from celery import Task

from switchboard.celery_app import app
from switchboard.db import backfill_jobs
from switchboard.db.backfill_jobs import SOURCES, commit_page, create_job, fail_job, get_job, open_job, start_job
from switchboard.errors import ConfigurationError, Permanent
from switchboard.integrations.backfill_sources import Missing, Source, configured, source_for
from switchboard.integrations.resilience import CallContext
from switchboard.settings import Settings, get_settings
from switchboard.tasks.base import SwitchboardTask, real_retries

log = logging.getLogger("switchboard.backfill")

# Keys of what gap detection found missing, kept on the job (beyond this only the count).
MAX_MISSING_IDS = 50_000


def dispatch(job_id: str) -> None:
    """Queue the job's first task (the low queue: backfills must not delay live work)."""
    run_backfill.delay(job_id)


def advance(job_id: str, max_pages: int, context: CallContext | None = None) -> tuple[bool, int]:
    """Run up to `max_pages` pages of a job; returns (finished, pages committed). Provider
    errors propagate (Deferred, Retryable, Permanent): the cursor is saved after every page."""
    settings = get_settings()
    committed = 0
    source: Source | None = None
    while committed < max_pages:
        seen = start_job(job_id)
        if seen is None:
            return True, committed
        if source is None:
            try:
                source = source_for(seen.source, settings, context)
            except ConfigurationError as error:  # the API or CLI that started it had the key; this worker has not
                raise Permanent(f"this worker cannot read {seen.source}: {error} in the workers' environment") from None
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


def stall_period(settings: Settings) -> dt.timedelta:
    """How long a live job can go untouched: a redelivery after the visibility timeout of a
    task killed at its time limit, or the longest backoff between two runs."""
    return dt.timedelta(
        seconds=settings.visibility_timeout_s + settings.task_time_limit_s + settings.retry_backoff_cap_s
    )


def resume_stalled() -> list[str]:
    """Re-dispatch every running job whose message was lost; returns their ids."""
    resumed = backfill_jobs.stalled_jobs(stall_period(get_settings()))
    for job_id in resumed:
        backfill_jobs.touch_job(job_id)
        dispatch(job_id)
        log.warning("backfill %s: no runner touched it for a whole redelivery period, dispatched again", job_id)
    return resumed


def scan_sources(sources: list[str] | None, now: dt.datetime) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = get_settings()
    resumed = resume_stalled()
    if resumed:
        yield "resumed", {"jobs": resumed}
    start, end = _window(settings, now)
    for source in sources or list(SOURCES):
        if not configured(source, settings):
            yield source, {"skipped": "not configured"}
            continue
        running = open_job(source)
        if running is not None:
            # the open job will fill what it covers; the next pass looks again
            yield source, {"skipped": f"backfill {running} still open"}
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
