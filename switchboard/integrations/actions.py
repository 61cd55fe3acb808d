"""Executing Advisor actions, effect-once.

Every action carries an idempotency key derived from (anomaly episode, action, target)
(`contracts.action_key`): re-analysing an episode never acts twice. Execution first
claims the key in `action_executions` (unique), then performs the effect, then marks it done.
A redelivered task finds the key `done` and skips. An attempt that fails releases its claim
(`released`: the effect may have happened) and the next attempt takes it over at once. One that
finds the key `executing` waits while the claim is younger than a task may run (another
delivery is performing it right now: both would find nothing and both create it); after that
the claimer is dead, and it takes the claim over and performs again with the *same* key,
looking for an earlier effect first (Stripe's Idempotency-Key, our token in HubSpot task bodies).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from switchboard.contracts import (
    Action,
    CreateHubSpotTask,
    DraftCustomerMessage,
    FlagFinanceReview,
    NoAction,
    OpenStripeDisputeReview,
)
from switchboard.db.models import ActionExecution
from switchboard.db.session import dialect_insert, session_scope
from switchboard.integrations.resilience import CallContext, Deferred
from switchboard.settings import get_settings

log = logging.getLogger("switchboard.actions")


class ActionInProgress(Deferred):
    """Another delivery of the same step holds the action's claim: wait for it, do not act too."""


def _effect_is_local(action: Action) -> bool:
    """Whether the effect is only Switchboard's own record of the action (see `_perform`)."""
    settings = get_settings()
    match action:
        case CreateHubSpotTask():
            return settings.hubspot_access_token is None
        case OpenStripeDisputeReview():
            return settings.stripe_api_key is None
        case _:
            return True


def _perform(action: Action, context: CallContext, *, may_exist: bool) -> dict[str, Any]:
    """The effect itself. Where no external destination is configured (no HubSpot token, say),
    the effect is Switchboard's own durable record of the action (shown in runs and the dashboard)."""
    settings = get_settings()
    match action:
        case CreateHubSpotTask() if not _effect_is_local(action):
            from switchboard.integrations.hubspot import HubSpotClient

            due = dt.datetime.now(dt.UTC) + dt.timedelta(days=action.due_in_days)
            task = HubSpotClient(settings, context).create_task(
                idempotency_key=action.idempotency_key,
                subject=action.subject,
                body=action.body,
                owner_id=action.owner_id,
                due_at_ms=int(due.timestamp() * 1000),
                associations=[],
                may_exist=may_exist,
            )
            return {"destination": "hubspot", "delivered": True, "task_id": task.get("id"),
                    "deduplicated": task.get("deduplicated", False)}  # fmt: skip
        case CreateHubSpotTask():
            return {"destination": "switchboard", "delivered": False, "subject": action.subject,
                    "note": "HubSpot delivery not configured: task recorded for follow-up"}  # fmt: skip
        case DraftCustomerMessage():
            return {"destination": "switchboard", "draft": {"to": action.recipient.model_dump(),
                    "subject": action.subject, "body": action.body}}  # fmt: skip
        case FlagFinanceReview():
            return {"destination": "switchboard", "queue": "finance_review", "summary": action.summary}
        case OpenStripeDisputeReview() if not _effect_is_local(action):
            from switchboard.integrations.stripe_client import StripeAPI

            client = StripeAPI(settings, context)
            flagged = [
                client.flag_dispute_for_review(
                    dispute_id, idempotency_key=f"{action.idempotency_key}:{dispute_id}", note=action.summary
                )["id"]
                for dispute_id in action.dispute_ids
            ]
            return {"destination": "stripe", "delivered": True, "dispute_ids": flagged}
        case OpenStripeDisputeReview():
            return {"destination": "switchboard", "queue": "dispute_review", "dispute_ids": action.dispute_ids}
        case NoAction():
            return {"destination": "none"}
    raise AssertionError(f"unhandled action type {action.type}")


def execute(run_id: str, action: Action, context: CallContext | None = None) -> tuple[bool, dict[str, Any]]:
    """Perform ``action`` once; returns (performed_now, result). Safe to call again."""
    key = action.idempotency_key
    context = context or CallContext(run_id=run_id)
    lease_s = float(get_settings().task_time_limit_s)
    now = dt.datetime.now(dt.UTC)
    if _effect_is_local(action):
        # The effect is the ledger row itself: nothing to claim first, one statement records it.
        result = _perform(action, context, may_exist=False)
        with session_scope(autocommit=True) as session:
            record = dialect_insert(session)(ActionExecution).values(
                idempotency_key=key, run_id=run_id, action_type=action.type, status="done", executed_at=now,
                result=result,
            )  # fmt: skip
            recorded = session.execute(
                record.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(ActionExecution.id)
            ).first()
        if recorded is not None:
            log.info("action %s recorded for run %s", key, run_id)
            return True, result
        # recorded (or claimed) before: as for any action below
    with session_scope(autocommit=True) as session:  # the usual case, in one statement: a new claim
        claim = dialect_insert(session)(ActionExecution).values(
            idempotency_key=key, run_id=run_id, action_type=action.type, status="executing", executed_at=now
        )
        claimed = session.execute(
            claim.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(ActionExecution.id)
        ).first()
    existing = None
    if claimed is None:  # claimed before: look at the claim under a lock
        with session_scope() as session:
            existing = session.scalars(
                select(ActionExecution).where(ActionExecution.idempotency_key == key).with_for_update()
            ).first()
            if existing is None:  # released by a deletion between the two statements: try again
                raise ActionInProgress(f"action {key} changed hands while being claimed", retry_after_s=1.0)
            if existing.status == "done":
                return False, dict(existing.result or {})
            # Claimed and not done. Within the lease the claimer may still be performing it: two
            # deliveries must never perform one action at once (both would find nothing and both
            # create it). Past the lease the claimer is dead (no task outlives its time limit):
            # take the claim over and perform it again, looking for an earlier effect first.
            claimed_at = existing.executed_at
            age_s = (now - claimed_at).total_seconds()
            if existing.status == "executing" and age_s < lease_s:
                raise ActionInProgress(
                    f"action {key} is being performed by another delivery (claimed {age_s:.0f} s ago)",
                    retry_after_s=max(1.0, min(lease_s - age_s, 30.0)),
                )
            existing.executed_at = now
            existing.status = "executing"
    # A claim taken over (or released by an attempt that failed) means an earlier attempt may
    # have performed the effect.
    try:
        result = _perform(action, context, may_exist=existing is not None)
    except BaseException:
        # This attempt is over (its task will retry or fail): release the claim so the retry
        # takes it at once instead of waiting out the lease. The effect may have happened.
        with session_scope() as session:
            session.execute(
                update(ActionExecution)
                .where(ActionExecution.idempotency_key == key, ActionExecution.status == "executing")
                .values(status="released")
            )
        raise
    with session_scope(autocommit=True) as session:
        session.execute(
            update(ActionExecution).where(ActionExecution.idempotency_key == key).values(status="done", result=result)
        )
    log.info("action %s executed for run %s", key, run_id)
    return True, result
