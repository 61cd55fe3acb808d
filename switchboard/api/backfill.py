"""Tracked backfills: `POST /api/backfill` starts one, `GET /api/backfill/{id}` shows its progress.

Both need an ingest key (`SWITCHBOARD_INGEST_KEYS`). A backfill pages through the provider on
the workers (`tasks/backfill.py`) from its saved cursor; bad input (unknown source, bad or
empty window, unconfigured provider) gets a 4xx with the reason and creates nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from switchboard.api.auth import require_ingest
from switchboard.api.contract import invalid
from switchboard.api.events import parse_body, request_body_schema
from switchboard.db.backfill_jobs import create_job, get_job, recent_jobs
from switchboard.integrations.backfill_sources import configured
from switchboard.settings import get_settings
from switchboard.tasks.backfill import dispatch
from switchboard.utc import as_utc

router = APIRouter(prefix="/api/backfill", tags=["backfill"])


class BackfillIn(BaseModel):
    """A backfill of one source over [since, until) (until defaults to now; UTC without an offset)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source: Literal["stripe", "hubspot", "calls"]
    since: dt.datetime
    until: dt.datetime | None = None


class BackfillJobOut(BaseModel):
    id: str
    source: str
    status: Literal["pending", "running", "done", "failed"]
    trigger: str
    window_start: str | None
    window_end: str | None
    expected: int | None = Field(description="Items gap detection found missing (null for a requested backfill)")
    fetched: int = Field(description="Items read from the provider")
    stored: int = Field(description="Items stored (new)")
    duplicates: int = Field(description="Items the store already had")
    pages: int
    progress: float = Field(ge=0, le=1)
    cursor: str | None
    reason: str | None
    error: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None


def window(since: dt.datetime, until: dt.datetime | None, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The checked window: since before until, neither in the future (ValueError says why)."""
    since, until = as_utc(since), as_utc(until) if until is not None else now
    if since >= now:
        raise ValueError(f"since ({since.isoformat()}) is not in the past")
    if until > now:
        raise ValueError(f"until ({until.isoformat()}) is in the future")
    if since >= until:
        raise ValueError(f"the window is empty: since ({since.isoformat()}) must be before until ({until.isoformat()})")
    return since, until


def start_backfill(source: str, since: dt.datetime, until: dt.datetime, trigger: str) -> str:
    """Create and dispatch a backfill job; returns its id."""
    job_id = create_job(source, since, until, trigger=trigger)
    dispatch(job_id)
    return job_id


@router.post(
    "",
    dependencies=[Depends(require_ingest)],
    response_model=BackfillJobOut,
    status_code=202,
    operation_id="start_backfill",
    responses={
        202: {
            "description": "The job, queued",
            "links": {"GetBackfill": {"operationId": "get_backfill", "parameters": {"job_id": "$response.body#/id"}}},
        },
        409: {"description": "The source's credentials are not configured"},
        422: {"description": "Unknown source, bad date, or an empty or future window"},
    },
    openapi_extra=request_body_schema(BackfillIn),
)
async def post_backfill(request: Request) -> JSONResponse:
    """Start a tracked backfill of one source over a time window (202 with the job)."""
    body = parse_body(BackfillIn, await request.body())
    try:
        since, until = window(body.since, body.until, dt.datetime.now(dt.UTC))
    except ValueError as error:
        raise invalid(["body"], str(error)) from None
    if not configured(body.source, get_settings()):
        raise HTTPException(409, f"{body.source} is not configured: its API credentials are not set")
    job_id = await run_in_threadpool(start_backfill, body.source, since, until, "api")
    return JSONResponse(await run_in_threadpool(get_job, job_id), status_code=202)


class BackfillJobsOut(BaseModel):
    jobs: list[BackfillJobOut]
    count: int


@router.get(
    "",
    dependencies=[Depends(require_ingest)],
    response_model=BackfillJobsOut,
    operation_id="list_backfills",
    responses={
        200: {
            "description": "Backfill jobs, newest first",
            "links": {
                "GetBackfill": {"operationId": "get_backfill", "parameters": {"job_id": "$response.body#/jobs/0/id"}}
            },
        }
    },
)
async def list_backfills(limit: int = Query(50, ge=1, le=500)) -> JSONResponse:
    """The newest backfill jobs first (requested, gap-detected and scheduled), with progress."""
    jobs = await run_in_threadpool(recent_jobs, limit)
    return JSONResponse({"jobs": jobs, "count": len(jobs)})


@router.get(
    "/{job_id}",
    dependencies=[Depends(require_ingest)],
    response_model=BackfillJobOut,
    operation_id="get_backfill",
    responses={404: {"description": "No such backfill job"}},
)
async def get_backfill(job_id: str = Path(max_length=64)) -> JSONResponse:
    """A backfill job's status, counts and progress."""
    job = await run_in_threadpool(get_job, job_id)
    if job is None:
        raise HTTPException(404, f"no backfill job {job_id}")
    return JSONResponse(job)
