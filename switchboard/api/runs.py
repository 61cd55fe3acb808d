"""Runs: `GET /api/runs`, `GET /api/runs/{id}`, `POST /api/runs/{id}/replay`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from starlette.concurrency import run_in_threadpool

from switchboard.api.auth import require_operator
from switchboard.api.contract import invalid
from switchboard.db import queries
from switchboard.db.models import RUN_STATUSES
from switchboard.pipeline import AGENTS
from switchboard.replay import replay

router = APIRouter(prefix="/api/runs", tags=["runs"], dependencies=[Depends(require_operator)])

# OpenAPI links: the ids a list returns are what the detail and action routes take.
RUN_LINKS = {
    "GetRun": {"operationId": "get_run", "parameters": {"run_id": "$response.body#/runs/0/run_id"}},
    "ReplayRun": {"operationId": "replay_run", "parameters": {"run_id": "$response.body#/runs/0/run_id"}},
}


@router.get("", operation_id="list_runs", responses={200: {"description": "Runs", "links": RUN_LINKS}})
async def list_runs(
    limit: int = Query(50, ge=1, le=500),
    agent: str | None = Query(
        None, description="The last agent the run reached", json_schema_extra={"enum": list(AGENTS)}
    ),
    status: str | None = Query(None, description="Run status", json_schema_extra={"enum": list(RUN_STATUSES)}),
    insight_kind: str | None = Query(None, max_length=64, description="The insight kind the run handles"),
) -> dict[str, Any]:
    """The newest runs first, optionally filtered by agent, status and insight kind."""
    if agent is not None and agent not in AGENTS:
        raise invalid(["query", "agent"], f"unknown agent {agent!r}: use one of {', '.join(AGENTS)}")
    if status is not None and status not in RUN_STATUSES:
        raise invalid(["query", "status"], f"unknown status {status!r}: use one of {', '.join(RUN_STATUSES)}")
    runs = await run_in_threadpool(
        queries.recent_runs, limit, agent=agent, status=status, insight_kind=insight_kind or None
    )
    return {"runs": runs, "count": len(runs), "limit": limit}


@router.get("/filters")
async def run_filters() -> dict[str, list[str]]:
    """The values the runs list can be filtered by."""
    return await run_in_threadpool(queries.run_filter_options)


@router.get("/{run_id}", operation_id="get_run", responses={404: {"description": "No such run"}})
async def get_run(run_id: str) -> dict[str, Any]:
    """One run: its steps (timing, usage, payloads, errors), tool calls, decisions, approvals, actions."""
    detail = await run_in_threadpool(queries.run_detail, run_id)
    if detail is None:
        raise HTTPException(404, f"no run {run_id}")
    return detail


@router.post(
    "/{run_id}/replay",
    operation_id="replay_run",
    status_code=202,
    responses={
        404: {"description": "No such run"},
        409: {"description": "The run is not failed, or has nothing to replay from"},
    },
)
async def replay_run(run_id: str) -> dict[str, Any]:
    """Queue a failed run again from its failed step (finished steps and executed actions are not repeated)."""
    step = await run_in_threadpool(replay, run_id, by="api")
    return {"run_id": run_id, "replayed_from": step, "status": "queued"}


records_router = APIRouter(prefix="/api/records", tags=["records"], dependencies=[Depends(require_operator)])


@records_router.get("/{object_id}", responses={404: {"description": "No stored record has this id"}})
async def get_records(object_id: str = Path(min_length=1, max_length=255)) -> dict[str, Any]:
    """The stored source records with this object id — what an analysis cites as evidence."""
    found = await run_in_threadpool(queries.records_named, object_id)
    if not found:
        raise HTTPException(404, f"no stored record {object_id}")
    return {"records": found}
