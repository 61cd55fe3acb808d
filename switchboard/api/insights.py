"""Insights to work: `GET /api/insights`, `POST /api/insights/{id}/acknowledge|snooze|resolve`."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from switchboard import insights as work
from switchboard.api.auth import require_operator
from switchboard.api.contract import PathId, invalid
from switchboard.db import queries

router = APIRouter(prefix="/api/insights", tags=["insights"], dependencies=[Depends(require_operator)])
FILTER_ENUM: dict[str, Any] = {"enum": list(queries.INSIGHT_FILTERS)}
InsightId = PathId
RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such insight"},
    409: {"description": "Already resolved, in the past, or a run is working on it (resolve)"},
}
LINKS = {
    name: {"operationId": operation, "parameters": {"insight_id": "$response.body#/insights/0/id"}}
    for name, operation in (("Acknowledge", "acknowledge_insight"), ("Snooze", "snooze_insight"),
                            ("Resolve", "resolve_insight"))
}  # fmt: skip


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=4000, description="For the record")
    by: str = Field("api", min_length=1, max_length=64, description="Who (recorded)")


class Snooze(Note):
    until: AwareDatetime = Field(description="No run for it before this time (with an offset, e.g. Z)")


@router.get("", operation_id="list_insights", responses={200: {"description": "Insights", "links": LINKS}})
async def list_insights(
    status: str = Query(
        "open",
        description="open, resolved, all, or one status",
        json_schema_extra={"enum": list(queries.INSIGHT_FILTERS)},
    ),
    limit: int = Query(200, ge=1, le=1000),
) -> dict[str, Any]:
    """Insights, most severe and most urgent first, with SLA time left, occurrences, the latest
    run and their triage (acknowledged, snoozed, resolved, note)."""
    if status not in queries.INSIGHT_FILTERS:
        raise invalid(
            ["query", "status"], f"unknown status {status!r}: use one of {', '.join(queries.INSIGHT_FILTERS)}"
        )
    rows = await run_in_threadpool(queries.insights, status, limit)
    return {"insights": rows, "count": len(rows)}


@router.post("/{insight_id}/acknowledge", operation_id="acknowledge_insight", responses=RESPONSES)
async def acknowledge(insight_id: InsightId, body: Annotated[Note | None, Body()] = None) -> dict[str, Any]:
    """You have it: recorded; past its SLA it is run rather than expired."""
    body = body or Note()
    return await run_in_threadpool(lambda: work.acknowledge(insight_id, by=body.by, note=body.note))


@router.post("/{insight_id}/snooze", operation_id="snooze_insight", responses=RESPONSES)
async def snooze(insight_id: InsightId, body: Annotated[Snooze, Body()]) -> dict[str, Any]:
    """No run for it before `until`, however often it recurs."""
    if body.until.year > 9998:
        raise invalid(["body", "until"], "until must be before the year 9999")
    until = body.until.astimezone(dt.UTC)
    return await run_in_threadpool(lambda: work.snooze(insight_id, until=until, by=body.by, note=body.note))


@router.post("/{insight_id}/resolve", operation_id="resolve_insight", responses=RESPONSES)
async def resolve(insight_id: InsightId, body: Annotated[Note | None, Body()] = None) -> dict[str, Any]:
    """End the episode: no run for it; the anomaly's next occurrence is a new insight."""
    body = body or Note()
    return await run_in_threadpool(lambda: work.resolve(insight_id, by=body.by, note=body.note))
