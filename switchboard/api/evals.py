"""Evals: `GET /api/evals` (runs over time, each suite's pinned baseline) and
`GET /api/evals/{id}` (its scenarios, their diff against the baseline, the judge's verdicts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from starlette.concurrency import run_in_threadpool

from switchboard.api.auth import require_operator
from switchboard.db import queries

router = APIRouter(prefix="/api/evals", tags=["evals"], dependencies=[Depends(require_operator)])


@router.get(
    "",
    operation_id="list_evals",
    responses={
        200: {
            "description": "Eval runs",
            "links": {
                "GetEval": {"operationId": "get_eval", "parameters": {"eval_run_id": "$response.body#/runs/0/id"}}
            },
        }
    },
)
async def list_evals(limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
    """The newest eval runs first, with their scores, and the baseline pinned for each suite."""
    return await run_in_threadpool(queries.eval_runs, limit)


@router.get("/{eval_run_id}", operation_id="get_eval", responses={404: {"description": "No such eval run"}})
async def get_eval(eval_run_id: str) -> dict[str, Any]:
    """One eval run: scores per suite, and per scenario its outcome, diff and the judge's verdicts."""
    found = await run_in_threadpool(queries.eval_run_detail, eval_run_id)
    if found is None:
        raise HTTPException(404, f"no eval run {eval_run_id}")
    return found
