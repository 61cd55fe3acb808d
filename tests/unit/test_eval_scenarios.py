"""The eval fixtures: enough of them, across the categories the suite promises, and a loader
that rejects malformed files with a message naming the file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from switchboard.agents.detectors import Facts, Record, run_detectors
from switchboard.evals.harness import Tally, aggregate, compare, score_scenario
from switchboard.evals.scenarios import ScenarioError, load_scenarios, offset

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def test_at_least_thirty_scenarios_across_the_promised_cases() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) >= 30
    kinds = {alert.kind for s in scenarios for alert in s.alerts}
    assert {"stripe_payout_mismatch", "stripe_charge_without_paid_invoice", "stripe_refund_spike",
            "stripe_dispute_spike", "stripe_failed_payment_spike", "hubspot_deal_without_owner",
            "hubspot_contact_without_owner", "hubspot_closed_won_without_payment", "hubspot_duplicate_company",
            "hubspot_stale_deal", "calls_connect_rate_drop", "calls_short_call_ratio",
            "calls_no_next_step"} <= kinds  # fmt: skip
    assert "stripe_currency_mismatch" in {s.name for s in scenarios}
    assert sum(1 for s in scenarios if s.negative) >= 8
    assert {s.suite for s in scenarios} == {"stripe", "hubspot", "calls"}


@pytest.mark.parametrize("scenario", load_scenarios(), ids=lambda s: s.name)
def test_each_scenario_is_what_the_detectors_see(scenario: object) -> None:
    """Detector-level check of every fixture (the full chain is scored by the integration test)."""
    built = scenario.build(NOW)  # type: ignore[attr-defined]
    records = [Record(r.source, r.object_type, r.object_id, r.occurred_at, r.data) for r in built]
    found = sorted((a.kind, a.entity.id) for a in run_detectors(Facts(records), NOW))
    assert found == sorted((a.kind, a.entity) for a in scenario.alerts)  # type: ignore[attr-defined]


def test_loader_rejects_malformed_fixtures(tmp_path: Path) -> None:
    bad = tmp_path / "bad_kind.yaml"
    bad.write_text("name: bad_kind\nsuite: stripe\nexpect:\n  alerts: [{kind: stripe_nonsense, entity: x}]\n")
    with pytest.raises(ScenarioError, match=r"bad_kind\.yaml: unknown alert kind 'stripe_nonsense'"):
        load_scenarios(directory=tmp_path)
    bad.write_text("name: other\nsuite: stripe\n")
    with pytest.raises(ScenarioError, match="name must be 'bad_kind'"):
        load_scenarios(directory=tmp_path)
    with pytest.raises(ScenarioError, match="unknown suite 'billing'"):
        load_scenarios("billing")
    with pytest.raises(ScenarioError, match="bad time offset"):
        offset("yesterday")


def test_scoring_counts_misses_false_alarms_and_forbidden_actions() -> None:
    [scenario] = [s for s in load_scenarios() if s.name == "stripe_payout_mismatch"]
    outcome = {
        "alerts": [{"kind": "stripe_payout_mismatch", "entity": "po_m1", "severity": "high"},
                   {"kind": "stripe_refund_spike", "entity": "refunds", "severity": "high"}],
        "runs": [{"kind": "stripe_payout_mismatch", "status": "done", "error": None, "latency_ms": 10.0,
                  "tokens_in": 5, "tokens_out": 3, "root_cause": "unknown",
                  "actions": ["flag_finance_review", "draft_customer_message"]}],
    }  # fmt: skip
    tally = Tally()
    scored = score_scenario(scenario, outcome, tally)
    assert not scored["passed"]
    assert scored["problems"] == [
        "unexpected stripe_refund_spike:refunds",
        "root cause unknown for stripe_payout_mismatch",
        "forbidden action draft_customer_message",
    ]
    scores = aggregate(tally, 0, 1)
    assert (scores["precision"], scores["recall"], scores["root_cause_accuracy"]) == (0.5, 1.0, 0.0)
    assert (scores["action_match"], scores["forbidden_actions"]) == (1.0, 1)
    baseline = {**scores, "precision": 1.0, "forbidden_actions": 0}
    assert compare(scores, baseline, 0.05) == [
        "precision fell from 1.000 to 0.500",
        "forbidden actions rose from 0 to 1",
    ]
    assert compare(scores, {**scores, "precision": 0.53}, 0.05) == []  # within the threshold
    assert compare(scores, None, 0.05) == []
