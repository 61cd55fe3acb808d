"""Seeding for the observability tests: the demo scenarios plus one deal whose high-risk
action waits for approval, run as real chains through the worker."""

from __future__ import annotations

import datetime as dt

from switchboard.db.records import upsert_records
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import closed_won_without_payment, demo_records
from switchboard.tasks.runs import dispatch_insight
from switchboard.tasks.watch import scan
from tests.support.runs import wait_for_runs

SOURCES = ["stripe", "hubspot", "calls"]


def run_demo_and_approval_scenario() -> list[dict[str, object]]:
    """Seed, scan and run every insight to a terminal status; returns the run summaries."""
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, demo_records(now) + closed_won_without_payment(now))
    outcome = scan.delay(SOURCES).get(timeout=60)
    run_ids = [dispatch_insight(insight_id) for insight_id in outcome["insights"]]
    return wait_for_runs(run_ids, timeout_s=90)
