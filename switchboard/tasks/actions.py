"""Executing approved actions in a worker (the worker holds the integration credentials)."""

from __future__ import annotations

from typing import Any

from celery import Task

from switchboard.approvals import execute_approval
from switchboard.celery_app import app


@app.task(name="switchboard.tasks.actions.execute_approved", bind=True, acks_late=True, max_retries=5)
def execute_approved(self: Task[Any, Any], approval_id: int) -> dict[str, Any]:
    """Perform one approved action (idempotent: a redelivery finds it done)."""
    return {"approval_id": approval_id, "performed": execute_approval(approval_id)}
