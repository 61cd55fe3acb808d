"""The eval fixtures: enough of them, across the categories the suite promises, and a loader
that rejects malformed files with a message naming the file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from switchboard.agents.detectors import Facts, Record, run_detectors
from switchboard.evals.scenarios import ExpectedAlert, Scenario, ScenarioError, load_scenarios, offset
from switchboard.evals.scoring import (
    Tally,
    aggregate,
    below_floors,
    compare,
    content_mismatches,
    diff_scenarios,
    score_scenario,
)

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def test_at_least_thirty_scenarios_across_the_promised_cases() -> None:
    scenarios = load_scenarios()
    assert len(scenarios) >= 48
    kinds = {alert.kind for s in scenarios for alert in s.alerts}
    assert {"stripe_payout_mismatch", "stripe_charge_without_paid_invoice", "stripe_refund_spike",
            "stripe_dispute_spike", "stripe_failed_payment_spike", "hubspot_deal_without_owner",
            "hubspot_contact_without_owner", "hubspot_closed_won_without_payment", "hubspot_duplicate_company",
            "hubspot_stale_deal", "calls_connect_rate_drop", "calls_short_call_ratio",
            "calls_no_next_step"} <= kinds  # fmt: skip
    assert "stripe_currency_mismatch" in {s.name for s in scenarios}
    assert sum(1 for s in scenarios if s.negative) >= 8
    assert {s.suite for s in scenarios} == {"stripe", "hubspot", "calls"}


def test_no_table_from_alert_kind_to_root_cause_can_pass() -> None:
    """The same alert kind has different right answers depending on the evidence, for every
    kind the issue names; the best any kind -> cause table can do is the majority answer."""
    causes: dict[str, dict[str, list[str]]] = {}
    for scenario in load_scenarios():
        for kind, cause in scenario.root_causes.items():
            causes.setdefault(kind, {}).setdefault(cause, []).append(scenario.name)
    varied = {kind: by_cause for kind, by_cause in causes.items() if len(by_cause) > 1}
    assert {"stripe_failed_payment_spike", "stripe_refund_spike", "stripe_dispute_spike",
            "hubspot_deal_without_owner", "calls_connect_rate_drop"} <= set(varied)  # fmt: skip
    minority = sum(len(names) for by_cause in varied.values() for names in by_cause.values()) - sum(
        max(len(names) for names in by_cause.values()) for by_cause in varied.values()
    )
    total = sum(len(names) for by_cause in causes.values() for names in by_cause.values())
    assert sum(len(names) for by_cause in varied.values() for names in by_cause.values()) >= 16
    assert minority >= 10, f"a kind -> cause table would get {total - minority} of {total} right"


@pytest.mark.parametrize("scenario", load_scenarios(), ids=lambda s: s.name)
def test_each_scenario_is_what_the_detectors_see(scenario: object) -> None:
    """Detector-level check of every fixture (the full chain is scored by the integration test)."""
    built = scenario.build(NOW)  # type: ignore[attr-defined]
    records = [Record(r.source, r.object_type, r.object_id, r.occurred_at, r.data) for r in built]
    found = sorted((a.kind, a.entity.id) for a in run_detectors(Facts(records), NOW))
    assert found == sorted((a.kind, a.entity) for a in scenario.alerts)  # type: ignore[attr-defined]


def test_loader_rejects_malformed_fixtures_naming_the_file_and_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad_kind.yaml"
    cases = {
        "name: bad_kind\nsuite: stripe\nexpect:\n  alerts: [{kind: stripe_nonsense, entity: x}]\n":
            r"bad_kind\.yaml: expect\.alerts\[0\]\.kind: Input should be 'stripe_failed_payment_spike'",
        "name: other\nsuite: stripe\n": r"bad_kind\.yaml: name: must be 'bad_kind'",
        "name: bad_kind\nsuite: stripe\nrecords: [{source: stripe, type: charge, id: c1, at: yesterday}]\n":
            r"bad_kind\.yaml: records\[0\]\.at: Value error, bad time offset 'yesterday'",
        "name: bad_kind\nsuite: stripe\nexpect:\n  actions: {stripe_refund_spike: [refund_everyone]}\n":
            r"bad_kind\.yaml: expect\.actions\.stripe_refund_spike\[0\]: Input should be 'create_hubspot_task'",
        "name: bad_kind\nsuite: stripe\nexpects: {}\n": r"bad_kind\.yaml: expects: Extra inputs are not permitted",
        "name: bad_kind\nsuite: stripe\nseries: [{kind: stripe_coins}]\n":
            r"bad_kind\.yaml: series\[0\]\.kind: Value error, unknown series kind 'stripe_coins'; known: calls_rep",
        "name: bad_kind\nsuite: billing\n": r"bad_kind\.yaml: suite: Input should be 'stripe', 'hubspot' or 'calls'",
        "- just\n- a list\n": r"bad_kind\.yaml: must be a mapping",
        "name: [unclosed\n": r"bad_kind\.yaml: not valid YAML",
    }  # fmt: skip
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(ScenarioError, match=message):
            load_scenarios(directory=tmp_path)
    with pytest.raises(ScenarioError, match="unknown suite 'billing'"):
        load_scenarios("billing")
    with pytest.raises(ScenarioError, match="bad time offset"):
        offset("yesterday")


def test_a_users_directory_adds_its_scenarios_to_the_shipped_ones(tmp_path: Path) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "my_open_invoice.yaml").write_text(
        "name: my_open_invoice\nsuite: stripe\nrecords:\n"
        "  - {source: stripe, type: charge, id: ch_mine, at: -3h, data: {status: succeeded, amount: 900, "
        "currency: usd, invoice: in_mine, customer: cus_9}}\n"
        "  - {source: stripe, type: invoice, id: in_mine, at: -3h, data: {status: open, currency: usd}}\n"
        "expect:\n  alerts: [{kind: stripe_charge_without_paid_invoice, entity: ch_mine}]\n"
        "  action_content: {stripe_charge_without_paid_invoice: [{type: flag_finance_review, amount_cents: 900}]}\n"
    )
    shipped = load_scenarios("stripe")
    mine = load_scenarios("stripe", extra=own)
    assert [s.name for s in mine if s.name not in {t.name for t in shipped}] == ["my_open_invoice"]
    [added] = [s for s in mine if s.name == "my_open_invoice"]
    assert added.action_content == {"stripe_charge_without_paid_invoice": [{"type": "flag_finance_review",
                                                                            "amount_cents": 900}]}  # fmt: skip
    assert load_scenarios("calls", extra=own) == load_scenarios("calls")
    (own / "stripe_payout_mismatch.yaml").write_text("name: stripe_payout_mismatch\nsuite: stripe\n")
    with pytest.raises(
        ScenarioError, match=r"stripe_payout_mismatch\.yaml: name: 'stripe_payout_mismatch' is a shipped"
    ):
        load_scenarios(extra=own)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScenarioError, match=r"holds no \.yaml scenario files"):
        load_scenarios(extra=tmp_path / "empty")
    with pytest.raises(ScenarioError, match="not a directory"):
        load_scenarios(extra=tmp_path / "missing")


def _run(kind: str, **fields: object) -> dict[str, object]:
    return {"kind": kind, "status": "done", "error": None, "latency_ms": 10.0, "tokens_in": 5, "tokens_out": 3,
            "root_cause": "unknown", "evidence_ids": [], "unknown_evidence": [], "plan": [], **fields}  # fmt: skip


def test_scoring_counts_misses_false_alarms_and_forbidden_actions() -> None:
    [scenario] = [s for s in load_scenarios() if s.name == "stripe_payout_mismatch"]
    outcome = {
        "alerts": [{"kind": "stripe_payout_mismatch", "entity": "po_m1", "severity": "high"},
                   {"kind": "stripe_refund_spike", "entity": "refunds", "severity": "high"}],
        "runs": [_run("stripe_payout_mismatch", evidence_ids=["po_m1", "txn_po_m1_0"],
                      plan=[{"type": "flag_finance_review", "amount_cents": 12345, "entities": [{"id": "po_m1"}]},
                            {"type": "draft_customer_message"}])],
    }  # fmt: skip
    tally = Tally()
    scored = score_scenario(scenario, outcome, tally)
    assert not scored["passed"]
    assert scored["problems"] == [
        "unexpected stripe_refund_spike:refunds",
        "root cause unknown for stripe_payout_mismatch (expected reconciliation_gap)",
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


def test_evidence_and_the_contents_of_actions_are_scored() -> None:
    scenario = Scenario(
        name="s", suite="stripe", description="", records=[], series=[],
        alerts=[ExpectedAlert("stripe_charge_without_paid_invoice", "ch_1")],
        actions={"stripe_charge_without_paid_invoice": ["flag_finance_review"]},
        action_content={"stripe_charge_without_paid_invoice": [
            {"type": "flag_finance_review", "amount_cents": 7000, "entities": ["ch_1"]},
            {"type": "create_hubspot_task", "owner_id": "o7"}]},
        evidence={"stripe_charge_without_paid_invoice": ["ch_1", "in_1"]},
    )  # fmt: skip
    alert = {"kind": "stripe_charge_without_paid_invoice", "entity": "ch_1", "severity": "medium"}
    plan = [{"type": "flag_finance_review", "amount_cents": 6999, "entities": [{"source": "stripe", "type": "charge",
                                                                               "id": "ch_1"}]},
            {"type": "create_hubspot_task", "owner_id": "o7", "subject": "x"}]  # fmt: skip
    run = _run("stripe_charge_without_paid_invoice", plan=plan, evidence_ids=["ch_1", "ch_made_up"],
               unknown_evidence=["ch_made_up"])  # fmt: skip
    tally = Tally()
    scored = score_scenario(scenario, {"alerts": [alert], "runs": [run]}, tally)
    assert scored["problems"] == [
        "key evidence not cited for stripe_charge_without_paid_invoice: in_1",
        "action content for stripe_charge_without_paid_invoice: flag_finance_review: amount_cents 6999 (expected 7000)",
        "cited evidence that does not exist: ch_made_up",
    ]
    scores = aggregate(tally, 0, 1)
    assert (scores["key_evidence"], scores["evidence_validity"], scores["action_content"]) == (0.5, 0.5, 0.5)
    assert scores["action_match"] == 1.0  # the types alone were right
    assert content_mismatches({"type": "draft_customer_message", "recipient": "cus_1"},
                              {"recipient": {"source": "stripe", "type": "customer", "id": "cus_1"}}) == []  # fmt: skip


def test_floors_name_each_suite_and_metric_missed() -> None:
    floors = {"default": {"root_cause_accuracy": 0.75, "forbidden_actions": 0}, "calls": {"root_cause_accuracy": 0.5}}
    by_suite = {"stripe": {"root_cause_accuracy": 0.5, "forbidden_actions": 4},
                "calls": {"root_cause_accuracy": 0.6, "forbidden_actions": 0}}  # fmt: skip
    assert below_floors(by_suite, floors) == [
        "stripe: root_cause_accuracy 0.500 < floor 0.750",
        "stripe: forbidden_actions 4 > ceiling 0",
    ]


def test_the_diff_against_the_baseline_says_what_changed_per_scenario() -> None:
    def result(name: str, passed: bool, problems: list[str], causes: str) -> dict[str, object]:
        return {"scenario": name, "passed": passed, "problems": problems, "scores": {"root_causes": causes}}

    baseline = {
        "a": {"passed": True, "problems": [], "scores": {"root_causes": "1/1"}},
        "b": {"passed": False, "problems": ["missed x"], "scores": {"root_causes": "0/1"}},
        "c": {"passed": True, "problems": [], "scores": {"root_causes": "1/1"}},
    }
    now = [result("a", False, ["root cause unknown"], "0/1"), result("b", True, [], "1/1"),
           result("c", True, [], "1/1"), result("d", True, [], "1/1")]  # fmt: skip
    diff = {item["scenario"]: item for item in diff_scenarios(now, baseline)}
    assert {name: item["change"] for name, item in diff.items()} == {
        "a": "regressed", "b": "improved", "c": "unchanged", "d": "new"}  # fmt: skip
    assert diff["a"]["fields"] == {"root_causes": ["1/1", "0/1"]} and diff["a"]["gained"] == ["root cause unknown"]
    assert diff["b"]["lost"] == ["missed x"]
    assert all(item["change"] == "new" for item in diff_scenarios(now, None))
