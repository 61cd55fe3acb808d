"""Bundled demo data, generated relative to `now` and deterministic (seeded).

Three anomalies — a Stripe payout that does not match its balance transactions, a HubSpot deal
with no owner, a rep whose connect rate collapsed — inside a body of normal data (steady
charges with paid invoices and reconciled payouts, owned deals, a closed-won deal with its
payment, healthy reps) that must raise nothing.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from switchboard.db.records import RecordIn

MISMATCHED_PAYOUT = "po_demo_mismatch"
OWNERLESS_DEAL = "demo_deal_ownerless"
SLUMPING_REP = "demo_rep_slump"
DEMO_DAYS = 16


@dataclass(frozen=True)
class ExpectedAnomaly:
    kind: str
    entity_id: str


EXPECTED = (
    ExpectedAnomaly("stripe_payout_mismatch", MISMATCHED_PAYOUT),
    ExpectedAnomaly("hubspot_deal_without_owner", OWNERLESS_DEAL),
    ExpectedAnomaly("calls_connect_rate_drop", SLUMPING_REP),
)


def _ts(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _stripe(now: dt.datetime, rng: random.Random) -> list[RecordIn]:
    out: list[RecordIn] = []

    def add(kind: str, obj: dict[str, Any], at: dt.datetime) -> None:
        out.append(RecordIn("stripe", kind, str(obj["id"]), at, obj))

    for day in range(DEMO_DAYS):
        day_start = now - dt.timedelta(days=day + 1)
        payout_id = MISMATCHED_PAYOUT if day == 2 else f"po_demo_{day}"
        payout_net = 0
        for n in range(30):
            at = day_start + dt.timedelta(minutes=40 * n + 5)
            charge_id, customer = f"ch_demo_{day}_{n}", f"cus_demo_{n % 12}"
            amount = 2000 + 500 * rng.randrange(0, 20)
            failed = (n + day) % 29 == 0  # ~3% failures, spread evenly over the days
            invoice_id = None if failed else f"in_demo_{day}_{n}"
            add("charge", {"id": charge_id, "amount": amount, "currency": "usd",
                           "status": "failed" if failed else "succeeded", "created": _ts(at), "customer": customer,
                           "invoice": invoice_id, "amount_refunded": 0, "refunded": False,
                           "billing_details": {"email": f"billing{n % 12}@customer{n % 12}.example"},
                           "failure_code": "card_declined" if failed else None}, at)  # fmt: skip
            if failed:
                continue
            invoice = {"id": invoice_id, "customer": customer, "amount_paid": amount, "amount_due": amount,
                       "currency": "usd", "status": "paid", "charge": charge_id, "created": _ts(at)}  # fmt: skip
            add("invoice", invoice, at)
            fee = round(amount * 0.029) + 30
            add("balance_transaction", {"id": f"txn_demo_{day}_{n}", "amount": amount, "fee": fee,
                                        "net": amount - fee, "currency": "usd", "type": "charge",
                                        "source": charge_id, "payout": payout_id, "created": _ts(at)}, at)  # fmt: skip
            payout_net += amount - fee
        paid_at = day_start + dt.timedelta(hours=23)
        # The mismatched payout paid out 123.45 more than its transactions account for.
        amount = payout_net + (12_345 if payout_id == MISMATCHED_PAYOUT else 0)
        add("payout", {"id": payout_id, "amount": amount, "currency": "usd", "created": _ts(paid_at),
                       "arrival_date": _ts(paid_at + dt.timedelta(days=2)), "status": "paid"}, paid_at)  # fmt: skip
    for n in range(12):
        add(
            "customer", {"id": f"cus_demo_{n}", "email": f"billing{n}@customer{n}.example"}, now - dt.timedelta(days=40)
        )
    return out


def _hubspot(now: dt.datetime) -> list[RecordIn]:
    out: list[RecordIn] = []
    owners = [("demo_owner_1", "ana@rev.example", "Ana", "Lopez"), ("demo_owner_2", "ben@rev.example", "Ben", "Kim")]
    for owner_id, email, first, last in owners:
        out.append(RecordIn("hubspot", "owner", owner_id, now - dt.timedelta(days=90),
                            {"id": owner_id, "email": email, "firstName": first, "lastName": last}))  # fmt: skip
    for n in range(8):
        contact_id = f"demo_contact_{n}"
        out.append(RecordIn("hubspot", "contact", contact_id, now - dt.timedelta(days=30 - n),
                            {"id": contact_id, "properties": {"email": f"billing{n}@customer{n}.example",
                             "firstname": f"Pat{n}", "lastname": "Customer",
                             "hubspot_owner_id": owners[n % 2][0]}}))  # fmt: skip
    for n in range(6):
        deal_id = OWNERLESS_DEAL if n == 5 else f"demo_deal_{n}"
        out.append(RecordIn("hubspot", "deal", deal_id, now - dt.timedelta(days=20 - n), {
            "id": deal_id,
            "properties": {"dealname": f"Expansion {n}", "amount": f"{4000 + 1000 * n}.00",
                           "dealstage": "contractsent", "closedate": None,
                           "hubspot_owner_id": None if n == 5 else owners[n % 2][0]},
            "associations": {"contacts": [f"demo_contact_{n}"], "companies": []}}))  # fmt: skip
    # A closed-won deal whose payment arrived: matched, so it must raise nothing.
    closed = now - dt.timedelta(days=6)
    out.append(RecordIn("hubspot", "deal", "demo_deal_won", closed, {
        "id": "demo_deal_won",
        "properties": {"dealname": "Annual plan", "amount": "2500.00", "dealstage": "closedwon",
                       "closedate": closed.isoformat(), "hubspot_owner_id": "demo_owner_1"},
        "associations": {"contacts": ["demo_contact_0"], "companies": []}}))  # fmt: skip
    paid = closed + dt.timedelta(days=1)
    out.append(RecordIn("stripe", "charge", "ch_demo_won", paid, {
        "id": "ch_demo_won", "amount": 250_000, "currency": "usd", "status": "succeeded", "created": _ts(paid),
        "customer": "cus_demo_0", "invoice": "in_demo_won", "amount_refunded": 0, "refunded": False,
        "billing_details": {"email": "billing0@customer0.example"}, "failure_code": None}))  # fmt: skip
    out.append(RecordIn("stripe", "invoice", "in_demo_won", paid, {
        "id": "in_demo_won", "customer": "cus_demo_0", "amount_paid": 250_000, "amount_due": 250_000,
        "currency": "usd", "status": "paid", "charge": "ch_demo_won", "created": _ts(paid)}))  # fmt: skip
    return out


def _calls(now: dt.datetime, rng: random.Random) -> list[RecordIn]:
    out: list[RecordIn] = []
    reps = {"demo_rep_1": 0.6, "demo_rep_2": 0.55, SLUMPING_REP: 0.6}
    for rep, rate in reps.items():
        for n in range(80):
            days_ago = n * 35 / 80  # spread over the last 35 days: 16 in the last week
            started = now - dt.timedelta(days=days_ago, minutes=rng.randrange(0, 300))
            recent = days_ago < 7
            connect_rate = 0.2 if (rep == SLUMPING_REP and recent) else rate
            connected = (n * 37 % 100) / 100 < connect_rate
            duration = 120 + rng.randrange(0, 900) if connected else rng.randrange(0, 25)
            call_id = f"demo_call_{rep}_{n}"
            out.append(RecordIn("calls", "call", call_id, started, {
                "id": call_id, "primaryUserId": rep, "started": started.isoformat(), "duration": duration,
                "direction": "Outbound", "disposition": "connected" if connected else "no_answer"}))  # fmt: skip
    return out


def demo_records(now: dt.datetime) -> list[RecordIn]:
    """All demo records for a given `now` (same input, same output)."""
    rng = random.Random(20261124)
    return _stripe(now, rng) + _hubspot(now) + _calls(now, rng)


# `switchboard demo --approval`: a closed-won deal with no payment, for which the Advisor drafts a
# customer message — a high-risk action that waits for an operator.
APPROVAL_KIND = "hubspot_closed_won_without_payment"


def closed_won_without_payment(now: dt.datetime) -> list[RecordIn]:
    """A closed-won deal with no payment: the Advisor drafts a customer message (high risk)."""
    closed = now - dt.timedelta(days=5)
    deal = {
        "id": "d-obs",
        "properties": {
            "dealname": "Acme annual",
            "amount": "12000.00",
            "dealstage": "closedwon",
            "closedate": closed.isoformat(),
            "hubspot_owner_id": "o-obs",
        },
        "associations": {"contacts": ["c-obs"], "companies": []},
    }
    return [
        RecordIn("hubspot", "owner", "o-obs", now - dt.timedelta(days=90), {"id": "o-obs", "email": "o@x.example"}),
        RecordIn(
            "hubspot",
            "contact",
            "c-obs",
            now - dt.timedelta(days=30),
            {"id": "c-obs", "properties": {"email": "buyer@acme.example", "hubspot_owner_id": "o-obs"}},
        ),
        RecordIn("hubspot", "deal", "d-obs", closed, deal),
    ]
