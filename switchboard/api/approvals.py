"""Approvals: `GET /api/approvals`, `POST /api/approvals/{id}/approve`, `POST /api/approvals/{id}/reject`."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from switchboard import approvals
from switchboard.api.auth import require_operator
from switchboard.api.contract import PathId, invalid
from switchboard.db.models import APPROVAL_STATUSES
from switchboard.tasks import actions

router = APIRouter(prefix="/api/approvals", tags=["approvals"], dependencies=[Depends(require_operator)])
DECISION_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such approval"},
    409: {"description": "Already decided"},
}


ApprovalId = PathId


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=2000, description="Why, for the record")


def _view(row: approvals.ApprovalView) -> dict[str, Any]:
    out = dataclasses.asdict(row)
    out["created_at"] = row.created_at.isoformat()
    return out


APPROVAL_LINKS = {
    "Approve": {"operationId": "approve", "parameters": {"approval_id": "$response.body#/approvals/0/id"}},
    "Reject": {"operationId": "reject", "parameters": {"approval_id": "$response.body#/approvals/0/id"}},
}


@router.get("", operation_id="list_approvals", responses={200: {"description": "Approvals", "links": APPROVAL_LINKS}})
async def list_approvals(
    status: str = Query(
        "pending",
        description="Approvals in this status, or all",
        json_schema_extra={"enum": ["all", *APPROVAL_STATUSES]},
    ),
    limit: int = Query(100, ge=1, le=500),
) -> dict[str, Any]:
    """Approvals, newest first (pending by default)."""
    if status != "all" and status not in APPROVAL_STATUSES:
        raise invalid(
            ["query", "status"], f"unknown status {status!r}: use all or one of {', '.join(APPROVAL_STATUSES)}"
        )
    rows = await run_in_threadpool(approvals.list_approvals, None if status == "all" else status, limit)
    return {"approvals": [_view(row) for row in rows], "count": len(rows)}


@router.post("/{approval_id}/approve", operation_id="approve", status_code=202, responses=DECISION_RESPONSES)
async def approve(approval_id: ApprovalId) -> dict[str, Any]:
    """Approve a pending action; a worker executes it once (202: queued)."""
    task_id = await run_in_threadpool(actions.approve, approval_id, by="api")
    return {"approval_id": approval_id, "status": "approved", "task_id": task_id}


@router.post("/{approval_id}/reject", operation_id="reject", responses=DECISION_RESPONSES)
async def reject(approval_id: ApprovalId, decision: Annotated[Decision | None, Body()] = None) -> dict[str, Any]:
    """Reject a pending action: it will never run."""
    reason = decision.reason if decision else None
    await run_in_threadpool(lambda: approvals.reject(approval_id, by="api", reason=reason))
    return {"approval_id": approval_id, "status": "rejected"}
