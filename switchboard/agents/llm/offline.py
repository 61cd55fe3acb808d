"""The `offline` provider: deterministic rules and templates over the same facts the models see.

Chosen explicitly (`SWITCHBOARD_<AGENT>_PROVIDER=offline`: the embedded demo, `standalone`,
tests, and evals for stable scores). It answers through the `answer` tool as the real models
are asked to, so the agents' validation and tool loop are exercised identically; every output
it produces is labelled provider="offline".
"""

from __future__ import annotations

import json
import time
from typing import Any

from switchboard.agents.llm.base import ANSWER_TOOL, LLMProvider, LLMReply, LLMRequest, ToolCall
from switchboard.integrations.resilience import CallContext

# alert kind → (root cause, confidence, narrative template over the alert's metrics)
ANALYST_RULES: dict[str, tuple[str, float, str]] = {
    "stripe_failed_payment_spike": (
        "card_declines",
        0.7,
        "Failed-payment rate rose to {current_rate:.0%} against a trailing median of {baseline_median:.0%} "
        "(robust z {robust_z:.1f}); the failures cluster on issuer declines rather than a processor outage.",
    ),
    "stripe_refund_spike": (
        "customer_dissatisfaction",
        0.6,
        "Refunds reached {current:.0f} in the last day against a trailing median of {baseline_median:.1f} "
        "(robust z {robust_z:.1f}), which points at customers asking for their money back.",
    ),
    "stripe_dispute_spike": (
        "fraud_or_abuse",
        0.65,
        "Disputes reached {current:.0f} in the last day against a trailing median of {baseline_median:.1f} "
        "(robust z {robust_z:.1f}); a cluster like this is typical of fraudulent or friendly-fraud charges.",
    ),
    "stripe_payout_mismatch": (
        "reconciliation_gap",
        0.8,
        "The payout of {payout_amount:.0f} (minor units) differs from the net of its {transaction_count:.0f} "
        "balance transactions ({transactions_net:.0f}) by {difference:.0f}: money moved without a matching "
        "ledger entry, most likely an adjustment or fee not reflected in the books.",
    ),
    "stripe_charge_without_paid_invoice": (
        "billing_configuration",
        0.6,
        "A succeeded charge of {amount:.0f} (minor units) has no matching paid invoice; the invoice was "
        "probably left open or the payment was taken outside the billing flow.",
    ),
    "hubspot_deal_without_owner": (
        "crm_data_hygiene",
        0.85,
        "The deal has no valid owner in HubSpot, so nobody is accountable for its next step.",
    ),
    "hubspot_contact_without_owner": (
        "crm_data_hygiene",
        0.85,
        "The contact has no valid owner in HubSpot, so follow-ups are not routed to anyone.",
    ),
    "hubspot_closed_won_without_payment": (
        "sync_gap",
        0.6,
        "The deal was closed-won but no Stripe payment from its contacts matches its amount; either the "
        "invoice was never sent or the payment is not linked to the deal.",
    ),
    "hubspot_duplicate_company": (
        "crm_data_hygiene",
        0.8,
        "{duplicates:.0f} company records share one domain, so contacts and deals are split between them.",
    ),
    "hubspot_stale_deal": (
        "crm_data_hygiene",
        0.7,
        "The deal's close date passed {days_overdue:.0f} days ago but its stage was never updated.",
    ),
    "calls_no_next_step": (
        "rep_performance",
        0.55,
        "{ratio:.0%} of the rep's substantial calls in the last week ended without an agreed next step.",
    ),
    "calls_connect_rate_drop": (
        "list_quality",
        0.55,
        "The rep's connect rate fell from {baseline_rate:.0%} to {recent_rate:.0%} over the last week "
        "({recent_calls:.0f} calls); a drop this sharp usually comes from a new, lower-quality call list.",
    ),
    "calls_short_call_ratio": (
        "rep_performance",
        0.55,
        "{ratio:.0%} of the rep's connected calls in the last week ended in under a minute; conversations "
        "are being cut short before discovery.",
    ),
}


# Where the evidence changes the cause: (alert kind, test over the alert's metrics, root cause,
# confidence, what the narrative adds). The first rule that holds wins; none holding, the kind's
# rule above stands. Honest rules of thumb over the figures the models see: they can be wrong.
EVIDENCE_RULES: list[tuple[str, Any, str, float, str]] = [
    ("stripe_failed_payment_spike", lambda m: m.get("share_processing_error", 0) >= 0.5,
     "payment_processor_issue", 0.75, " Most failures are processing errors ({share_processing_error:.0%}), "
     "{peak_hour_share:.0%} of them within one hour: the processor, not the cards."),
    ("stripe_failed_payment_spike", lambda m: m.get("small_amount_share", 0) >= 0.6
     and m.get("distinct_card_share", 0) >= 0.8, "fraud_or_abuse", 0.75,
     " {small_amount_share:.0%} of the failures are small amounts on {distinct_card_share:.0%} distinct cards: "
     "card testing."),
    ("stripe_failed_payment_spike", lambda m: m.get("share_expired_card", 0) >= 0.5, "card_declines", 0.8,
     " {share_expired_card:.0%} of the failures are expired cards: a wave of cards to update."),
    ("stripe_refund_spike", lambda m: m.get("share_reason_duplicate", 0) >= 0.5, "billing_configuration", 0.7,
     " {share_reason_duplicate:.0%} of the refunds are for duplicate charges: customers were billed twice."),
    ("stripe_refund_spike", lambda m: m.get("share_reason_fraudulent", 0) >= 0.5, "fraud_or_abuse", 0.7,
     " {share_reason_fraudulent:.0%} of the refunds were for fraudulent payments."),
    ("stripe_dispute_spike", lambda m: m.get("share_reason_fraudulent", 0) < 0.5 and any(
        key.startswith("share_reason_") and key not in ("share_reason_fraudulent", "share_reason_unstated")
        and value >= 0.5 for key, value in m.items()), "customer_dissatisfaction", 0.65,
     " Most disputes give a service reason (not received, cancelled, unacceptable), not fraud."),
    ("hubspot_deal_without_owner", lambda m: m.get("from_import_or_integration", 0) >= 1
     and m.get("ownerless_in_batch", 0) >= 2, "sync_gap", 0.75,
     " It came with {ownerless_in_batch:.0f} ownerless deals from one import or integration: the owner field "
     "is not mapped."),
    ("hubspot_deal_without_owner", lambda m: m.get("owner_archived", 0) >= 1, "crm_data_hygiene", 0.85,
     " Its owner left (archived) and the deal was never handed over."),
    ("calls_connect_rate_drop", lambda m: m.get("unreachable_share", 0) >= 0.4, "list_quality", 0.7,
     " {unreachable_share:.0%} of the missed calls reached no one (wrong or dead numbers): the list is bad."),
    ("calls_connect_rate_drop", lambda m: m.get("off_hours_share", 0) - m.get("baseline_off_hours_share", 0) >= 0.3,
     "rep_performance", 0.7, " {off_hours_share:.0%} of this week's calls were made outside calling hours "
     "(before: {baseline_off_hours_share:.0%}): the rep's schedule changed."),
]  # fmt: skip


class _SafeMetrics(dict[str, Any]):
    def __missing__(self, key: str) -> float:
        return 0.0


def _analyse(facts: dict[str, Any]) -> dict[str, Any]:
    alert = facts["alert"]
    metrics = alert.get("metrics") or {}
    root_cause, confidence, template = ANALYST_RULES.get(alert["kind"], ("unknown", 0.3, "{kind}"))
    for kind, holds, cause, certainty, because in EVIDENCE_RULES:
        if kind == alert["kind"] and holds(metrics):
            root_cause, confidence = cause, certainty
            if cause != ANALYST_RULES[kind][0]:
                template = "{title}."
            template += because
            break
    narrative = template.format_map(_SafeMetrics(metrics, kind=alert["kind"], title=alert.get("title", "")))
    if facts.get("tool_facts"):
        narrative += f" Checked live: {len(facts['tool_facts'])} record(s) confirm the figures."
    return {
        "root_cause": root_cause,
        "narrative": narrative,
        "evidence_ids": list(alert.get("evidence_ids") or [])[:20],
        "confidence": confidence,
    }


def _plan(facts: dict[str, Any]) -> dict[str, Any]:
    alert = facts["alert"]
    kind, entity, title = alert["kind"], alert["entity"], alert["title"]
    metrics = alert.get("metrics") or {}
    narrative = facts["analysis"]["narrative"]
    cause = facts["analysis"].get("root_cause")
    task: dict[str, Any] = {"type": "create_hubspot_task", "subject": f"Follow up: {title}"[:255], "body": narrative,
            "associated": [entity] if entity["source"] == "hubspot" else []}  # fmt: skip
    finance: dict[str, Any] = {
        "type": "flag_finance_review",
        "summary": f"{title}. {narrative}"[:2000],
        "entities": [entity],
    }
    actions: list[dict[str, Any]]
    if kind in ("stripe_payout_mismatch", "stripe_charge_without_paid_invoice", "stripe_refund_spike"):
        amount = metrics.get("difference") or metrics.get("amount")
        if amount is not None:
            finance["amount_cents"] = int(abs(amount))
        actions = [finance]
    elif kind == "stripe_dispute_spike":
        review = {"type": "open_stripe_dispute_review", "dispute_ids": list(alert.get("evidence_ids") or ["unknown"]),
                  "summary": narrative[:2000]}  # fmt: skip
        follow_up = dict(task, subject="Contact the customers behind this week's disputes")
        actions = [review, follow_up] if cause == "customer_dissatisfaction" else [review, finance]
    elif kind == "stripe_failed_payment_spike":
        # a processor outage or card testing is for finance (and the processor); declines for dunning too
        dunning = dict(task, subject="Review failed-payment spike and dunning settings")
        actions = [finance] if cause in ("payment_processor_issue", "fraud_or_abuse") else [dunning, finance]
    elif kind == "hubspot_deal_without_owner" and cause == "sync_gap":
        actions = [dict(task, subject=f"Map the owner field of the import or integration: {title}"[:255])]
    elif kind in ("hubspot_deal_without_owner", "hubspot_contact_without_owner"):
        teammates = [ref["id"] for ref in alert.get("related") or [] if ref.get("type") == "owner"]
        assigned = dict(task, subject=f"Assign an owner: {title}"[:255])
        if teammates:  # a departed owner's teammate takes it over
            assigned["owner_id"] = teammates[0]
        actions = [assigned]
    elif kind == "hubspot_duplicate_company":
        actions = [dict(task, subject=f"Merge duplicate companies: {title}"[:255])]
    elif kind == "hubspot_stale_deal":
        actions = [dict(task, subject=f"Update the deal stage: {title}"[:255])]
    elif kind == "hubspot_closed_won_without_payment":
        recipients = [ref for ref in alert.get("related") or [] if ref.get("type") == "contact"] or [entity]
        actions = [
            {"type": "draft_customer_message", "recipient": recipients[0], "subject": "Your invoice",
             "body": "Hello, we could not match a payment to your recent order. Could you confirm how it was "
                     "paid, or shall we resend the invoice? Thank you."},
            finance,
        ]  # fmt: skip
    elif kind == "calls_connect_rate_drop" and cause == "list_quality":
        actions = [dict(task, subject=f"Clean the call list of rep {entity['id']}: {title}"[:255])]
    elif kind in ("calls_connect_rate_drop", "calls_short_call_ratio", "calls_no_next_step"):
        actions = [dict(task, subject=f"Coaching check-in for rep {entity['id']}: {title}"[:255])]
    else:
        actions = [{"type": "no_action"}]
    for action in actions:
        action.setdefault("reason", f"Offline rule for {kind}")
    return {"actions": actions, "rationale": f"Rule-based plan for {kind}: {narrative}"[:4000]}


def _summarise(facts: dict[str, Any]) -> dict[str, Any]:
    alert = facts["alert"]
    others = facts.get("open_alerts") or []
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    ahead = sum(1 for other in others if order[other["severity"]] < order[alert["severity"]])
    return {"summary": f"{alert['severity'].upper()}: {alert['title']}", "rank": ahead + 1}


# The offline judge's words for each root cause: a narrative that uses none of them for the
# expected cause does not explain it. Crude on purpose (deterministic, for CI): a real model judges better.
CAUSE_WORDS: dict[str, tuple[str, ...]] = {
    "card_declines": ("decline", "expired", "insufficient", "dunning"),
    "payment_processor_issue": ("processor", "processing error", "gateway", "outage"),
    "fraud_or_abuse": ("fraud", "card testing"),
    "billing_configuration": ("invoice", "billing", "duplicate", "billed twice"),
    "customer_dissatisfaction": ("dissatisf", "asking for their money", "service reason", "customers"),
    "reconciliation_gap": ("ledger", "reconcil", "balance transaction"),
    "crm_data_hygiene": ("owner", "stage", "duplicate", "handed over"),
    "sync_gap": ("sync", "import", "integration", "not linked", "not mapped", "payment is not linked"),
    "rep_performance": ("rep's", "schedule", "cut short", "next step", "calling hours"),
    "list_quality": ("list", "numbers"),
}


def _judge(facts: dict[str, Any]) -> dict[str, Any]:
    narrative = str(facts.get("narrative") or "")
    lowered = narrative.lower()
    words = CAUSE_WORDS.get(str(facts.get("expected_root_cause")), ())
    named = [w for w in words if w in lowered]
    figures = any(ch.isdigit() for ch in narrative) or any(str(i) in narrative for i in facts.get("evidence_ids") or [])
    sentences = sum(narrative.count(mark) for mark in ".!?")
    verdicts = {
        "explains_cause": {"pass": bool(named), "reason": f"uses {named[0]!r}" if named
                           else f"none of {', '.join(words) or 'the cause words'} appears"},
        "uses_evidence": {"pass": figures, "reason": "quotes figures or record ids" if figures
                          else "no figure and no record id"},
        "actionable": {"pass": 20 <= len(narrative) <= 1500 and sentences <= 5,
                       "reason": f"{len(narrative)} characters, {sentences} sentence(s)"},
    }  # fmt: skip
    return {"verdicts": verdicts}


RULES = {"watcher.summarise": _summarise, "analyst.analyse": _analyse, "advisor.plan": _plan, "eval.judge": _judge}


class OfflineProvider(LLMProvider):
    name = "offline"
    model = "offline-rules-v1"

    def __init__(self, *, latency_ms: int = 0) -> None:
        self._latency_s = latency_ms / 1000.0

    def generate(self, request: LLMRequest, context: CallContext | None = None) -> LLMReply:
        if self._latency_s:
            time.sleep(self._latency_s)  # simulated model latency, for benchmarks only
        purpose = (
            request.facts.get("original_purpose", request.purpose) if request.purpose == "repair" else request.purpose
        )
        tool_names = {tool.name for tool in request.tools} if request.tool_choice == "auto" else set()
        answers_by_tool = any(tool.name == ANSWER_TOOL for tool in request.tools) and request.tool_choice != "none"
        answered_tools = any(message.role == "tool" for message in request.messages)
        if purpose == "analyst.analyse" and "get_record" in tool_names and not answered_tools:
            entity = request.facts["alert"]["entity"]
            if entity["source"] == "calls" and entity["type"] == "rep" and "find_records" in tool_names:
                # a rep is not a stored object: look at the rep's calls instead
                lookup = {"source": "calls", "object_type": "call", "field": "primaryUserId", "value": entity["id"]}
                call = ToolCall(id="offline_call_1", name="find_records", input=lookup)
            else:
                lookup = {"source": entity["source"], "object_type": entity["type"], "object_id": entity["id"]}
                call = ToolCall(id="offline_call_1", name="get_record", input=lookup)
            return LLMReply("", (call,), 0, 0, self.name, self.model, "tool_use")
        facts = dict(request.facts)
        if answered_tools:
            facts["tool_facts"] = [
                r for m in request.messages if m.role == "tool" for r in m.tool_results if not r.is_error
            ]
        answer = RULES[purpose](facts)
        if answers_by_tool:
            return LLMReply("", (ToolCall("offline_answer", ANSWER_TOOL, answer),), 0, 0, self.name, self.model,
                            "tool_use")  # fmt: skip
        return LLMReply(json.dumps(answer), (), 0, 0, self.name, self.model, "end_turn")
