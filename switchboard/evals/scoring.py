"""Scoring one eval: each scenario's outcome against its expectations, the suite's rates, the
floors every run must clear, and the per-scenario diff against the pinned baseline.

Rates (per suite, and over all suites):
- detection precision / recall: raised (kind, entity) against expected, negatives included;
- root-cause accuracy: expected root causes the Analyst named;
- key evidence: the scenario's key evidence ids the Analyst cited; evidence validity: cited ids
  that name a record in the scenario's store (an invented id counts against it);
- action match: expected action types all present in the Advisor's plan; action content: the
  expected actions' fields (target entity, owner, amount, the customer named) as planned;
- contract validity: runs that ended `done` or `awaiting_approval`, not failed or unfinished;
- forbidden actions: planned actions of a forbidden type (a count: 0 is the only good value).

A run is a regression when any suite falls below a floor (`SWITCHBOARD_EVAL_FLOORS`), first run
included, or when a rate falls more than `SWITCHBOARD_EVAL_REGRESSION_THRESHOLD` below the
pinned baseline's, or forbidden actions rise above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from switchboard.evals.scenarios import Scenario
from switchboard.settings import EVAL_RATE_METRICS

RATES = EVAL_RATE_METRICS
OK_RUN_STATUSES = ("done", "awaiting_approval")


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    causes_right: int = 0
    causes_total: int = 0
    key_cited: int = 0
    key_total: int = 0
    cited_valid: int = 0
    cited_total: int = 0
    actions_right: int = 0
    actions_total: int = 0
    content_right: int = 0
    content_total: int = 0
    forbidden: int = 0
    runs_valid: int = 0
    runs_total: int = 0
    latencies: list[float] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0

    def add(self, other: Tally) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))


def _ratio(numerator: int, denominator: int) -> float:
    return 1.0 if denominator == 0 else round(numerator / denominator, 4)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 1)


def _ids(value: Any) -> set[str]:
    """The ids a field names: an entity reference's id, a list's members', or the value itself."""
    if isinstance(value, dict):
        return {str(value["id"])} if "id" in value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_ids(item) for item in value)) if value else set()
    return set() if value is None else {str(value)}


def content_mismatches(expected: dict[str, Any], action: dict[str, Any]) -> list[str]:
    """The fields of ``action`` that do not hold what ``expected`` asks for (empty: it matches).
    Entity references and lists match when they name every expected id; other values by equality."""
    wrong = []
    for name, want in expected.items():
        if name == "type":
            continue
        have = action.get(name)
        if isinstance(want, list) or isinstance(have, dict | list):
            if not _ids(want) <= _ids(have):
                wrong.append(f"{name} {sorted(_ids(have))} (expected {sorted(_ids(want))})")
        elif str(have) != str(want):
            wrong.append(f"{name} {have!r} (expected {want!r})")
    return wrong


def _content_problems(expected_items: list[dict[str, Any]], plan: list[dict[str, Any]]) -> tuple[int, list[str]]:
    right, problems = 0, []
    for expected in expected_items:
        candidates = [action for action in plan if action.get("type") == expected["type"]]
        if not candidates:
            problems.append(f"no {expected['type']} action to check")
            continue
        misses = min((content_mismatches(expected, action) for action in candidates), key=len)
        if misses:
            problems.append(f"{expected['type']}: " + ", ".join(misses))
        else:
            right += 1
    return right, problems


def score_scenario(scenario: Scenario, outcome: dict[str, Any], tally: Tally) -> dict[str, Any]:
    """Score one scenario into ``tally``; returns the scenario's own scores and verdict."""
    expected = {(a.kind, a.entity): a for a in scenario.alerts}
    raised = {(a["kind"], a["entity"]): a for a in outcome["alerts"]}
    tp = [key for key in expected if key in raised]
    fp = [key for key in raised if key not in expected]
    fn = [key for key in expected if key not in raised]
    severity_wrong = [
        key for key in tp if expected[key].severity is not None and raised[key]["severity"] != expected[key].severity
    ]
    runs = {run["kind"]: run for run in outcome["runs"]}
    own = Tally(tp=len(tp), fp=len(fp), fn=len(fn))
    problems: list[str] = [f"missed {k}:{e}" for k, e in fn] + [f"unexpected {k}:{e}" for k, e in fp]
    problems += [f"severity of {k}:{e} is {raised[(k, e)]['severity']}" for k, e in severity_wrong]
    if outcome.get("timed_out"):
        problems.append(f"timed out after {outcome['seconds']:.0f} s")
    for kind, _entity in tp:
        run = runs.get(kind) or {}
        if kind in scenario.root_causes:
            own.causes_total += 1
            if run.get("root_cause") == scenario.root_causes[kind]:
                own.causes_right += 1
            else:
                problems.append(
                    f"root cause {run.get('root_cause')} for {kind} (expected {scenario.root_causes[kind]})"
                )
        if kind in scenario.evidence:
            named = set(run.get("evidence_ids") or [])
            missing = [item for item in scenario.evidence[kind] if item not in named]
            own.key_total += len(scenario.evidence[kind])
            own.key_cited += len(scenario.evidence[kind]) - len(missing)
            if missing:
                problems.append(f"key evidence not cited for {kind}: {', '.join(missing)}")
        if kind in scenario.actions:
            own.actions_total += 1
            planned = [action.get("type") for action in run.get("plan") or []]
            if set(scenario.actions[kind]) <= set(planned):
                own.actions_right += 1
            else:
                problems.append(f"actions {planned} for {kind} (expected {scenario.actions[kind]})")
        if kind in scenario.action_content:
            right, wrong = _content_problems(scenario.action_content[kind], run.get("plan") or [])
            own.content_total += len(scenario.action_content[kind])
            own.content_right += right
            problems += [f"action content for {kind}: {item}" for item in wrong]
    for run in outcome["runs"]:
        cited: list[str] = run.get("evidence_ids") or []
        unknown: set[str] = set(run.get("unknown_evidence") or [])
        own.cited_total += len(cited)
        own.cited_valid += sum(1 for item in cited if item not in unknown)
        if unknown:
            problems.append(f"cited evidence that does not exist: {', '.join(sorted(unknown))}")
        taken = [
            action.get("type") for action in run.get("plan") or [] if action.get("type") in scenario.forbidden_actions
        ]
        own.forbidden += len(taken)
        problems += [f"forbidden action {action}" for action in taken]
        if run["status"] not in OK_RUN_STATUSES:
            problems.append(f"run {run['kind']} {run['status']}: {run['error']}")
    own.runs_valid = sum(1 for run in outcome["runs"] if run["status"] in OK_RUN_STATUSES)
    own.runs_total = len(outcome["runs"])
    own.latencies = [float(run["latency_ms"]) for run in outcome["runs"] if run["latency_ms"] is not None]
    own.tokens_in = sum(int(run["tokens_in"] or 0) for run in outcome["runs"])
    own.tokens_out = sum(int(run["tokens_out"] or 0) for run in outcome["runs"])
    tally.add(own)
    return {
        "passed": not problems,
        "problems": problems,
        "scores": {
            "tp": own.tp,
            "fp": own.fp,
            "fn": own.fn,
            "root_causes": f"{own.causes_right}/{own.causes_total}",
            "key_evidence": f"{own.key_cited}/{own.key_total}",
            "evidence_valid": f"{own.cited_valid}/{own.cited_total}",
            "actions": f"{own.actions_right}/{own.actions_total}",
            "action_content": f"{own.content_right}/{own.content_total}",
            "forbidden": own.forbidden,
            "valid_runs": f"{own.runs_valid}/{own.runs_total}",
        },
        "latency_ms": max(own.latencies) if own.latencies else None,
        "tokens_in": own.tokens_in,
        "tokens_out": own.tokens_out,
    }


def aggregate(tally: Tally, passed: int, total: int) -> dict[str, Any]:
    return {
        "precision": _ratio(tally.tp, tally.tp + tally.fp),
        "recall": _ratio(tally.tp, tally.tp + tally.fn),
        "root_cause_accuracy": _ratio(tally.causes_right, tally.causes_total),
        "key_evidence": _ratio(tally.key_cited, tally.key_total),
        "evidence_validity": _ratio(tally.cited_valid, tally.cited_total),
        "action_match": _ratio(tally.actions_right, tally.actions_total),
        "action_content": _ratio(tally.content_right, tally.content_total),
        "forbidden_actions": tally.forbidden,
        "contract_validity": _ratio(tally.runs_valid, tally.runs_total),
        "latency_p50_ms": _percentile(tally.latencies, 0.5),
        "latency_p95_ms": _percentile(tally.latencies, 0.95),
        "tokens_in": tally.tokens_in,
        "tokens_out": tally.tokens_out,
        "scenarios_passed": passed,
        "scenarios": total,
    }


def below_floors(by_suite: dict[str, dict[str, Any]], floors: dict[str, dict[str, float]]) -> list[str]:
    """Each suite's rates under its floor (``floors[suite]`` over ``floors["default"]``), and
    forbidden actions above their ceiling — named, e.g. "stripe: root_cause_accuracy 0.500 < floor 0.800"."""
    found = []
    for suite, scores in sorted(by_suite.items()):
        limits = {**floors.get("default", {}), **floors.get(suite, {})}
        for metric, limit in limits.items():
            value = scores.get(metric)
            if value is None:
                continue
            if metric == "forbidden_actions":
                if value > limit:
                    found.append(f"{suite}: forbidden_actions {value} > ceiling {limit:g}")
            elif value < limit:
                found.append(f"{suite}: {metric} {value:.3f} < floor {limit:.3f}")
    return found


def compare(scores: dict[str, Any], baseline: dict[str, Any] | None, threshold: float) -> list[str]:
    """The regressions of ``scores`` against the pinned ``baseline``'s (empty: none or no baseline)."""
    if baseline is None:
        return []
    found = []
    for rate in RATES:
        before, after = baseline.get(rate), scores.get(rate)
        if before is not None and after is not None and after < before - threshold:
            found.append(f"{rate} fell from {before:.3f} to {after:.3f}")
    if scores.get("forbidden_actions", 0) > (baseline.get("forbidden_actions") or 0):
        found.append(f"forbidden actions rose from {baseline.get('forbidden_actions') or 0} "
                     f"to {scores['forbidden_actions']}")  # fmt: skip
    return found


def diff_scenarios(results: list[dict[str, Any]], baseline: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Per scenario, against the baseline's result of the same name: improved / regressed /
    unchanged / new, with the scores that changed and the problems gained and lost."""
    out = []
    for result in results:
        before = (baseline or {}).get(result["scenario"])
        if before is None:
            out.append({"scenario": result["scenario"], "change": "new", "fields": {}, "gained": [], "lost": []})
            continue
        fields_changed = {
            name: [before["scores"].get(name), value]
            for name, value in result["scores"].items()
            if before["scores"].get(name) != value
        }
        gained = [p for p in result["problems"] if p not in before["problems"]]
        lost = [p for p in before["problems"] if p not in result["problems"]]
        if result["passed"] != before["passed"]:
            change = "improved" if result["passed"] else "regressed"
        elif gained and not lost:
            change = "regressed"
        elif lost and not gained:
            change = "improved"
        elif gained or lost or fields_changed:
            change = "changed"
        else:
            change = "unchanged"
        out.append({"scenario": result["scenario"], "change": change, "fields": fields_changed, "gained": gained,
                    "lost": lost})  # fmt: skip
    return out
