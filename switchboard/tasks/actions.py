"""Executing approved actions in a worker (the worker holds the integration credentials)."""

from __future__ import annotations

from typing import Any

from switchboard import approvals
from switchboard.approvals import execute_approval
from switchboard.celery_app import app
from switchboard.tasks.base import SwitchboardTask


@app.task(name="switchboard.tasks.actions.execute_approved", base=SwitchboardTask, acks_late=True, max_retries=8)
def execute_approved(approval_id: int) -> dict[str, Any]:
    """Perform one approved action (idempotent: a redelivery finds it done). A transient
    integration failure re-queues the task after the policy's delay (`tasks/base.py`), never
    sleeping here."""
    return {"approval_id": approval_id, "performed": execute_approval(approval_id)}


def approve(approval_id: int, *, by: str = "cli") -> str:
    """Approve a pending action and queue its execution on a worker; returns the task id."""
    approvals.approve(approval_id, by=by)
    return str(execute_approved.delay(approval_id).id)
