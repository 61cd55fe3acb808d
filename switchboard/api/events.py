"""Event ingestion: `POST /api/events` and `POST /api/events/batch`.

Events are unique on (source, external id): a duplicate or a replay is accepted idempotently
(`"duplicate": true`) and never stored or processed twice. A batch is written set-based, in one
`INSERT … ON CONFLICT DO NOTHING RETURNING` round trip. Bad input gets a 4xx with the reason
and stores nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.dialects import sqlite
from starlette.concurrency import run_in_threadpool

from switchboard.api.auth import require_ingest
from switchboard.api.contract import invalid
from switchboard.db.models import Event
from switchboard.db.session import get_engine
from switchboard.settings import get_settings
from switchboard.tasks.ingest import enqueue

router = APIRouter(prefix="/api/events", tags=["events"])

EventSource = Literal["stripe", "hubspot", "calls"]
OCCURRED_AT_PATTERN = r"^([1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9])-"


class EventIn(BaseModel):
    """One event from a source system."""

    # strict: a number is not a date-time and not an id, as the published schema says
    model_config = ConfigDict(extra="forbid", strict=True)

    source: EventSource
    external_id: str = Field(min_length=1, max_length=255, description="The source's own id of the event")
    type: str = Field(min_length=1, max_length=128, description="e.g. charge.failed, deal.propertyChange")
    occurred_at: dt.datetime | None = Field(
        default=None,
        description="When it happened (RFC 3339; no offset means UTC; years 1000 to 9998)",
        json_schema_extra={"pattern": OCCURRED_AT_PATTERN},
    )
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        # stored in UTC: PostgreSQL refuses offsets beyond ±15:59; no offset means UTC
        if value is None:
            return None
        if not 1000 <= value.year <= 9998:  # as the pattern says: year 1 at +04:00 is year 0 in UTC
            raise ValueError("the year must be from 1000 to 9998")
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        try:
            return value.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError("the date-time is out of range once converted to UTC") from None


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

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


class ProcessingQueue:
    """Coalesces newly accepted event ids into few `process_events` messages: ids gathered
    within FLUSH_AFTER_S (or MAX_IDS of them) go out in one message, published off the event
    loop. Publishing one message per single event cost more than storing the event. Ids of a
    process that dies before a flush stay `received` and the sweep (tasks/ingest.py) takes them."""

    FLUSH_AFTER_S = 0.02
    MAX_IDS = 1000

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, ids: list[int]) -> None:
        if not ids:
            return
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # a new server loop (a restart, or a test client): forget the old timer
            self.loop, self.timer = loop, None
        self.ids += ids
        if len(self.ids) >= self.MAX_IDS:
            self.flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ids, self.ids = self.ids, []
        if ids:
            task = asyncio.get_running_loop().create_task(run_in_threadpool(enqueue, ids))
            _in_flight.add(task)
            task.add_done_callback(_in_flight.discard)


_in_flight: set[asyncio.Task[None]] = set()  # keeps publishing tasks referenced until done
processing = ProcessingQueue()


def request_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads its own body: `model`'s JSON schema with
    nested models inlined (a `$ref` into `$defs` would not resolve inside the OpenAPI document)."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


# PostgreSQL: one statement whatever the batch size (six arrays unnested), so nothing is
# compiled per batch; psycopg2 adapts the arrays in C. This is the hot path of ingestion.
_PG_INSERT = """
INSERT INTO events (source, external_id, type, payload, occurred_at, status)
SELECT s, x, t, p, o, 'received'
FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::jsonb[], %s::timestamptz[]) AS u(s, x, t, p, o)
ON CONFLICT (source, external_id) DO NOTHING
RETURNING id, source, external_id
"""


def insert_events(events: list[EventIn]) -> dict[tuple[str, str], int]:
    """Insert in one round trip; returns the ids of the (source, external id) pairs stored now."""
    engine = get_engine()
    if engine.dialect.name == "postgresql":
        columns = (
            [e.source for e in events],
            [e.external_id for e in events],
            [e.type for e in events],
            [json.dumps(e.payload, separators=(",", ":")) for e in events],
            [e.occurred_at for e in events],
        )
        with engine.begin() as connection:
            return {(row[1], row[2]): row[0] for row in connection.exec_driver_sql(_PG_INSERT, columns)}
    rows = [
        {"source": e.source, "external_id": e.external_id, "type": e.type, "payload": e.payload,
         "occurred_at": e.occurred_at, "status": "received"}
        for e in events
    ]  # fmt: skip
    statement = (
        sqlite.insert(Event).values(rows).on_conflict_do_nothing(index_elements=["source", "external_id"])
        .returning(Event.id, Event.source, Event.external_id)
    )  # fmt: skip
    with engine.begin() as connection:
        return {(row.source, row.external_id): row.id for row in connection.execute(statement)}


def store_events(events: list[EventIn]) -> list[EventAccepted]:
    """Insert the events set-based; existing (source, external id) pairs are duplicates."""
    stored = insert_events(events)
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


def ascii_int(value: Any) -> int | None:
    """An integer written in ASCII digits (a JSON number, or a string of 0-9), else None:
    `str.isdigit()` also accepts "²" and other digits `int()` refuses."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def whole_number(value: Any) -> int | None:
    """A JSON number with no fractional part (`12` or `12.0`, as JSON Schema's "integer"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes) -> Any:
    """A raw body as JSON, or a 400 saying why: not UTF-8, not JSON, NaN or infinite numbers
    (jsonb cannot hold them), nesting too deep to parse."""
    try:
        value = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
        # a lone surrogate (\\ud800) parses but cannot be stored as UTF-8 text
        json.dumps(value, ensure_ascii=False).encode("utf-8")
        return value
    except UnicodeEncodeError:
        raise HTTPException(400, "body is not valid JSON: it holds a lone surrogate (\\ud800-\\udfff)") from None
    except UnicodeDecodeError:
        raise HTTPException(400, "body is not UTF-8") from None
    except (json.JSONDecodeError, ValueError) as error:
        raise HTTPException(400, f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise HTTPException(400, "body is not valid JSON: nested too deeply") from None


M = TypeVar("M", bound=BaseModel)

# A JSON `\u0000` escape (not an escaped backslash followed by "u0000"): PostgreSQL cannot
# store NUL in text or jsonb, so such a body is refused with a 422 instead of failing the insert.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def reject_nul(body: bytes) -> None:
    """422 when the JSON body carries a NUL character anywhere."""
    if b"u0000" in body and _NUL_ESCAPE.search(body):
        raise invalid(["body"], "the body contains a NUL (\\u0000) character, which cannot be stored")


def parse_body(model: type[M], body: bytes) -> M:
    """`body` validated as `model` straight from JSON (pydantic-core's parser, strict types, as
    the OpenAPI schema says): 400 when it is not JSON, 422 with every error otherwise."""
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise HTTPException(400, f"body is not valid JSON: {errors[0]['msg']}") from None
        raise HTTPException(
            422, [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        ) from None
    reject_nul(body)
    return parsed


@router.post(
    "",
    dependencies=[Depends(require_ingest)],
    response_model=EventAccepted,
    status_code=202,
    responses={
        200: {"model": EventAccepted, "description": "A duplicate: accepted, not stored again"},
        422: {"description": "Not a valid event"},
    },
    openapi_extra=request_body_schema(EventIn),
)
async def post_event(request: Request) -> JSONResponse:
    """Accept one event (202), or recognise a duplicate (200, `"duplicate": true`)."""
    event = parse_body(EventIn, await request.body())
    [accepted] = store_events([event])
    processing.add([accepted.id] if accepted.id is not None else [])
    return JSONResponse(accepted.model_dump(), status_code=200 if accepted.duplicate else 202)


@router.post(
    "/batch",
    dependencies=[Depends(require_ingest)],
    response_model=BatchAccepted,
    status_code=202,
    responses={
        413: {"description": "Too many events, or too large a body"},
        422: {"description": "An event is not valid: nothing of the batch is stored"},
    },
    openapi_extra=request_body_schema(BatchIn),
)
async def post_batch(request: Request) -> JSONResponse:
    """Accept up to SWITCHBOARD_INGEST_MAX_BATCH_EVENTS events in one set-based write."""
    settings = get_settings()
    batch = parse_body(BatchIn, await request.body())
    if len(batch.events) > settings.ingest_max_batch_events:
        raise HTTPException(
            413, f"{len(batch.events)} events exceed the batch limit of {settings.ingest_max_batch_events}"
        )
    accepted = store_events(batch.events)
    processing.add([a.id for a in accepted if a.id is not None])
    body = BatchAccepted(
        accepted=sum(1 for a in accepted if not a.duplicate),
        duplicates=sum(1 for a in accepted if a.duplicate),
        events=accepted,
    )
    return JSONResponse(body.model_dump(), status_code=202)
