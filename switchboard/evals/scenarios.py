"""Eval scenarios: one YAML file each under `switchboard/evals/fixtures/` (or a user's directory),
holding its input data and its expectations.

```yaml
name: stripe_payout_mismatch          # unique; the file name without .yaml
suite: stripe                         # stripe | hubspot | calls
description: A payout 123.45 USD above the net of its balance transactions.
records:                              # stored source records; `at` is an offset from now
  - {source: stripe, type: payout, id: po_1, at: -2d, data: {amount: 15345, status: paid}}
series:                               # deterministic generated records (see SERIES)
  - {kind: stripe_charges, days: 15, per_day: 30, failed_today: 12, failed_other: 1}
expect:
  alerts: [{kind: stripe_payout_mismatch, entity: po_1, severity: high}]   # [] for negatives
  root_causes: {stripe_payout_mismatch: reconciliation_gap}
  actions: {stripe_payout_mismatch: [flag_finance_review]}
  action_content:                     # fields the plan's actions must hold (entities match by id)
    stripe_payout_mismatch: [{type: flag_finance_review, amount_cents: 12345, entities: [po_1]}]
  evidence: {stripe_payout_mismatch: [po_1]}   # ids the Analyst must cite
  forbidden_actions: [draft_customer_message]
```

A user's own files (`switchboard eval --scenarios DIR`) use the same format; every problem is
reported with the file and the field (`expect.actions.stripe_payout_mismatch[0]: ...`).

Strings of the form `{now}`, `{now-5d}`, `{now+2h}` inside `data` become ISO timestamps, and
`{ts:now-5d}` a Unix timestamp, so fixtures stay valid whatever day they run.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from switchboard.contracts import ActionType, AlertKind, RootCause, Severity, Source
from switchboard.db.records import RecordIn

FIXTURES = Path(__file__).parent / "fixtures"
Suite = Literal["stripe", "hubspot", "calls"]
SUITES: tuple[str, ...] = Suite.__args__  # type: ignore[attr-defined]
_OFFSET = re.compile(r"^([+-]?\d+(?:\.\d+)?)([dhm])$")
_TEMPLATE = re.compile(r"^\{(ts:)?now(?:([+-]\d+(?:\.\d+)?[dhm]))?\}$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class ScenarioError(ValueError):
    """A fixture file is malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class ExpectedAlert:
    kind: str
    entity: str
    severity: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    suite: str
    description: str
    records: list[dict[str, Any]]
    series: list[dict[str, Any]]
    alerts: list[ExpectedAlert]
    root_causes: dict[str, str] = field(default_factory=dict)
    actions: dict[str, list[str]] = field(default_factory=dict)
    forbidden_actions: list[str] = field(default_factory=list)
    action_content: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    evidence: dict[str, list[str]] = field(default_factory=dict)  # ids the Analyst must cite
    source: Path | None = None

    @property
    def negative(self) -> bool:
        return not self.alerts

    def build(self, now: dt.datetime) -> list[RecordIn]:
        """The scenario's records for a given `now` (same input, same output)."""
        out = [
            RecordIn(
                r["source"],
                r["type"],
                str(r["id"]),
                now + offset(r.get("at", "0m")),
                {"id": str(r["id"]), **_render(r.get("data") or {}, now)},
            )
            for r in self.records
        ]
        for spec in self.series:
            out += SERIES[spec["kind"]](now, {k: v for k, v in spec.items() if k != "kind"})
        return out


def offset(text: str | int | float) -> dt.timedelta:
    match = _OFFSET.match(str(text).strip())
    if not match:
        raise ScenarioError(f"bad time offset {text!r}: use e.g. -2d, -3h, -90m")
    return dt.timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def _render(value: Any, now: dt.datetime) -> Any:
    if isinstance(value, dict):
        return {key: _render(item, now) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, now) for item in value]
    if isinstance(value, str) and (match := _TEMPLATE.match(value)):
        moment = now + (offset(match.group(2)) if match.group(2) else dt.timedelta())
        return int(moment.timestamp()) if match.group(1) else moment.isoformat()
    return value


# --------------------------------------------------------------------------- series


def _stripe_charges(now: dt.datetime, spec: dict[str, Any]) -> list[RecordIn]:
    """`days` of `per_day` charges ending now; `failed_today` / `failed_other` failures a day;
    succeeded charges get paid invoices (unless `invoices: false`). Today's failures can carry
    a `failure_code` (`failure_codes`: a list cycled through), a `failed_amount`, fall within
    `burst_minutes` (ending two hours ago), or be `card_testing`: each on a card of its own, no
    customer. Other days' failures carry `failure_code_other`."""
    out: list[RecordIn] = []
    currency = spec.get("currency", "usd")
    codes = list(spec.get("failure_codes") or ([spec["failure_code"]] if spec.get("failure_code") else []))
    for day in range(int(spec.get("days", 15))):
        failed = int(spec.get("failed_today", 1) if day == 0 else spec.get("failed_other", 1))
        for n in range(int(spec.get("per_day", 30))):
            at = now - dt.timedelta(days=day + 1) + dt.timedelta(minutes=30 * n + 7)
            charge_id = f"ch_s{day}_{n}"
            status = "failed" if n < failed else "succeeded"
            invoice_id = f"in_s{day}_{n}" if status == "succeeded" and spec.get("invoices", True) else None
            data: dict[str, Any] = {
                "id": charge_id, "amount": 2500, "currency": currency, "status": status, "invoice": invoice_id,
                "customer": f"cus_s{n % 9}", "amount_refunded": 0,
                "payment_method_details": {"type": "card", "card": {"fingerprint": f"fp_s{n % 9}", "last4": "4242"}},
            }  # fmt: skip
            if status == "failed" and day == 0:
                if codes:
                    data["failure_code"] = codes[n % len(codes)]
                data["amount"] = int(spec.get("failed_amount", 2500))
                if spec.get("burst_minutes"):
                    at = now - dt.timedelta(hours=2) - dt.timedelta(minutes=float(spec["burst_minutes"]) * n / failed)
                if spec.get("card_testing"):
                    data["customer"] = None
                    data["payment_method_details"]["card"] = {"fingerprint": f"fp_t{n}", "last4": f"{1000 + n}"}
            elif status == "failed" and spec.get("failure_code_other"):
                data["failure_code"] = spec["failure_code_other"]
            data["created"] = int(at.timestamp())
            out.append(RecordIn("stripe", "charge", charge_id, at, data))
            if invoice_id:
                out.append(RecordIn("stripe", "invoice", invoice_id, at, {
                    "id": invoice_id, "status": "paid", "charge": charge_id, "amount_paid": 2500,
                    "currency": currency}))  # fmt: skip
    return out


def _stripe_daily(now: dt.datetime, spec: dict[str, Any]) -> list[RecordIn]:
    """`object_type` (refund | dispute) counts per day, `counts[0]` being the last 24 hours;
    the last day's carry Stripe's `reason` from `reasons` (cycled through), other days' `reason_other`."""
    object_type = spec["object_type"]
    reasons = list(spec.get("reasons") or [])
    out = []
    for day, count in enumerate(spec["counts"]):
        for n in range(int(count)):
            at = now - dt.timedelta(days=day, hours=1, minutes=7 * n)
            object_id = f"{object_type[:2]}_s{day}_{n}"
            data: dict[str, Any] = {
                "id": object_id, "amount": 1500, "currency": "usd", "charge": f"ch_x{day}_{n}",
                "status": "needs_response" if object_type == "dispute" else "succeeded",
                "created": int(at.timestamp())}  # fmt: skip
            reason = reasons[n % len(reasons)] if day == 0 and reasons else spec.get("reason_other")
            if reason:
                data["reason"] = reason
            out.append(RecordIn("stripe", object_type, object_id, at, data))
    return out


def _stripe_payout(now: dt.datetime, spec: dict[str, Any]) -> list[RecordIn]:
    """A payout with balance transactions `nets`, paid out `delta` minor units more than their sum."""
    payout_id = spec["id"]
    at = now - abs(offset(spec.get("ago", "2d")))
    out = []
    nets = [int(n) for n in spec["nets"]]
    for index, net in enumerate(nets):
        txn_id = f"txn_{payout_id}_{index}"
        out.append(RecordIn("stripe", "balance_transaction", txn_id, at - dt.timedelta(hours=5), {
            "id": txn_id, "amount": net + 30, "fee": 30, "net": net, "type": "charge", "payout": payout_id,
            "currency": spec.get("currency", "usd")}))  # fmt: skip
    out.append(RecordIn("stripe", "payout", payout_id, at, {
        "id": payout_id, "amount": sum(nets) + int(spec.get("delta", 0)), "status": spec.get("status", "paid"),
        "currency": spec.get("currency", "usd"), "created": int(at.timestamp())}))  # fmt: skip
    return out


def _calls_rep(now: dt.datetime, spec: dict[str, Any]) -> list[RecordIn]:
    """A rep's calls: `recent` [total, connected] over the last 6 days, `baseline` [total,
    connected] over days 8 to 34, in business hours (9:00-17:00 UTC) unless `recent_hours`
    [from, to] places the recent ones; recent calls not connected end `recent_missed`
    (no_answer; e.g. wrong_number); `short` of the recent connected calls last under a minute;
    `next_steps` [with, without] gives recent connected calls action items (or none)."""
    rep = spec["rep"]
    out: list[RecordIn] = []
    duration = int(spec.get("duration", 420))
    short = int(spec.get("short", 0))
    with_steps, _without_steps = (spec.get("next_steps") or [None, None])[:2]
    first, last = (spec.get("recent_hours") or [9, 17])[:2]
    for label, (total, connected), days_back, day_span in (("r", spec.get("recent", [0, 0]), 1, 6),
                                                          ("b", spec.get("baseline", [0, 0]), 8, 27)):  # fmt: skip
        hours = (int(first), int(last)) if label == "r" else (9, 17)
        for n in range(int(total)):
            hour = hours[0] + (n * 5) % max(1, hours[1] - hours[0])
            day = now - dt.timedelta(days=days_back + n % day_span)
            at = day.replace(hour=hour, minute=(7 * n) % 60, second=0, microsecond=0)
            is_connected = n < int(connected)
            seconds = (35 if label == "r" and n < short else duration) if is_connected else 8
            call_id = f"call_{rep}_{label}{n}"
            missed = str(spec.get("recent_missed", "no_answer")) if label == "r" else "no_answer"
            data: dict[str, Any] = {"id": call_id, "primaryUserId": rep, "started": at.isoformat(),
                                    "duration": seconds, "direction": "Outbound",
                                    "disposition": "connected" if is_connected else missed}  # fmt: skip
            if label == "r" and is_connected and with_steps is not None:
                data["actionItems"] = ["Send the proposal"] if n < int(with_steps) else []
            out.append(RecordIn("calls", "call", call_id, at, data))
    return out


SERIES: dict[str, Callable[[dt.datetime, dict[str, Any]], list[RecordIn]]] = {
    "stripe_charges": _stripe_charges,
    "stripe_daily": _stripe_daily,
    "stripe_payout": _stripe_payout,
    "calls_rep": _calls_rep,
}


# --------------------------------------------------------------------------- loading


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecordSpec(_Strict):
    source: Source
    type: str = Field(min_length=1)
    id: str | int
    at: str | int | float = "0m"
    data: dict[str, Any] | None = None

    @field_validator("at")
    @classmethod
    def _offset(cls, value: str | int | float) -> str | int | float:
        offset(value)
        return value


class SeriesSpec(BaseModel):
    model_config = ConfigDict(extra="allow")  # the generator's own parameters
    kind: str

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SERIES:
            raise ValueError(f"unknown series kind {value!r}; known: {', '.join(sorted(SERIES))}")
        return value


class AlertSpec(_Strict):
    kind: AlertKind
    entity: str | int
    severity: Severity | None = None


class ActionSpec(BaseModel):
    """An action the plan must hold: its type, and any of its fields with the value expected
    (an entity reference or a list of them matches by the ids given)."""

    model_config = ConfigDict(extra="allow")
    type: ActionType


class ExpectSpec(_Strict):
    alerts: list[AlertSpec] = Field(default_factory=list)
    root_causes: dict[AlertKind, RootCause] = Field(default_factory=dict)
    actions: dict[AlertKind, list[ActionType]] = Field(default_factory=dict)
    action_content: dict[AlertKind, list[ActionSpec]] = Field(default_factory=dict)
    evidence: dict[AlertKind, list[str]] = Field(default_factory=dict)
    forbidden_actions: list[ActionType] = Field(default_factory=list)


class ScenarioFile(_Strict):
    """The format of a scenario file (see the module docstring)."""

    name: str = Field(min_length=1, max_length=128)
    suite: Suite
    description: str = ""
    records: list[RecordSpec] = Field(default_factory=list)
    series: list[SeriesSpec] = Field(default_factory=list)
    expect: ExpectSpec = Field(default_factory=ExpectSpec)


def _where(location: tuple[int | str, ...]) -> str:
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def load_scenario_file(path: Path) -> Scenario:
    """One scenario file, validated (ScenarioError naming the file and the field)."""
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ScenarioError(f"{where}: not valid YAML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{where}: cannot be read: {error}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: must be a mapping of name, suite, records, series and expect")
    try:
        spec = ScenarioFile.model_validate(raw)
    except ValidationError as error:
        problems = [f"{_where(e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)]
        raise ScenarioError(f"{where}: " + "; ".join(problems[:5])) from None
    if spec.name != path.stem:
        raise ScenarioError(f"{where}: name: must be {path.stem!r} (the file name without .yaml)")
    expect = spec.expect
    return Scenario(
        name=spec.name,
        suite=spec.suite,
        description=spec.description,
        records=[record.model_dump() for record in spec.records],
        series=[series.model_dump() for series in spec.series],
        alerts=[ExpectedAlert(a.kind, str(a.entity), a.severity) for a in expect.alerts],
        root_causes={str(kind): str(cause) for kind, cause in expect.root_causes.items()},
        actions={kind: list(types) for kind, types in expect.actions.items()},
        forbidden_actions=list(expect.forbidden_actions),
        action_content={kind: [item.model_dump() for item in items] for kind, items in expect.action_content.items()},
        evidence={kind: [str(i) for i in ids] for kind, ids in expect.evidence.items()},
        source=path,
    )


def load_scenarios(
    suite: str | None = None, directory: Path = FIXTURES, *, extra: Path | None = None
) -> list[Scenario]:
    """Every scenario (of `suite`, or all), sorted by name: the shipped ones, and with `extra` a
    user's directory of files in the same format (a name in both is an error)."""
    if suite is not None and suite not in (*SUITES, "all"):
        raise ScenarioError(f"unknown suite {suite!r}: use one of {', '.join((*SUITES, 'all'))}")
    paths = sorted(directory.glob("*.yaml"))
    if extra is not None:
        if not extra.is_dir():
            raise ScenarioError(f"{extra}: not a directory of scenario files")
        own = sorted([*extra.glob("*.yaml"), *extra.glob("*.yml")])
        if not own:
            raise ScenarioError(f"{extra}: holds no .yaml scenario files")
        shipped = {path.stem for path in paths}
        for path in own:
            if path.stem in shipped:
                raise ScenarioError(f"{path}: name: {path.stem!r} is a shipped scenario; choose another name")
        paths += own
    scenarios = sorted((load_scenario_file(path) for path in paths), key=lambda s: s.name)
    return [s for s in scenarios if suite in (None, "all") or s.suite == suite]
