"""Each detector on crafted data: it fires on the anomaly, with the right metrics and severity,
and stays silent on the healthy twin of the same data."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from switchboard.agents import detectors as d
from switchboard.agents.detectors import Facts, Record, inputs_for, reads_of, run_detectors
from switchboard.contracts import Alert
from switchboard.demo.scenarios import EXPECTED, demo_records

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def rec(source: str, kind: str, object_id: str, at: dt.datetime, **data: Any) -> Record:
    return Record(source, kind, object_id, at, {"id": object_id, **data})


def kinds(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.kind, a.entity.id) for a in alerts]


# --------------------------------------------------------------------------- Stripe


def charges_per_day(failed_today: int, *, per_day: int = 40, days: int = 14) -> list[Record]:
    out = []
    for day in range(days + 1):
        failures = failed_today if day == 0 else 1 + day % 2  # baseline wobbles between 1 and 2 of 40
        for n in range(per_day):
            at = NOW - dt.timedelta(days=day + 1) + dt.timedelta(minutes=30 * n + 1)
            status = "failed" if n < failures else "succeeded"
            out.append(rec("stripe", "charge", f"ch_{day}_{n}", at, status=status, amount=1000, invoice=None))
    return out


def test_failed_payment_spike_fires_on_a_robust_outlier() -> None:
    [alert] = list(d.stripe_failed_payment_spike(Facts(charges_per_day(12)), NOW))
    assert alert.kind == "stripe_failed_payment_spike"
    assert alert.metrics["current_rate"] == pytest.approx(12 / 40)
    assert alert.metrics["baseline_median"] == pytest.approx(1.5 / 40)
    assert alert.metrics["robust_z"] >= 3.5
    assert alert.severity == "critical"  # 30% against a 3.75% median: more than 25 points up
    assert sorted(alert.evidence_ids) == sorted(f"ch_0_{n}" for n in range(12))


def test_failed_payment_spike_ignores_normal_variation_and_thin_data() -> None:
    assert list(d.stripe_failed_payment_spike(Facts(charges_per_day(2)), NOW)) == []
    # 4 of 40 is above the z threshold only because MAD is tiny; the 5-point floor keeps it quiet
    assert list(d.stripe_failed_payment_spike(Facts(charges_per_day(3)), NOW)) == []
    # a day with fewer than 20 charges is too thin to judge
    assert list(d.stripe_failed_payment_spike(Facts(charges_per_day(10, per_day=15)), NOW)) == []
    # fewer than 7 baseline days
    assert list(d.stripe_failed_payment_spike(Facts(charges_per_day(12, days=5)), NOW)) == []


def daily(kind: str, counts: list[int]) -> list[Record]:
    return [
        rec("stripe", kind, f"{kind}_{day}_{n}", NOW - dt.timedelta(days=day, hours=2, minutes=n), amount=500)
        for day, count in enumerate(counts)
        for n in range(count)
    ]


def test_refund_and_dispute_spikes() -> None:
    refunds = daily("refund", [9, 0, 1, 1, 0, 2, 1, 0, 1, 1, 0, 1, 2, 1, 0])
    disputes = daily("dispute", [4] + [0] * 14)
    alerts = list(d.stripe_refund_spike(Facts(refunds), NOW)) + list(d.stripe_dispute_spike(Facts(disputes), NOW))
    assert [(a.kind, a.metrics["current"], a.metrics["baseline_median"]) for a in alerts] == [
        ("stripe_refund_spike", 9.0, 1.0),
        ("stripe_dispute_spike", 4.0, 0.0),
    ]
    assert len(alerts[1].evidence_ids) == 4


def test_count_spikes_need_a_minimum_and_an_outlier() -> None:
    assert list(d.stripe_dispute_spike(Facts(daily("dispute", [2] + [0] * 14)), NOW)) == []  # below minimum
    busy = daily("refund", [6, 5, 6, 4, 5, 7, 6, 5, 4, 6, 5, 5, 6, 4, 5])
    assert list(d.stripe_refund_spike(Facts(busy), NOW)) == []  # a normal day for this account


def payout(payout_id: str, amount: int, nets: list[int], *, status: str = "paid") -> list[Record]:
    at = NOW - dt.timedelta(days=2)
    txns = [
        rec("stripe", "balance_transaction", f"txn_{payout_id}_{i}", at, net=net, type="charge", payout=payout_id)
        for i, net in enumerate(nets)
    ]
    # the payout's own balance transaction is never part of the sum
    txns.append(rec("stripe", "balance_transaction", f"txn_{payout_id}_po", at, net=-amount, type="payout",
                    payout=payout_id))  # fmt: skip
    return [rec("stripe", "payout", payout_id, at, amount=amount, status=status, currency="usd"), *txns]


def test_payout_mismatch_reports_the_difference_and_severity() -> None:
    facts = Facts(
        payout("po_ok", 3000, [1000, 2000])
        + payout("po_small", 3050, [1000, 2000])
        + payout("po_big", 215_000, [1000, 2000, 12_000])
        + payout("po_pending", 9999, [1], status="pending")
    )
    alerts = {a.entity.id: a for a in d.stripe_payout_mismatch(facts, NOW)}
    assert sorted(alerts) == ["po_big", "po_small"]
    assert alerts["po_small"].severity == "medium"
    assert alerts["po_big"].severity == "critical"
    assert alerts["po_big"].metrics == {
        "payout_amount": 215_000.0,
        "transactions_net": 15_000.0,
        "difference": 200_000.0,
        "transaction_count": 3.0,
    }
    assert alerts["po_big"].evidence_ids[0] == "po_big"


def test_charge_without_paid_invoice() -> None:
    at = NOW - dt.timedelta(hours=5)
    records = [
        rec("stripe", "charge", "ch_paid", at, status="succeeded", amount=5000, invoice="in_1", customer="cus_1"),
        rec("stripe", "invoice", "in_1", at, status="paid", charge="ch_paid"),
        rec("stripe", "charge", "ch_open", at, status="succeeded", amount=7000, invoice="in_2", customer="cus_2"),
        rec("stripe", "invoice", "in_2", at, status="open", charge=None),
        rec("stripe", "charge", "ch_orphan", at, status="succeeded", amount=250_000, invoice=None, customer=None),
        rec("stripe", "charge", "ch_failed", at, status="failed", amount=7000, invoice=None),
        rec("stripe", "charge", "ch_fresh", NOW - dt.timedelta(minutes=10), status="succeeded", amount=1, invoice=None),
    ]
    alerts = list(d.stripe_charge_without_paid_invoice(Facts(records), NOW))
    assert [(a.entity.id, a.severity, a.metrics["amount"]) for a in alerts] == [
        ("ch_open", "medium", 7000.0),
        ("ch_orphan", "high", 250_000.0),
    ]
    assert [r.id for r in alerts[0].related] == ["cus_2"]


# --------------------------------------------------------------------------- HubSpot


def hubspot(kind: str, object_id: str, days_ago: float = 10, **props: Any) -> Record:
    return rec("hubspot", kind, object_id, NOW - dt.timedelta(days=days_ago), properties=props)


def test_deals_and_contacts_without_a_valid_owner() -> None:
    records = [
        rec("hubspot", "owner", "o1", NOW - dt.timedelta(days=400)),
        hubspot("deal", "d_ok", dealname="Fine", amount="50000", hubspot_owner_id="o1"),
        hubspot("deal", "d_none", dealname="Big", amount="25000.00", hubspot_owner_id=None),
        hubspot("deal", "d_gone", dealname="Small", amount="900", hubspot_owner_id="o_left"),
        hubspot("deal", "d_lost", dealname="Lost", amount="1", dealstage="closedlost"),
        hubspot("contact", "c_ok", email="a@x.example", hubspot_owner_id="o1"),
        hubspot("contact", "c_none", email="b@x.example", hubspot_owner_id=""),
    ]
    alerts = run_detectors(Facts(records), NOW, sources=["hubspot"])
    assert [(a.kind, a.entity.id, a.severity) for a in alerts] == [
        ("hubspot_deal_without_owner", "d_gone", "medium"),
        ("hubspot_deal_without_owner", "d_none", "high"),
        ("hubspot_contact_without_owner", "c_none", "low"),
    ]
    assert alerts[0].title == "Deal 'Small' has unknown owner o_left"
    # the Watcher's re-check runs only the detector of the alert's kind
    only = run_detectors(Facts(records), NOW, sources=["hubspot"], kinds=["hubspot_contact_without_owner"])
    assert [(a.kind, a.entity.id) for a in only] == [("hubspot_contact_without_owner", "c_none")]


def closed_won(deal_id: str, days_ago: float, amount: str, contact: str) -> Record:
    closed = NOW - dt.timedelta(days=days_ago)
    return Record("hubspot", "deal", deal_id, closed, {
        "id": deal_id,
        "properties": {"dealname": deal_id, "amount": amount, "dealstage": "closedwon",
                       "closedate": closed.isoformat().replace("+00:00", "Z"), "hubspot_owner_id": "o1"},
        "associations": {"contacts": [contact]},
    })  # fmt: skip


def test_closed_won_without_payment_matches_email_and_amount() -> None:
    paid_at = NOW - dt.timedelta(days=8)
    records = [
        rec("hubspot", "owner", "o1", NOW - dt.timedelta(days=400)),
        hubspot("contact", "c1", email="Buyer@Acme.example", hubspot_owner_id="o1"),
        hubspot("contact", "c2", email="ap@globex.example", hubspot_owner_id="o1"),
        closed_won("d_paid", 10, "1200.00", "c1"),  # paid by card, email via billing details
        closed_won("d_paid_via_customer", 10, "300", "c2"),  # email found on the Stripe customer
        closed_won("d_wrong_amount", 10, "999.00", "c1"),
        closed_won("d_grace", 1, "5.00", "c1"),  # too recent to judge
        closed_won("d_ancient", 90, "5.00", "c1"),  # outside the lookback
        rec("stripe", "charge", "ch1", paid_at, status="succeeded", amount=120_000, amount_refunded=0,
            billing_details={"email": "buyer@acme.example"}),
        rec("stripe", "charge", "ch2", paid_at, status="succeeded", amount=30_000, customer="cus_g",
            billing_details={"email": None}),
        rec("stripe", "customer", "cus_g", NOW - dt.timedelta(days=300), email="AP@globex.example"),
        rec("stripe", "charge", "ch3", paid_at, status="failed", amount=99_900,
            billing_details={"email": "buyer@acme.example"}),
    ]  # fmt: skip
    [alert] = list(d.hubspot_closed_won_without_payment(Facts(records), NOW))
    assert (alert.entity.id, alert.severity, alert.metrics["amount"]) == ("d_wrong_amount", "high", 99_900.0)
    assert alert.metrics["days_since_close"] == pytest.approx(10)
    assert [(r.type, r.id) for r in alert.related] == [("contact", "c1")]


def test_hubspot_scans_read_stripe_records_too() -> None:
    assert inputs_for(["hubspot"]) == ["hubspot", "stripe"]
    assert inputs_for(["calls"]) == ["calls"]
    # one detector's re-check reads only what that detector reads
    assert reads_of("hubspot_closed_won_without_payment") == ["hubspot", "stripe"]
    assert reads_of("hubspot_deal_without_owner") == ["hubspot"]
    assert reads_of("no_such_kind") is None


# --------------------------------------------------------------------------- Calls


def calls(rep: str, *, recent: tuple[int, int], baseline: tuple[int, int], duration: int = 300) -> list[Record]:
    """(calls, connected) in the last 7 days and in the 28 days before."""
    out = []
    for label, (total, connected), start_days, span in (("r", recent, 0, 7), ("b", baseline, 7, 28)):
        for n in range(total):
            at = NOW - dt.timedelta(days=start_days + span * (n + 0.5) / total)
            is_connected = n < connected
            out.append(rec("calls", "call", f"{rep}_{label}{n}", at, primaryUserId=rep,
                           disposition="connected" if is_connected else "no_answer",
                           duration=duration if is_connected else 5))  # fmt: skip
    return out


def test_connect_rate_drop_per_rep() -> None:
    records = (
        calls("slump", recent=(20, 4), baseline=(40, 24))
        + calls("steady", recent=(20, 11), baseline=(40, 24))
        + calls("thin", recent=(10, 0), baseline=(40, 24))
    )
    [alert] = list(d.calls_connect_rate_drop(Facts(records), NOW))
    assert alert.entity.id == "slump"
    assert alert.metrics == {
        "recent_rate": 0.2,
        "baseline_rate": 0.6,
        "drop": pytest.approx(0.4),
        "recent_calls": 20.0,
        "baseline_calls": 40.0,
        "unreachable_share": 0.0,  # the missed calls were unanswered, not wrong numbers
        "off_hours_share": 0.6,  # spread around the clock, as before
        "baseline_off_hours_share": 0.6,
    }
    assert alert.severity == "high"


def test_connected_falls_back_to_duration_without_disposition() -> None:
    records = [
        Record("calls", "call", f"c{n}", NOW - dt.timedelta(hours=n + 1),
               {"id": f"c{n}", "primaryUserId": "r", "duration": 45 if n < 6 else 10})
        for n in range(12)
    ]  # fmt: skip
    # 6 connected (>= 30 s) of which all are short (< 60 s) but 6 < 10 connected: not enough to judge
    assert list(d.calls_short_call_ratio(Facts(records), NOW)) == []


def test_short_call_ratio() -> None:
    records = calls("clipped", recent=(20, 12), baseline=(0, 0), duration=40) + calls(
        "talker", recent=(20, 12), baseline=(0, 0), duration=600
    )
    [alert] = list(d.calls_short_call_ratio(Facts(records), NOW))
    assert (alert.entity.id, alert.metrics["ratio"], alert.metrics["connected_calls"]) == ("clipped", 1.0, 12.0)


# --------------------------------------------------------------------------- registry and demo


def test_every_alert_kind_has_a_detector() -> None:
    from switchboard.contracts import AlertKind

    names = {detector.kind for detector in d.DETECTORS}
    assert names == set(AlertKind.__args__)  # type: ignore[attr-defined]


def test_detectors_are_deterministic_and_scoped_by_source() -> None:
    records = payout("po_x", 3050, [1000, 2000]) + calls("slump", recent=(20, 4), baseline=(40, 24))
    facts = Facts(reversed(records))
    assert kinds(run_detectors(facts, NOW)) == [
        ("stripe_payout_mismatch", "po_x"),
        ("calls_connect_rate_drop", "slump"),
    ]
    assert kinds(run_detectors(facts, NOW, sources=["calls"])) == [("calls_connect_rate_drop", "slump")]
    assert run_detectors(Facts(records), NOW) == run_detectors(facts, NOW)


def test_demo_data_raises_exactly_the_expected_anomalies() -> None:
    records = [Record(r.source, r.object_type, r.object_id, r.occurred_at, r.data) for r in demo_records(NOW)]
    found = kinds(run_detectors(Facts(records), NOW))
    assert sorted(found) == sorted((e.kind, e.entity_id) for e in EXPECTED)


def test_duplicate_companies_and_stale_deals() -> None:
    records = [
        hubspot("company", "co1", domain="acme.example"),
        hubspot("company", "co2", domain="www.ACME.example"),
        hubspot("company", "co3", domain="globex.example"),
        hubspot("deal", "d_stale", dealname="Old", dealstage="contractsent", hubspot_owner_id="o1",
                closedate=(NOW - dt.timedelta(days=30)).isoformat()),
        hubspot("deal", "d_recent", dealname="New", dealstage="contractsent", hubspot_owner_id="o1",
                closedate=(NOW - dt.timedelta(days=3)).isoformat()),
        hubspot("deal", "d_won", dealname="Won", dealstage="closedwon", hubspot_owner_id="o1",
                closedate=(NOW - dt.timedelta(days=90)).isoformat()),
    ]  # fmt: skip
    [duplicate] = list(d.hubspot_duplicate_company(Facts(records), NOW))
    assert (duplicate.entity.id, [r.id for r in duplicate.related]) == ("co1", ["co2"])
    assert duplicate.dedupe_key == "hubspot_duplicate_company:acme.example"
    [stale] = list(d.hubspot_stale_deal(Facts(records), NOW))
    assert stale.entity.id == "d_stale" and stale.metrics["days_overdue"] == pytest.approx(30)


def test_currency_mismatch_is_a_charge_without_paid_invoice() -> None:
    at = NOW - dt.timedelta(hours=3)
    records = [
        rec("stripe", "charge", "ch_eur", at, status="succeeded", amount=5000, currency="eur", invoice="in_usd"),
        rec("stripe", "invoice", "in_usd", at, status="paid", charge="ch_eur", currency="usd"),
    ]
    [alert] = list(d.stripe_charge_without_paid_invoice(Facts(records), NOW))
    assert alert.entity.id == "ch_eur"


def test_no_next_step_ratio() -> None:
    def call(n: int, items: list[str] | None) -> Record:
        data: dict[str, Any] = {"primaryUserId": "rep", "disposition": "connected", "duration": 600}
        if items is not None:
            data["actionItems"] = items
        return rec("calls", "call", f"c{n}", NOW - dt.timedelta(hours=n + 1), **data)

    vague = [call(n, [] if n < 8 else ["send proposal"]) for n in range(12)]
    [alert] = list(d.calls_no_next_step(Facts(vague), NOW))
    assert alert.metrics["ratio"] == pytest.approx(8 / 12)
    clear = [call(n, ["book demo"] if n < 8 else []) for n in range(12)]
    assert list(d.calls_no_next_step(Facts(clear), NOW)) == []
    unknown = [call(n, None) for n in range(12)]  # no content fetched: nothing to judge
    assert list(d.calls_no_next_step(Facts(unknown), NOW)) == []


def test_each_detector_raises_only_its_registered_kind_and_source() -> None:
    # the registry's kind is what clears an episode and picks the Watcher's re-check: a detector
    # that raised another kind would never have its episodes cleared
    records = (
        payout("po_x", 3050, [1000, 2000])
        + calls("slump", recent=(20, 4), baseline=(40, 24))
        + [Record(r.source, r.object_type, r.object_id, r.occurred_at, r.data) for r in demo_records(NOW)]
    )
    facts = Facts(records)
    for detector in d.DETECTORS:
        for alert in detector.detect(facts, NOW):
            assert (alert.kind, alert.source) == (detector.kind, detector.source)
