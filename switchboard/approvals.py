"""Human decisions on high-risk actions: list, approve (then execute, effect-once), reject."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydantic import TypeAdapter
from sqlalchemy import select

from switchboard.contracts import Action, describe_action
from switchboard.db import runs as lifecycle
from switchboard.db.models import Approval
from switchboard.db.session import get_for_update, session_scope
from switchboard.errors import InvalidState, NotFound
from switchboard.integrations import actions
from switchboard.integrations.resilience import CallContext

_action_adapter: TypeAdapter[Action] = TypeAdapter(Action)


@dataclass(frozen=True)
class ApprovalView:
    id: int
    run_id: str
    action_type: str
    risk: str
    status: str
    summary: str
    created_at: dt.datetime


def _summary(approval: Approval) -> str:
    return describe_action(approval.action_type, approval.action)


def list_approvals(status: str | None = "pending", limit: int = 100) -> list[ApprovalView]:
    """Approvals, newest first (pending only by default)."""
    with session_scope() as session:
        query = select(Approval).order_by(Approval.created_at.desc(), Approval.id.desc()).limit(limit)
        if status:
            query = query.where(Approval.status == status)
        return [
            ApprovalView(a.id, a.run_id, a.action_type, a.risk, a.status, _summary(a), a.created_at)
            for a in session.scalars(query)
        ]


def _decide(approval_id: int, status: str, by: str, reason: str | None) -> Approval:
    with session_scope() as session:
        approval = get_for_update(session, Approval, approval_id)
        if approval is None:
            raise NotFound(f"no approval {approval_id}")
        if approval.status != "pending":
            raise InvalidState(f"approval {approval_id} is already {approval.status}")
        approval.status = status
        approval.decided_at = dt.datetime.now(dt.UTC)
        approval.decided_by = by
        approval.reason = reason
        if status == "rejected":
            lifecycle.settle_run(session, approval.run_id)
        return approval


def approve(approval_id: int, *, by: str = "cli") -> None:
    """Approve: the action may now be executed (`tasks.actions.approve` also queues that)."""
    _decide(approval_id, "approved", by, None)


def reject(approval_id: int, *, by: str = "cli", reason: str | None = None) -> None:
    """Reject: the action will never run."""
    _decide(approval_id, "rejected", by, reason)


def execute_approval(approval_id: int) -> bool:
    """Execute an approved action once; True when this call performed it."""
    with session_scope() as session:
        approval = session.get(Approval, approval_id)
        if approval is None:
            raise NotFound(f"no approval {approval_id}")
        if approval.status not in ("approved", "executed"):
            raise InvalidState(f"approval {approval_id} is {approval.status}, not approved")
        action = _action_adapter.validate_python(approval.action)
        run_id = approval.run_id
    performed, _ = actions.execute(run_id, action, CallContext(run_id=run_id, step="approval", agent="advisor"))
    with session_scope() as session:
        approval = get_for_update(session, Approval, approval_id)
        assert approval is not None
        approval.status = "executed"
        lifecycle.settle_run(session, run_id)
    return performed
