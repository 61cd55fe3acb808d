"""GET /api/health: is the database reachable, is the broker reachable, which workers answer."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from switchboard.db.session import get_engine

router = APIRouter()


def _check_database() -> str:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"
    except Exception as error:  # reported, not raised: health must answer
        return f"error: {type(error).__name__}"


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


@router.get("/api/health")
async def health() -> JSONResponse:
    """200 with status ok when database and broker answer; 503 otherwise."""
    database, (broker, workers) = await asyncio.gather(
        asyncio.to_thread(_check_database), asyncio.to_thread(_check_broker_and_workers)
    )
    ok = database == "ok" and broker == "ok"
    body: dict[str, Any] = {
        "status": "ok" if ok else "degraded",
        "database": database,
        "broker": broker,
        "workers": workers,
    }
    return JSONResponse(body, status_code=200 if ok else 503)
