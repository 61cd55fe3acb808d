"""The Advisor: turns an Analysis into an ActionPlan, then applies the risk policy — low-risk
actions execute at once (effect-once), high-risk ones wait in `approvals`.

The plan is persisted before anything executes, so a redelivered step re-uses it instead of
asking the model again (a second, different plan could otherwise act twice).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from switchboard.agents import answers
from switchboard.agents.context import StepContext
from switchboard.agents.llm import provider_for
from switchboard.agents.llm.base import LLMRequest, Message
from switchboard.agents.toolloop import ask
from switchboard.contracts import RISK_ORDER, Action, ActionPlan, Analysis, action_key, episode_of
from switchboard.db.models import AgentStep, Approval
from switchboard.db.runs import RAW_OUTPUTS
from switchboard.db.session import session_scope
from switchboard.integrations import actions
from switchboard.integrations.resilience import CallContext
from switchboard.settings import Settings

# The least risk each action type carries, whatever the model says.
BASE_RISK: dict[str, str] = {
    "create_hubspot_task": "low",
    "flag_finance_review": "low",
    "no_action": "low",
    "draft_customer_message": "high",
    "open_stripe_dispute_review": "high",
}

SYSTEM = (
    "You are the Advisor of a revenue-operations team. Given an analysed anomaly, plan what to do. "
    'Call the `answer` tool with {"actions": [...], "rationale": "..."}. Each action is one of: '
    '{"type":"create_hubspot_task","subject":...,"body":...,"owner_id":null,"due_in_days":2}, '
    '{"type":"draft_customer_message","recipient":{"source":...,"type":...,"id":...},"subject":...,"body":...}, '
    '{"type":"flag_finance_review","summary":...,"amount_cents":null,"currency":null}, '
    '{"type":"open_stripe_dispute_review","dispute_ids":[...],"summary":...}, {"type":"no_action"}; '
    'each may carry "reason" and "risk" ("low"|"medium"|"high").'
)

_action_adapter: TypeAdapter[Action] = TypeAdapter(Action)


def _target(raw: dict[str, Any], analysis: Analysis) -> str:
    """What an action acts on, as stable across analyses of one episode as the plan allows: the
    message's recipient, the disputes under review, else the anomaly's entity."""
    recipient, disputes = raw.get("recipient"), raw.get("dispute_ids")
    if raw.get("type") == "draft_customer_message" and isinstance(recipient, dict):
        return f"{recipient.get('source')}:{recipient.get('type')}:{recipient.get('id')}"
    if raw.get("type") == "open_stripe_dispute_review" and isinstance(disputes, list):
        return "disputes:" + ",".join(sorted(str(d) for d in disputes))
    entity = analysis.alert.entity
    return f"{entity.source}:{entity.type}:{entity.id}"


def _build_plan(analysis: Analysis, answer: dict[str, Any], provider: str, model: str) -> ActionPlan:
    rationale = str(answer.get("rationale") or "")
    built: list[Action] = []
    episode = episode_of(analysis.run_id, analysis.insight_id)
    seen: Counter[str] = Counter()
    for index, raw in enumerate(answer.get("actions") or []):
        if not isinstance(raw, dict):
            raise ValueError(f"actions[{index}] is not an object")
        kind = str(raw.get("type"))
        proposed = str(raw.get("risk") or "low")
        floor = BASE_RISK.get(kind, "high")
        risk = proposed if RISK_ORDER.get(proposed, 2) > RISK_ORDER[floor] else floor
        # the n-th action of one type on one target: two tasks in one plan stay two, and a
        # re-analysis of the episode that plans the same task again gets the same key
        target = f"{kind}|{_target(raw, analysis)}"
        key = action_key(episode, kind, f"{target}#{seen[target]}")
        seen[target] += 1
        fields = {**raw, "risk": risk, "reason": raw.get("reason") or rationale or kind, "idempotency_key": key}
        built.append(_action_adapter.validate_python(fields))
    return ActionPlan(
        run_id=analysis.run_id,
        insight_id=analysis.insight_id,
        analysis=analysis,
        actions=built,
        rationale=rationale,
        provider=provider,
        model=model,
    )


def _stored_plan(ctx: StepContext) -> ActionPlan | None:
    """The plan an earlier attempt persisted (the step's output when this attempt started)."""
    output = ctx.prior.output if ctx.prior else None
    if not output or not output.get("actions"):
        return None
    return ActionPlan.model_validate({key: value for key, value in output.items() if key != RAW_OUTPUTS})


def _persist_plan(plan: ActionPlan, step: str) -> None:
    with session_scope(autocommit=True) as session:
        written = session.execute(
            update(AgentStep)
            .where(AgentStep.run_id == plan.run_id, AgentStep.step == step)
            .values(output=plan.model_dump(mode="json"))
        )
        if not getattr(written, "rowcount", 1):
            raise LookupError(f"no {step} step of run {plan.run_id} to persist its plan in")


def plan(ctx: StepContext, analysis: Analysis, settings: Settings) -> ActionPlan:
    """The plan for this run: the persisted one if a previous attempt made it, else a new one."""
    stored = _stored_plan(ctx)
    if stored is not None:
        ctx.notes["plan_reused"] = True
        return stored
    alert = analysis.alert
    ctx.entity_type, ctx.entity_id = alert.entity.type, alert.entity.id
    max_tokens, thinking = settings.model_budget("advisor")
    request = LLMRequest(
        purpose="advisor.plan",
        system=SYSTEM,
        messages=(Message(role="user", text=f"Analysis:\n{analysis.model_dump_json(indent=1)}"),),
        facts={"alert": alert.model_dump(mode="json"), "analysis": json.loads(analysis.model_dump_json())},
        max_tokens=max_tokens,
        thinking_budget=thinking,
    )
    provider = provider_for("advisor", settings)
    result = ask(
        ctx,
        provider,
        request,
        {},
        answers.ADVISOR,
        lambda answer: _build_plan(analysis, answer, ctx.provider or provider.name, ctx.model or provider.model),
    )
    _persist_plan(result, ctx.step)
    return result


def apply_plan(plan: ActionPlan, settings: Settings) -> dict[str, int]:
    """Execute low-risk actions now and queue the rest for approval; counts of each."""
    counts = {"executed": 0, "already_done": 0, "awaiting_approval": 0}
    threshold = RISK_ORDER[settings.approval_required_risk]
    for action in plan.actions:
        if RISK_ORDER[action.risk] >= threshold:
            with session_scope() as session:
                exists = session.scalars(
                    select(Approval.id).where(Approval.action_key == action.idempotency_key)
                ).first()
                if exists is None:
                    try:
                        with session.begin_nested():
                            session.add(
                                Approval(
                                    run_id=plan.run_id,
                                    action_key=action.idempotency_key,
                                    action_type=action.type,
                                    action=action.model_dump(mode="json"),
                                    risk=action.risk,
                                    status="pending",
                                )
                            )
                    except IntegrityError:
                        pass  # a concurrent attempt queued it
            counts["awaiting_approval"] += 1
            continue
        performed, _ = actions.execute(
            plan.run_id, action, CallContext(run_id=plan.run_id, step="advisor", agent="advisor")
        )
        counts["executed" if performed else "already_done"] += 1
    return counts
