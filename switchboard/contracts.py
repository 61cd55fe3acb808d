"""Typed payloads that cross a task boundary: watch request → Alert → Analysis → ActionPlan.

Every contract carries ``schema_version``; unknown fields are rejected, so a producer and a
consumer that disagree fail loudly (and permanently) instead of silently dropping data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from switchboard.errors import ContractViolation

SCHEMA_VERSION: Literal[1] = 1

Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
Source = Literal["stripe", "hubspot", "calls"]
SOURCES: tuple[str, ...] = get_args(Source)  # the sources agents run on (an eval regression is for a human)
Risk = Literal["low", "medium", "high"]
RISK_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2}

AlertKind = Literal[
    "stripe_failed_payment_spike",
    "stripe_refund_spike",
    "stripe_dispute_spike",
    "stripe_payout_mismatch",
    "stripe_charge_without_paid_invoice",
    "hubspot_deal_without_owner",
    "hubspot_contact_without_owner",
    "hubspot_closed_won_without_payment",
    "hubspot_duplicate_company",
    "hubspot_stale_deal",
    "calls_connect_rate_drop",
    "calls_short_call_ratio",
    "calls_no_next_step",
]

RootCause = Literal[
    "card_declines",  # issuer declines, expired cards, insufficient funds
    "payment_processor_issue",  # processor/gateway outage or misconfiguration
    "billing_configuration",  # invoices, prices or dunning set up wrongly
    "fraud_or_abuse",  # card testing, friendly fraud, dispute clusters
    "customer_dissatisfaction",  # refunds and disputes driven by product or service
    "reconciliation_gap",  # money moved without matching ledger entries
    "crm_data_hygiene",  # missing owners, stale stages, duplicates
    "sync_gap",  # systems disagree because a sync or webhook was missed
    "rep_performance",  # a rep's calling pattern changed
    "list_quality",  # bad numbers or contacts drive down connects
    "unknown",
]
ROOT_CAUSES: tuple[str, ...] = RootCause.__args__  # type: ignore[attr-defined]

ActionType = Literal[
    "create_hubspot_task",
    "draft_customer_message",
    "flag_finance_review",
    "open_stripe_dispute_review",
    "no_action",
]


class Contract(BaseModel):
    """Base of every hand-off payload: strict, immutable, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION


class EntityRef(Contract):
    """A pointer to an object in one of the source systems (e.g. stripe payout po_123)."""

    source: Source
    type: str = Field(min_length=1, max_length=64)
    id: str = Field(min_length=1, max_length=255)


class Alert(Contract):
    """An anomaly a detector found; the Watcher step refreshes and summarises it."""

    kind: AlertKind
    source: Source
    severity: Severity
    title: str = Field(min_length=1, max_length=255)
    entity: EntityRef
    related: list[EntityRef] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    evidence_ids: list[str] = Field(default_factory=list)
    dedupe_key: str = Field(min_length=1, max_length=255)
    detected_at: dt.datetime
    summary: str | None = None  # written by the Watcher's LLM
    rank: int | None = Field(default=None, ge=1)  # Watcher's ranking among open alerts


class WatchRequest(Contract):
    """Input of the Watcher step: which run, which insight, and the alert it was raised with."""

    run_id: str = Field(min_length=1)
    insight_id: int | None = None
    alert: Alert


class WatchResult(Contract):
    """Output of the Watcher step, input of the Analyst step."""

    run_id: str = Field(min_length=1)
    insight_id: int | None = None
    alert: Alert


class Analysis(Contract):
    """The Analyst's explanation of one alert."""

    run_id: str = Field(min_length=1)
    insight_id: int | None = None
    alert: Alert
    root_cause: RootCause
    narrative: str = Field(min_length=1, max_length=8000)
    evidence_ids: list[str] = Field(default_factory=list)
    confidence: float = Field(ge=0.0, le=1.0)
    provider: str
    model: str


class _ActionBase(Contract):
    risk: Risk
    idempotency_key: str = Field(min_length=8, max_length=255)
    reason: str = Field(min_length=1, max_length=2000)


class CreateHubSpotTask(_ActionBase):
    type: Literal["create_hubspot_task"] = "create_hubspot_task"
    subject: str = Field(min_length=1, max_length=255)
    body: str = Field(max_length=8000)
    owner_id: str | None = None
    due_in_days: int = Field(default=2, ge=0, le=90)
    associated: list[EntityRef] = Field(default_factory=list)


class DraftCustomerMessage(_ActionBase):
    type: Literal["draft_customer_message"] = "draft_customer_message"
    recipient: EntityRef
    subject: str = Field(min_length=1, max_length=255)
    body: str = Field(min_length=1, max_length=8000)


class FlagFinanceReview(_ActionBase):
    type: Literal["flag_finance_review"] = "flag_finance_review"
    summary: str = Field(min_length=1, max_length=2000)
    amount_cents: int | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    entities: list[EntityRef] = Field(default_factory=list)


class OpenStripeDisputeReview(_ActionBase):
    type: Literal["open_stripe_dispute_review"] = "open_stripe_dispute_review"
    dispute_ids: list[str] = Field(min_length=1)
    summary: str = Field(min_length=1, max_length=2000)


class NoAction(_ActionBase):
    type: Literal["no_action"] = "no_action"


Action = Annotated[
    CreateHubSpotTask | DraftCustomerMessage | FlagFinanceReview | OpenStripeDisputeReview | NoAction,
    Field(discriminator="type"),
]


class ActionPlan(Contract):
    """The Advisor's plan: what to do about one analysed alert."""

    run_id: str = Field(min_length=1)
    insight_id: int | None = None
    analysis: Analysis
    actions: list[Action] = Field(min_length=1, max_length=10)
    rationale: str = Field(min_length=1, max_length=4000)
    provider: str
    model: str


def action_key(episode: str, action_type: str, target: str) -> str:
    """The idempotency key of one side effect: stable for (anomaly episode, action, target), so
    however often an episode is analysed — a redelivery, a replay, a re-run — it acts once."""
    digest = hashlib.sha256(f"{episode}|{action_type}|{target}".encode()).hexdigest()[:32]
    return f"{action_type}:{digest}"


def episode_of(run_id: str, insight_id: int | None) -> str:
    """What an action's key belongs to: the run's insight (its anomaly episode), else the run."""
    return f"insight:{insight_id}" if insight_id is not None else f"run:{run_id}"


ContractT = TypeVar("ContractT", bound=Contract)


def parse_contract(model: type[ContractT], payload: Any, *, where: str) -> ContractT:
    """Validate ``payload`` as ``model``; a mismatch is a permanent ContractViolation."""
    if isinstance(payload, model):
        return payload
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '<root>'}: {item['msg']}" for item in error.errors()
        )
        raise ContractViolation(f"{where}: payload is not a valid {model.__name__} ({problems})") from None


def _refs(refs: Any) -> str:
    items = refs if isinstance(refs, list) else [refs]
    return ", ".join(f"{r.get('source')} {r.get('type')} {r.get('id')}" for r in items if isinstance(r, dict)) or "-"


def describe_action(action_type: str, action: dict[str, Any] | None) -> str:
    """What an action will do, to whom, and why — in full (the CLI, the API and the dashboard
    show this for every approval)."""
    a = action or {}
    why = f" — why: {a['reason']}" if a.get("reason") else ""
    if action_type == "create_hubspot_task":
        due = f", due in {a.get('due_in_days', 2)} days"
        on = f" on {_refs(a['associated'])}" if a.get("associated") else ""
        body = f": {a['body']}" if a.get("body") else ""
        owner = a.get("owner_id") or "unassigned"
        return f"create HubSpot task “{a.get('subject')}” for owner {owner}{due}{on}{body}{why}"
    if action_type == "draft_customer_message":
        return f"draft a message to {_refs(a.get('recipient'))}, “{a.get('subject')}”: {a.get('body')}{why}"
    if action_type == "flag_finance_review":
        amount = a.get("amount_cents")
        money = f" ({amount / 100:,.2f} {str(a.get('currency') or '').upper()})".rstrip() if amount is not None else ""
        on = f" on {_refs(a['entities'])}" if a.get("entities") else ""
        return f"flag for finance review{money}{on}: {a.get('summary')}{why}"
    if action_type == "open_stripe_dispute_review":
        return f"open a review of Stripe disputes {', '.join(a.get('dispute_ids') or [])}: {a.get('summary')}{why}"
    if action_type == "no_action":
        return f"no action{why}"
    return f"{action_type}{why}"
