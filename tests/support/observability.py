"""Seeding for the observability tests: the demo scenarios plus one deal whose high-risk
action waits for approval, run as real chains through the worker."""

from __future__ import annotations

import datetime as dt

from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import demo_records
from switchboard.tasks.runs import dispatch_insight
from switchboard.tasks.watch import scan
from tests.support.runs import wait_for_runs

SOURCES = ["stripe", "hubspot", "calls"]
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


def run_demo_and_approval_scenario() -> list[dict[str, object]]:
    """Seed, scan and run every insight to a terminal status; returns the run summaries."""
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, demo_records(now) + closed_won_without_payment(now))
    outcome = scan.delay(SOURCES).get(timeout=60)
    run_ids = [dispatch_insight(insight_id) for insight_id in outcome["insights"]]
    return wait_for_runs(run_ids, timeout_s=90)
