"""Deterministic anomaly detectors over stored source records.

Each detector is a pure function of the stored facts and `now`: same data, same alerts. They
read records in the providers' own wire shapes (Stripe objects, HubSpot CRM objects, Gong-style
calls) as stored in `source_records`. The LLM never decides *whether* something is anomalous;
it only summarises and ranks what these functions raise.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from switchboard.contracts import Alert
from switchboard.utc import as_utc

DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)

# Objects that describe who/what rather than what happened: loaded whatever their age (an owner
# created two years ago still owns deals today). Everything else is read within a lookback window.
REFERENCE_TYPES = ("owner", "contact", "company", "customer", "deal")

# Robust z-score: (x - median) / (1.4826 * MAD); MAD is floored so a flat baseline does not make
# every small wobble infinitely significant.
MAD_SCALE = 1.4826
Z_THRESHOLD = 3.5

# Failed-payment spike
FAILED_BASELINE_DAYS = 14
FAILED_MIN_DAY_CHARGES = 20  # days with fewer charges are too noisy to be part of the baseline
FAILED_MIN_BASELINE_DAYS = 7
FAILED_MAD_FLOOR = 0.01
FAILED_MIN_RATE_JUMP = 0.05  # and the rate must be at least 5 points above the median
# Refund / dispute spikes (daily counts)
# What the failures of a spike look like, as shares the Analyst reads: Stripe's failure codes
# (an expired-card wave, a processor's processing errors), small amounts on many cards (card
# testing), and how many fell within one hour (an outage is a burst).
FAILURE_CODES = ("card_declined", "expired_card", "insufficient_funds", "processing_error", "incorrect_cvc")
SMALL_CHARGE_CENTS = 500

COUNT_BASELINE_DAYS = 14
COUNT_MAD_FLOOR = 0.5  # against a quiet baseline (median 0) three in a day is z 4.0
MIN_REFUNDS = 3
MIN_DISPUTES = 3
# Payout reconciliation
PAYOUT_LOOKBACK = dt.timedelta(days=30)
PAYOUT_CRITICAL_CENTS = 100_000
PAYOUT_HIGH_CENTS = 10_000
# Charge without a paid invoice
INVOICE_GRACE = dt.timedelta(hours=1)
INVOICE_LOOKBACK = dt.timedelta(days=30)
# HubSpot
HIGH_VALUE_DEAL = 10_000.0
CLOSED_WON_GRACE = dt.timedelta(days=3)
CLOSED_WON_LOOKBACK = dt.timedelta(days=60)
PAYMENT_SEARCH_BEFORE_CLOSE = dt.timedelta(days=30)
STALE_DEAL_AFTER = dt.timedelta(days=14)  # an open deal this far past its close date
OPEN_DEAL_EXCLUDED = ("closedwon", "closedlost")
# Calls
CALLING_HOURS_UTC = (8, 18)  # calls outside [8:00, 18:00) count as off-hours
UNREACHABLE_DISPOSITIONS = ("wrong_number", "invalid_number", "disconnected")
MIN_CALLS_FOR_NEXT_STEP = 10  # connected calls of 5+ minutes in the last week
NEXT_STEP_MIN_DURATION_S = 300
NO_NEXT_STEP_THRESHOLD = 0.6
CALLS_RECENT = dt.timedelta(days=7)
CALLS_BASELINE = dt.timedelta(days=28)
MIN_RECENT_CALLS = 15
MIN_BASELINE_CALLS = 30
MIN_CONNECT_DROP = 0.20
CONNECTED_MIN_DURATION_S = 30  # when a call carries no disposition
SHORT_CALL_S = 60
MIN_CONNECTED_FOR_SHORT_RATIO = 10
SHORT_RATIO_THRESHOLD = 0.5


@dataclass(frozen=True)
class Record:
    """One stored object of a source system."""

    source: str
    object_type: str
    object_id: str
    occurred_at: dt.datetime
    data: dict[str, Any]


class Facts:
    """The stored records a scan sees, indexed by (source, object type)."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._by_type: dict[tuple[str, str], list[Record]] = defaultdict(list)
        self._by_id: dict[tuple[str, str, str], Record] = {}
        for record in records:
            self._by_type[(record.source, record.object_type)].append(record)
            self._by_id[(record.source, record.object_type, record.object_id)] = record
        for bucket in self._by_type.values():
            bucket.sort(key=lambda r: (r.occurred_at, r.object_id))

    def of(self, source: str, object_type: str) -> list[Record]:
        return self._by_type.get((source, object_type), [])

    def get(self, source: str, object_type: str, object_id: str) -> Record | None:
        return self._by_id.get((source, object_type, object_id))

    def __len__(self) -> int:
        return len(self._by_id)


DetectorFunction = Callable[[Facts, dt.datetime], Iterator[Alert]]


def robust_z(value: float, baseline: Sequence[float], mad_floor: float) -> tuple[float, float]:
    """(robust z-score of value against baseline, baseline median)."""
    median = statistics.median(baseline)
    mad = statistics.median(abs(x - median) for x in baseline)
    return (value - median) / (MAD_SCALE * max(mad, mad_floor)), median


def _in(record: Record, start: dt.datetime, end: dt.datetime) -> bool:
    return start <= record.occurred_at < end


def _alert(
    kind: str,
    source: str,
    severity: str,
    title: str,
    entity: tuple[str, str],
    now: dt.datetime,
    *,
    metrics: dict[str, float] | None = None,
    evidence: Iterable[str] = (),
    related: Iterable[tuple[str, str, str]] = (),
    dedupe: str | None = None,
) -> Alert:
    return Alert.model_validate(
        {
            "kind": kind,
            "source": source,
            "severity": severity,
            "title": title[:255],
            "entity": {"source": source, "type": entity[0], "id": entity[1]},
            "related": [{"source": s, "type": t, "id": i} for s, t, i in related],
            "metrics": {k: float(v) for k, v in (metrics or {}).items()},
            "evidence_ids": list(evidence)[:50],
            "dedupe_key": (dedupe or f"{kind}:{entity[0]}:{entity[1]}")[:255],
            "detected_at": now,
        }
    )


# --------------------------------------------------------------------------- Stripe


def _daily_windows(now: dt.datetime, days: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """[current day window, then `days` previous day windows], each [start, end)."""
    return [(now - (i + 1) * DAY, now - i * DAY) for i in range(days + 1)]


def stripe_failed_payment_spike(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    charges = facts.of("stripe", "charge")
    windows = _daily_windows(now, FAILED_BASELINE_DAYS)
    stats: list[tuple[int, int]] = []  # (charges, failed) per window
    for start, end in windows:
        day = [c for c in charges if _in(c, start, end)]
        stats.append((len(day), sum(1 for c in day if c.data.get("status") == "failed")))
    total, failed = stats[0]
    baseline = [f / n for n, f in stats[1:] if n >= FAILED_MIN_DAY_CHARGES]
    if total < FAILED_MIN_DAY_CHARGES or len(baseline) < FAILED_MIN_BASELINE_DAYS:
        return
    rate = failed / total
    z, median = robust_z(rate, baseline, FAILED_MAD_FLOOR)
    if z < Z_THRESHOLD or rate < median + FAILED_MIN_RATE_JUMP:
        return
    failures = [c for c in charges if _in(c, *windows[0]) and c.data.get("status") == "failed"]
    severity = "critical" if rate >= median + 0.25 else "high"
    yield _alert(
        "stripe_failed_payment_spike", "stripe", severity,
        f"Failed-payment rate {rate:.0%} in the last 24 h (trailing median {median:.0%})",
        ("account", "charges"), now,
        metrics={"current_rate": rate, "baseline_median": median, "robust_z": z, "charges": total, "failed": failed,
                 **_failure_profile(failures)},
        evidence=[c.object_id for c in sorted(failures, key=lambda c: c.occurred_at)],
    )  # fmt: skip


def _peak_hour_share(records: Sequence[Record]) -> float:
    """The largest share of ``records`` that fall within one hour of each other."""
    times = sorted(r.occurred_at for r in records)
    best = 0
    for index, start in enumerate(times):
        best = max(best, sum(1 for t in times[index:] if t < start + HOUR))
    return best / len(times) if times else 0.0


def _card(charge: Record) -> str:
    details = charge.data.get("payment_method_details")
    card = details.get("card") if isinstance(details, dict) else None
    fingerprint = card.get("fingerprint") if isinstance(card, dict) else None
    return str(fingerprint or charge.data.get("customer") or charge.object_id)


def _failure_profile(failures: Sequence[Record]) -> dict[str, float]:
    """Shares of the failures by failure code, small amounts, distinct cards, and the busiest hour."""
    count = max(1, len(failures))
    codes = Counter(str(c.data.get("failure_code") or "") for c in failures)
    profile = {f"share_{code}": codes[code] / count for code in FAILURE_CODES}
    small = sum(1 for c in failures if int(c.data.get("amount") or 0) <= SMALL_CHARGE_CENTS)
    profile["small_amount_share"] = small / count
    profile["distinct_card_share"] = len({_card(c) for c in failures}) / count
    profile["peak_hour_share"] = _peak_hour_share(failures)
    return profile


def _count_spike(
    facts: Facts, now: dt.datetime, *, object_type: str, kind: str, noun: str, minimum: int
) -> Iterator[Alert]:
    records = facts.of("stripe", object_type)
    windows = _daily_windows(now, COUNT_BASELINE_DAYS)
    counts = [sum(1 for r in records if _in(r, start, end)) for start, end in windows]
    current, baseline = counts[0], counts[1:]
    if current < minimum:
        return
    z, median = robust_z(float(current), [float(c) for c in baseline], COUNT_MAD_FLOOR)
    if z < Z_THRESHOLD:
        return
    today = [r for r in records if _in(r, *windows[0])]
    # Stripe's own word for why (a refund's or a dispute's `reason`), as shares of the day's
    reasons = Counter(str(r.data.get("reason") or "unstated") for r in today)
    shares = {f"share_reason_{reason}": n / len(today) for reason, n in sorted(reasons.items())}
    severity = "critical" if current >= 3 * max(median, 1.0) + 10 else "high"
    yield _alert(
        kind, "stripe", severity, f"{current} {noun} in the last 24 h (trailing median {median:.1f})",
        ("account", object_type + "s"), now,
        metrics={"current": current, "baseline_median": median, "robust_z": z, **shares},
        evidence=[r.object_id for r in today],
    )  # fmt: skip


def stripe_refund_spike(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    yield from _count_spike(
        facts, now, object_type="refund", kind="stripe_refund_spike", noun="refunds", minimum=MIN_REFUNDS
    )


def stripe_dispute_spike(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    yield from _count_spike(
        facts, now, object_type="dispute", kind="stripe_dispute_spike", noun="disputes", minimum=MIN_DISPUTES
    )


def stripe_payout_mismatch(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    """A paid (or in-transit) payout whose amount differs from the net of its balance transactions."""
    by_payout: dict[str, list[Record]] = defaultdict(list)
    for txn in facts.of("stripe", "balance_transaction"):
        payout = txn.data.get("payout")
        if isinstance(payout, str) and txn.data.get("type") != "payout":
            by_payout[payout].append(txn)
    for payout in facts.of("stripe", "payout"):
        if payout.data.get("status") not in ("paid", "in_transit") or payout.occurred_at < now - PAYOUT_LOOKBACK:
            continue
        txns = by_payout.get(payout.object_id, [])
        if not txns:
            continue  # transactions not synced yet: nothing to reconcile against
        amount = int(payout.data.get("amount") or 0)
        net = sum(int(t.data.get("net") or 0) for t in txns)
        difference = amount - net
        if difference == 0:
            continue
        size = abs(difference)
        severity = "critical" if size >= PAYOUT_CRITICAL_CENTS else "high" if size >= PAYOUT_HIGH_CENTS else "medium"
        currency = str(payout.data.get("currency") or "").upper()
        yield _alert(
            "stripe_payout_mismatch", "stripe", severity,
            f"Payout {payout.object_id} differs from its balance transactions by {difference / 100:.2f} {currency}",
            ("payout", payout.object_id), now,
            metrics={"payout_amount": amount, "transactions_net": net, "difference": difference,
                     "transaction_count": len(txns)},
            evidence=[payout.object_id] + [t.object_id for t in txns],
        )  # fmt: skip


def stripe_charge_without_paid_invoice(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    """A succeeded charge, older than the grace period, that no paid invoice accounts for."""
    paid = {i.object_id: i for i in facts.of("stripe", "invoice") if i.data.get("status") == "paid"}
    paid_by_charge = {str(i.data.get("charge")): i for i in paid.values()}
    for charge in facts.of("stripe", "charge"):
        if charge.data.get("status") != "succeeded" or not _in(charge, now - INVOICE_LOOKBACK, now - INVOICE_GRACE):
            continue
        invoice = paid_by_charge.get(charge.object_id) or paid.get(str(charge.data.get("invoice")))
        # A paid invoice in another currency does not account for the charge (a currency mismatch).
        if (
            invoice is not None
            and str(invoice.data.get("currency") or "").lower() == str(charge.data.get("currency") or "").lower()
        ):
            continue
        amount = int(charge.data.get("amount") or 0)
        currency = str(charge.data.get("currency") or "").upper()
        related = [("stripe", "customer", str(charge.data["customer"]))] if charge.data.get("customer") else []
        yield _alert(
            "stripe_charge_without_paid_invoice", "stripe", "high" if amount >= 100_000 else "medium",
            f"Charge {charge.object_id} of {amount / 100:.2f} {currency} has no paid invoice",
            ("charge", charge.object_id), now,
            metrics={"amount": amount}, evidence=[charge.object_id], related=related,
        )  # fmt: skip


# --------------------------------------------------------------------------- HubSpot


def _props(record: Record) -> dict[str, Any]:
    props = record.data.get("properties")
    return props if isinstance(props, dict) else {}


def _amount(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _active_owners(facts: Facts) -> set[str]:
    """Owners who can own records: not archived (HubSpot archives the owner of a user who left)."""
    return {o.object_id for o in facts.of("hubspot", "owner") if not o.data.get("archived")}


def _owner_problem(record: Record, owners: set[str], facts: Facts) -> str | None:
    owner = _props(record).get("hubspot_owner_id")
    if owner in (None, ""):
        return "no owner"
    if str(owner) in owners:
        return None
    if facts.get("hubspot", "owner", str(owner)) is not None:
        return f"owner {owner}, who left (archived)"
    return f"unknown owner {owner}"


def _teams(owner: Record | None) -> set[str]:
    return {str(t.get("id")) for t in (owner.data.get("teams") or []) if isinstance(t, dict)} if owner else set()


def _ownerless_batch(deal: Record, facts: Facts, owners: set[str]) -> int:
    """Ownerless open deals created from the same source (an import, an integration) within an
    hour of this one, this one included."""
    source = _props(deal).get("hs_object_source")
    return sum(
        1 for other in facts.of("hubspot", "deal")
        if _props(other).get("hs_object_source") == source and abs(other.occurred_at - deal.occurred_at) <= HOUR
        and _props(other).get("dealstage") != "closedlost" and _owner_problem(other, owners, facts) is not None
    )  # fmt: skip


def hubspot_deal_without_owner(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    """An open deal nobody owns. What the Analyst reads: whether its owner left (archived; then
    the active owners of their team are named as related), and whether it came in a batch of
    ownerless deals from an import or an integration (its `hs_object_source`)."""
    owners = _active_owners(facts)
    for deal in facts.of("hubspot", "deal"):
        props = _props(deal)
        if props.get("dealstage") == "closedlost" or (problem := _owner_problem(deal, owners, facts)) is None:
            continue
        amount = _amount(props.get("amount"))
        name = props.get("dealname") or deal.object_id
        former = facts.get("hubspot", "owner", str(props.get("hubspot_owner_id")))
        teammates = sorted(
            o.object_id for o in facts.of("hubspot", "owner")
            if o.object_id in owners and former is not None and _teams(o) & _teams(former)
        )  # fmt: skip
        source = str(props.get("hs_object_source") or "")
        yield _alert(
            "hubspot_deal_without_owner", "hubspot", "high" if amount >= HIGH_VALUE_DEAL else "medium",
            f"Deal '{name}' has {problem}", ("deal", deal.object_id), now,
            metrics={"amount": amount, "owner_archived": float(former is not None),
                     "from_import_or_integration": float(source in ("IMPORT", "INTEGRATION")),
                     "ownerless_in_batch": _ownerless_batch(deal, facts, owners)},
            evidence=[deal.object_id] + ([former.object_id] if former is not None else []),
            related=[("hubspot", "owner", owner) for owner in teammates],
        )  # fmt: skip


def hubspot_contact_without_owner(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    owners = _active_owners(facts)
    for contact in facts.of("hubspot", "contact"):
        if (problem := _owner_problem(contact, owners, facts)) is None:
            continue
        label = _props(contact).get("email") or contact.object_id
        yield _alert(
            "hubspot_contact_without_owner", "hubspot", "low",
            f"Contact {label} has {problem}", ("contact", contact.object_id), now, evidence=[contact.object_id],
        )  # fmt: skip


def _close_date(deal: Record) -> dt.datetime:
    raw = _props(deal).get("closedate")
    if isinstance(raw, str) and raw:
        try:
            parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return as_utc(parsed)
        except ValueError:
            pass
    return deal.occurred_at


def _charge_email(charge: Record, facts: Facts) -> str | None:
    details = charge.data.get("billing_details")
    email = details.get("email") if isinstance(details, dict) else None
    if not email and isinstance(charge.data.get("customer"), str):
        customer = facts.get("stripe", "customer", charge.data["customer"])
        email = customer.data.get("email") if customer else None
    return str(email).lower() if email else None


def hubspot_closed_won_without_payment(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    """A closed-won deal (past the grace period) with no succeeded Stripe charge from one of its
    contacts for the deal's amount."""
    payments: dict[str, list[tuple[int, dt.datetime]]] = defaultdict(list)
    for charge in facts.of("stripe", "charge"):
        if charge.data.get("status") == "succeeded" and (email := _charge_email(charge, facts)):
            net = int(charge.data.get("amount") or 0) - int(charge.data.get("amount_refunded") or 0)
            payments[email].append((net, charge.occurred_at))
    for deal in facts.of("hubspot", "deal"):
        props = _props(deal)
        if props.get("dealstage") != "closedwon":
            continue
        closed = _close_date(deal)
        if not now - CLOSED_WON_LOOKBACK <= closed <= now - CLOSED_WON_GRACE:
            continue
        cents = round(_amount(props.get("amount")) * 100)
        if cents <= 0:
            continue
        associations = deal.data.get("associations") or {}
        contact_ids = [str(c) for c in associations.get("contacts") or []]
        emails = set()
        for contact_id in contact_ids:
            contact = facts.get("hubspot", "contact", contact_id)
            if contact and (email := _props(contact).get("email")):
                emails.add(str(email).lower())
        paid = any(
            amount == cents and at >= closed - PAYMENT_SEARCH_BEFORE_CLOSE
            for email in emails
            for amount, at in payments.get(email, [])
        )
        if paid:
            continue
        yield _alert(
            "hubspot_closed_won_without_payment", "hubspot", "high",
            f"Closed-won deal '{props.get('dealname') or deal.object_id}' ({cents / 100:.2f}) has no matching payment",
            ("deal", deal.object_id), now,
            metrics={"amount": cents, "days_since_close": (now - closed) / DAY},
            evidence=[deal.object_id], related=[("hubspot", "contact", c) for c in contact_ids],
        )  # fmt: skip


def _domain(company: Record) -> str:
    raw = str(_props(company).get("domain") or "").strip().lower()
    return raw.removeprefix("www.")


def hubspot_duplicate_company(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    """Two or more companies with the same domain: deals and contacts get split between them."""
    by_domain: dict[str, list[Record]] = defaultdict(list)
    for company in facts.of("hubspot", "company"):
        if domain := _domain(company):
            by_domain[domain].append(company)
    for domain, companies in sorted(by_domain.items()):
        if len(companies) < 2:
            continue
        ids = sorted(c.object_id for c in companies)
        yield _alert(
            "hubspot_duplicate_company", "hubspot", "low", f"{len(ids)} companies share the domain {domain}",
            ("company", ids[0]), now, metrics={"duplicates": len(ids)}, evidence=ids,
            related=[("hubspot", "company", i) for i in ids[1:]], dedupe=f"hubspot_duplicate_company:{domain}",
        )  # fmt: skip


def hubspot_stale_deal(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    """An open deal whose close date passed long ago: its stage no longer reflects reality."""
    for deal in facts.of("hubspot", "deal"):
        props = _props(deal)
        if props.get("dealstage") in OPEN_DEAL_EXCLUDED or not props.get("closedate"):
            continue
        overdue = now - _close_date(deal)
        if overdue < STALE_DEAL_AFTER:
            continue
        yield _alert(
            "hubspot_stale_deal", "hubspot", "medium",
            f"Deal '{props.get('dealname') or deal.object_id}' is still '{props.get('dealstage')}' "
            f"{overdue.days} days after its close date",
            ("deal", deal.object_id), now, metrics={"days_overdue": overdue / DAY}, evidence=[deal.object_id],
        )  # fmt: skip


# --------------------------------------------------------------------------- Calls


def _connected(call: Record) -> bool:
    disposition = call.data.get("disposition")
    if disposition is not None:
        return str(disposition).lower() == "connected"
    return _amount(call.data.get("duration")) >= CONNECTED_MIN_DURATION_S


def _calls_by_rep(facts: Facts) -> dict[str, list[Record]]:
    reps: dict[str, list[Record]] = defaultdict(list)
    for call in facts.of("calls", "call"):
        rep = call.data.get("primaryUserId")
        if rep:
            reps[str(rep)].append(call)
    return reps


def calls_connect_rate_drop(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    for rep, calls in sorted(_calls_by_rep(facts).items()):
        recent = [c for c in calls if _in(c, now - CALLS_RECENT, now)]
        baseline = [c for c in calls if _in(c, now - CALLS_RECENT - CALLS_BASELINE, now - CALLS_RECENT)]
        if len(recent) < MIN_RECENT_CALLS or len(baseline) < MIN_BASELINE_CALLS:
            continue
        recent_rate = sum(map(_connected, recent)) / len(recent)
        baseline_rate = sum(map(_connected, baseline)) / len(baseline)
        drop = baseline_rate - recent_rate
        if drop < MIN_CONNECT_DROP:
            continue
        missed = [c for c in recent if not _connected(c)]
        unreachable = sum(1 for c in missed if str(c.data.get("disposition") or "").lower() in UNREACHABLE_DISPOSITIONS)
        yield _alert(
            "calls_connect_rate_drop", "calls", "high" if drop >= 0.35 else "medium",
            f"Rep {rep}: connect rate fell from {baseline_rate:.0%} to {recent_rate:.0%}", ("rep", rep), now,
            metrics={"recent_rate": recent_rate, "baseline_rate": baseline_rate, "drop": drop,
                     "recent_calls": len(recent), "baseline_calls": len(baseline),
                     # a bad list: numbers that do not reach anyone; a schedule: calls when nobody picks up
                     "unreachable_share": unreachable / max(1, len(missed)),
                     "off_hours_share": _off_hours_share(recent),
                     "baseline_off_hours_share": _off_hours_share(baseline)},
            evidence=[c.object_id for c in missed] + [c.object_id for c in recent if _connected(c)],
        )  # fmt: skip


def _off_hours_share(calls: Sequence[Record]) -> float:
    start, end = CALLING_HOURS_UTC
    return sum(1 for c in calls if not start <= c.occurred_at.hour < end) / max(1, len(calls))


def calls_short_call_ratio(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    for rep, calls in sorted(_calls_by_rep(facts).items()):
        connected = [c for c in calls if _in(c, now - CALLS_RECENT, now) and _connected(c)]
        if len(connected) < MIN_CONNECTED_FOR_SHORT_RATIO:
            continue
        short = [c for c in connected if _amount(c.data.get("duration")) < SHORT_CALL_S]
        ratio = len(short) / len(connected)
        if ratio < SHORT_RATIO_THRESHOLD:
            continue
        yield _alert(
            "calls_short_call_ratio", "calls", "medium",
            f"Rep {rep}: {ratio:.0%} of connected calls under a minute", ("rep", rep), now,
            metrics={"ratio": ratio, "short_calls": len(short), "connected_calls": len(connected)},
            evidence=[c.object_id for c in short],
        )  # fmt: skip


def calls_no_next_step(facts: Facts, now: dt.datetime) -> Iterator[Alert]:
    """Most of a rep's substantial conversations end without an agreed next step (no action
    items in the call's content)."""
    for rep, calls in sorted(_calls_by_rep(facts).items()):
        long_calls = [
            c for c in calls
            if _in(c, now - CALLS_RECENT, now) and _connected(c)
            and _amount(c.data.get("duration")) >= NEXT_STEP_MIN_DURATION_S and "actionItems" in c.data
        ]  # fmt: skip
        if len(long_calls) < MIN_CALLS_FOR_NEXT_STEP:
            continue
        without = [c for c in long_calls if not c.data.get("actionItems")]
        ratio = len(without) / len(long_calls)
        if ratio < NO_NEXT_STEP_THRESHOLD:
            continue
        yield _alert(
            "calls_no_next_step", "calls", "medium",
            f"Rep {rep}: {ratio:.0%} of substantial calls ended without a next step", ("rep", rep), now,
            metrics={"ratio": ratio, "calls": len(long_calls)}, evidence=[c.object_id for c in without],
        )  # fmt: skip


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Detector:
    """One detector: the alert kind it raises, the source its alerts belong to, the sources
    whose records it reads, and the function that finds its alerts."""

    kind: str
    source: str
    reads: tuple[str, ...]
    detect: DetectorFunction


DETECTORS: tuple[Detector, ...] = (
    Detector("stripe_failed_payment_spike", "stripe", ("stripe",), stripe_failed_payment_spike),
    Detector("stripe_refund_spike", "stripe", ("stripe",), stripe_refund_spike),
    Detector("stripe_dispute_spike", "stripe", ("stripe",), stripe_dispute_spike),
    Detector("stripe_payout_mismatch", "stripe", ("stripe",), stripe_payout_mismatch),
    Detector("stripe_charge_without_paid_invoice", "stripe", ("stripe",), stripe_charge_without_paid_invoice),
    Detector("hubspot_deal_without_owner", "hubspot", ("hubspot",), hubspot_deal_without_owner),
    Detector("hubspot_contact_without_owner", "hubspot", ("hubspot",), hubspot_contact_without_owner),
    Detector(
        "hubspot_closed_won_without_payment", "hubspot", ("hubspot", "stripe"), hubspot_closed_won_without_payment
    ),
    Detector("hubspot_duplicate_company", "hubspot", ("hubspot",), hubspot_duplicate_company),
    Detector("hubspot_stale_deal", "hubspot", ("hubspot",), hubspot_stale_deal),
    Detector("calls_connect_rate_drop", "calls", ("calls",), calls_connect_rate_drop),
    Detector("calls_short_call_ratio", "calls", ("calls",), calls_short_call_ratio),
    Detector("calls_no_next_step", "calls", ("calls",), calls_no_next_step),
)
_BY_KIND = {detector.kind: detector for detector in DETECTORS}


def inputs_for(sources: Iterable[str]) -> list[str]:
    """Every source whose records the detectors of `sources` read (e.g. hubspot also needs stripe)."""
    wanted = set(sources)
    needed = {s for detector in DETECTORS if detector.source in wanted for s in detector.reads}
    return sorted(needed | wanted)


def reads_of(kind: str) -> list[str] | None:
    """The sources the detector of alert kind `kind` reads (None: no detector raises that kind)."""
    detector = _BY_KIND.get(kind)
    return sorted(detector.reads) if detector is not None else None


def detectors_for(
    sources: Iterable[str] | None = None, disabled: Iterable[str] = (), kinds: Iterable[str] | None = None
) -> list[Detector]:
    """The detectors of `sources` (default: every source) that run: not named in `disabled`
    (SWITCHBOARD_DISABLED_DETECTORS) and, when `kinds` is given, of those alert kinds only."""
    wanted = set(sources) if sources is not None else None
    only = set(kinds) if kinds is not None else None
    off = set(disabled)
    unknown = off - set(_BY_KIND)
    if unknown:
        raise ValueError(f"SWITCHBOARD_DISABLED_DETECTORS names unknown detectors: {sorted(unknown)}")
    return [
        detector
        for detector in DETECTORS
        if (wanted is None or detector.source in wanted)
        and (only is None or detector.kind in only)
        and detector.kind not in off
    ]


def run_detectors(
    facts: Facts,
    now: dt.datetime,
    *,
    sources: Iterable[str] | None = None,
    disabled: Iterable[str] = (),
    kinds: Iterable[str] | None = None,
) -> list[Alert]:
    """All alerts the detectors of `sources` (default: every source) find, in a stable order;
    detectors named in `disabled` (SWITCHBOARD_DISABLED_DETECTORS) do not run, nor (when
    `kinds` is given) those of other alert kinds."""
    alerts: list[Alert] = []
    for detector in detectors_for(sources, disabled, kinds):
        alerts.extend(detector.detect(facts, now))
    return alerts
