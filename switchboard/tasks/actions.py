"""Executing approved actions in a worker (the worker holds the integration credentials)."""

from __future__ import annotations

from typing import Any

from celery import Task

from switchboard import approvals
from switchboard.approvals import execute_approval
from switchboard.celery_app import app
from switchboard.errors import Retryable
from switchboard.integrations.resilience import Deferred


@app.task(name="switchboard.tasks.actions.execute_approved", bind=True, acks_late=True, max_retries=8)
def execute_approved(self: Task[Any, Any], approval_id: int) -> dict[str, Any]:
    """Perform one approved action (idempotent: a redelivery finds it done). A transient
    integration failure re-queues the task after the policy's delay, never sleeping here."""
    from switchboard.tasks.steps import defer, real_retries, retry_budget, retry_countdown

    try:
        return {"approval_id": approval_id, "performed": execute_approval(approval_id)}
    except Deferred as deferred:  # nothing was sent: does not use up the retry budget
        raise defer(self, deferred) from None
    except Retryable as error:
        countdown = retry_countdown(real_retries(self), error.retry_after_s)
        raise self.retry(exc=error, countdown=countdown, max_retries=retry_budget(self)) from None


def approve(approval_id: int, *, by: str = "cli") -> str:
    """Approve a pending action and queue its execution on a worker; returns the task id."""
    approvals.approve(approval_id, by=by)
    return str(execute_approved.delay(approval_id).id)
