"""Event ingestion: `POST /api/events` and `POST /api/events/batch`.

Events are unique on (source, external id): a duplicate or a replay is accepted idempotently
(`"duplicate": true`) and never stored or processed twice. A batch is written set-based, in one
`INSERT … ON CONFLICT DO NOTHING RETURNING` round trip. Bad input gets a 4xx with the reason
and stores nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from starlette.concurrency import run_in_threadpool

from switchboard.api.auth import require_api_key
from switchboard.db.models import Event
from switchboard.db.session import get_engine
from switchboard.settings import get_settings
from switchboard.tasks.ingest import enqueue

router = APIRouter(prefix="/api/events", tags=["events"])

EventSource = Literal["stripe", "hubspot", "calls"]


class EventIn(BaseModel):
    """One event from a source system."""

    model_config = ConfigDict(extra="forbid")

    source: EventSource
    external_id: str = Field(min_length=1, max_length=255, description="The source's own id of the event")
    type: str = Field(min_length=1, max_length=128, description="e.g. charge.failed, deal.propertyChange")
    occurred_at: dt.datetime | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1)


class EventAccepted(BaseModel):
    id: int | None = Field(description="The stored event's id (null for a duplicate)")
    source: str
    external_id: str
    duplicate: bool


class BatchAccepted(BaseModel):
    accepted: int
    duplicates: int
    events: list[EventAccepted]


def store_events(events: list[EventIn]) -> list[EventAccepted]:
    """Insert the events set-based; existing (source, external id) pairs are duplicates."""
    engine = get_engine()
    rows = [
        {
            "source": e.source,
            "external_id": e.external_id,
            "type": e.type,
            "payload": e.payload,
            "occurred_at": e.occurred_at,
            "status": "received",
        }
        for e in events
    ]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(Event)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["source", "external_id"])
        .returning(Event.id, Event.source, Event.external_id)
    )
    with engine.begin() as connection:
        stored = {(row.source, row.external_id): row.id for row in connection.execute(statement)}
    seen: set[tuple[str, str]] = set()
    out = []
    for event in events:
        key = (event.source, event.external_id)
        new = key in stored and key not in seen
        seen.add(key)
        out.append(
            EventAccepted(
                id=stored[key] if new else None, source=event.source, external_id=event.external_id, duplicate=not new
            )
        )
    return out


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON: 413 when larger than `limit` bytes, 400 when not JSON."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
    try:
        return json.loads(bytes(body))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"body is not valid JSON: {error}") from None


def _validated(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise HTTPException(
            422, [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        ) from None


@router.post(
    "",
    dependencies=[Depends(require_api_key)],
    response_model=EventAccepted,
    status_code=202,
    responses={
        200: {"model": EventAccepted, "description": "A duplicate: accepted, not stored again"},
        400: {"description": "Not JSON"},
        401: {"description": "No or a wrong API key"},
        413: {"description": "Body too large"},
        422: {"description": "Not a valid event"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": EventIn.model_json_schema(ref_template="#/components/schemas/{model}")}
            },
        }
    },
)
async def post_event(request: Request) -> JSONResponse:
    """Accept one event (202), or recognise a duplicate (200, `"duplicate": true`)."""
    event = _validated(EventIn, await read_json(request, get_settings().ingest_max_body_bytes))
    [accepted] = store_events([event])
    await run_in_threadpool(enqueue, [accepted.id] if accepted.id is not None else [])
    return JSONResponse(accepted.model_dump(), status_code=200 if accepted.duplicate else 202)


@router.post(
    "/batch",
    dependencies=[Depends(require_api_key)],
    response_model=BatchAccepted,
    status_code=202,
    responses={
        400: {"description": "Not JSON"},
        401: {"description": "No or a wrong API key"},
        413: {"description": "Too many events or too large a body"},
        422: {"description": "An event is not valid: nothing of the batch is stored"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": BatchIn.model_json_schema(ref_template="#/components/schemas/{model}")}
            },
        }
    },
)
async def post_batch(request: Request) -> JSONResponse:
    """Accept up to SWITCHBOARD_INGEST_MAX_BATCH_EVENTS events in one set-based write."""
    settings = get_settings()
    data = await read_json(request, settings.ingest_max_body_bytes)
    if (
        isinstance(data, dict)
        and isinstance(data.get("events"), list)
        and len(data["events"]) > settings.ingest_max_batch_events
    ):
        raise HTTPException(
            413, f"{len(data['events'])} events exceed the batch limit of {settings.ingest_max_batch_events}"
        )
    batch = _validated(BatchIn, data)
    accepted = store_events(batch.events)
    await run_in_threadpool(enqueue, [a.id for a in accepted if a.id is not None])
    body = BatchAccepted(
        accepted=sum(1 for a in accepted if not a.duplicate),
        duplicates=sum(1 for a in accepted if a.duplicate),
        events=accepted,
    )
    return JSONResponse(body.model_dump(), status_code=202)
