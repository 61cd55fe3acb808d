"""`switchboard backfill --source stripe --since 2026-11-01 [--until …]`: start a tracked backfill
and follow it with a progress bar until it is done (exit 0) or failed (exit 1).

By default the workers do the paging (the job survives this command); `--inline` pages in this
process instead, through the same code, waiting out the shared rate budget. Bad input (an
unknown source, a bad date, an empty window) is a message and exit code 2.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from switchboard.utc import as_utc

console = Console(stderr=True, soft_wrap=True)

SOURCES = ("stripe", "hubspot", "calls")


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]switchboard backfill:[/red] {message}", highlight=False)
    return typer.Exit(code)


def parse_when(value: str, option: str) -> dt.datetime:
    """An ISO date or datetime; UTC when it carries no offset."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _fail(
            f"{option} {value!r} is not an ISO date or datetime (e.g. 2026-11-01 or 2026-11-01T08:00:00Z)"
        ) from None
    return as_utc(parsed)


def _describe(job: dict[str, Any]) -> str:
    return f"{job['status']}: {job['fetched']} fetched, {job['stored']} stored, {job['duplicates']} already stored"


def backfill(
    source: Annotated[str, typer.Option(help="stripe, hubspot or calls")],
    since: Annotated[str, typer.Option(help="Start of the window: ISO date or datetime (UTC without an offset)")],
    until: Annotated[str | None, typer.Option(help="End of the window (default: now)")] = None,
    inline: Annotated[bool, typer.Option("--inline", help="Page in this process instead of on the workers")] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the job until it ends")] = True,
    poll_s: Annotated[float, typer.Option(help="Seconds between progress polls", min=0.05)] = 0.5,
) -> None:
    """Backfill missing provider events over a time window, with a progress bar."""
    from switchboard.api.backfill import start_backfill, window
    from switchboard.db import backfill_jobs as jobs
    from switchboard.errors import Permanent, Retryable
    from switchboard.integrations.backfill_sources import configured
    from switchboard.integrations.resilience import CallContext, Deferred
    from switchboard.logs import configure_logging
    from switchboard.settings import get_settings
    from switchboard.tasks.backfill import advance

    if source not in SOURCES:
        raise _fail(f"unknown source {source!r}: expected one of {', '.join(SOURCES)}")
    start_at = parse_when(since, "--since")
    end_at = parse_when(until, "--until") if until is not None else None
    try:
        start_at, end_at = window(start_at, end_at, dt.datetime.now(dt.UTC))
    except ValueError as error:
        raise _fail(str(error)) from None
    settings = get_settings()
    configure_logging(settings, command=True)
    if not configured(source, settings):
        raise _fail(f"{source} is not configured: its API credentials are not set")

    if inline:
        job_id = jobs.create_job(source, start_at, end_at, trigger="cli")
    else:
        job_id = start_backfill(source, start_at, end_at, "cli")
    typer.echo(f"backfill {job_id} of {source} from {start_at.isoformat()} to {end_at.isoformat()}")
    if not wait and not inline:
        return

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[counts]}"),
               TimeElapsedColumn())  # fmt: skip
    job: dict[str, Any] = jobs.get_job(job_id) or {}
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(source, total=1.0, counts="")
        failures = 0  # consecutive transient failures: the policy's attempt count
        while job.get("status") not in ("done", "failed"):
            if inline:
                try:
                    advance(job_id, max_pages=1, context=CallContext(attempt=failures + 1))
                    failures = 0
                except Deferred as deferred:  # the shared rate budget is spent: wait for it
                    time.sleep(min(deferred.retry_after_s or 0.05, 5.0))
                except Retryable as error:
                    failures += 1
                    time.sleep(min(error.retry_after_s or 1.0, 30.0))
                except Permanent as error:
                    jobs.fail_job(job_id, error)
            else:
                time.sleep(poll_s)
            job = jobs.get_job(job_id) or {}
            progress.update(bar, completed=float(job.get("progress") or 0.0), counts=_describe(job))
    typer.echo(_describe(job))
    if job.get("status") == "failed":
        raise _fail(f"backfill {job_id} failed: {job.get('error')}", code=1)
