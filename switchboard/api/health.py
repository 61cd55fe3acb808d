"""GET /api/health: ok or degraded for anyone; with an operator key presented (never to a caller
without one, loopback included), also the database, the broker and the workers that answer.

The broker check and the worker ping (a Celery broadcast that waits 0.5 s for replies) are kept
for `WORKER_CHECK_TTL_S`: whatever the request rate, a process broadcasts at most once per
period, and a broker that just went down is reported within that period.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from switchboard.api.auth import presents_operator_key
from switchboard.db.session import get_engine

router = APIRouter()
WORKER_CHECK_TTL_S = 5.0


def _check_database() -> str:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"
    except Exception as error:  # reported, not raised: health must answer
        return f"error: {type(error).__name__}"


class _WorkerCheck:
    """The last broker check and worker ping, refreshed by one caller at a time when stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at = -WORKER_CHECK_TTL_S
        self._answer: tuple[str, list[str]] = ("unknown", [])

    def get(self) -> tuple[str, list[str]]:
        with self._lock:  # concurrent callers wait for the one refresh instead of broadcasting too
            if time.monotonic() - self._at >= WORKER_CHECK_TTL_S:
                self._answer = _check_broker_and_workers()
                self._at = time.monotonic()
            return self._answer


def _check_broker_and_workers() -> tuple[str, list[str]]:
    from switchboard.celery_app import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception as error:
        return f"error: {type(error).__name__}", []
    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception:
        replies = []
    return "ok", sorted(name for reply in replies for name in reply)


WORKER_CHECK = _WorkerCheck()


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str | None = Field(None, description="ok, or the error class (with an operator key only)")
    broker: str | None = Field(None, description="ok, or the error class (with an operator key only)")
    workers: list[str] | None = Field(None, description="Workers that answered a ping (with an operator key only)")


@router.get(
    "/api/health",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: {"model": Health, "description": "Degraded: the database or the broker does not answer"}},
)
async def health(request: Request) -> JSONResponse:
    """200 with status ok when database and broker answer; 503 otherwise. Details (database,
    broker, worker names) only with an operator key."""
    database, (broker, workers) = await asyncio.gather(
        asyncio.to_thread(_check_database), asyncio.to_thread(WORKER_CHECK.get)
    )
    ok = database == "ok" and broker == "ok"
    status = "ok" if ok else "degraded"
    if presents_operator_key(request):
        body = Health(status=status, database=database, broker=broker, workers=workers)
    else:
        body = Health(status=status)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=200 if ok else 503)
