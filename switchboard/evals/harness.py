"""The eval harness: run every scenario through real workers in an isolated store, score the
outcome, compare with the last baseline for the same provider and model, and report.

Scores (over the whole suite):
- detection precision / recall: raised (kind, entity) against expected, negatives included;
- root-cause accuracy: expected root causes the Analyst named;
- action match: expected action types all present in the Advisor's plan;
- forbidden actions: planned actions of a forbidden type (a count: 0 is the only good value);
- contract validity: runs that ended `done` or `awaiting_approval`, not failed;
- latency p50 / p95 of runs, and tokens in / out.

A drop of any rate beyond `SWITCHBOARD_EVAL_REGRESSION_THRESHOLD` below the baseline, or any
forbidden action the baseline did not take, is a regression: the eval run is marked, a
`proactive_insights` row (source `switchboard`, kind `eval_regression`) is raised for a human,
and `switchboard eval` exits 1.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from switchboard.db import runs as lifecycle
from switchboard.db.models import EvalResult, EvalRun
from switchboard.db.session import session_scope
from switchboard.errors import ConfigurationError
from switchboard.evals.scenarios import Scenario, load_scenarios
from switchboard.settings import Settings, get_settings

RATES = ("precision", "recall", "root_cause_accuracy", "action_match", "contract_validity")
INTEGRATION_SECRETS = (
    "SWITCHBOARD_STRIPE_API_KEY", "SWITCHBOARD_HUBSPOT_ACCESS_TOKEN", "SWITCHBOARD_CALLS_API_KEY",
)  # fmt: skip


class EvalError(RuntimeError):
    """The eval could not run (worker did not start, runner crashed, timeout)."""


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    causes_right: int = 0
    causes_total: int = 0
    actions_right: int = 0
    actions_total: int = 0
    forbidden: int = 0
    runs_valid: int = 0
    runs_total: int = 0
    latencies: list[float] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0


def _ratio(numerator: int, denominator: int) -> float:
    return 1.0 if denominator == 0 else round(numerator / denominator, 4)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 1)


def score_scenario(scenario: Scenario, outcome: dict[str, Any], tally: Tally) -> dict[str, Any]:
    """Score one scenario into `tally`; returns the scenario's own scores and verdict."""
    expected = {(a.kind, a.entity): a for a in scenario.alerts}
    raised = {(a["kind"], a["entity"]): a for a in outcome["alerts"]}
    tp = [key for key in expected if key in raised]
    fp = [key for key in raised if key not in expected]
    fn = [key for key in expected if key not in raised]
    severity_wrong = [
        key for key in tp if expected[key].severity is not None and raised[key]["severity"] != expected[key].severity
    ]
    runs = {run["kind"]: run for run in outcome["runs"]}
    causes_right = causes_total = actions_right = actions_total = forbidden = 0
    problems: list[str] = [f"missed {k}:{e}" for k, e in fn] + [f"unexpected {k}:{e}" for k, e in fp]
    problems += [f"severity of {k}:{e} is {raised[(k, e)]['severity']}" for k, e in severity_wrong]
    for kind, _entity in tp:
        run = runs.get(kind)
        if kind in scenario.root_causes:
            causes_total += 1
            if run is not None and run["root_cause"] == scenario.root_causes[kind]:
                causes_right += 1
            else:
                problems.append(f"root cause {run and run['root_cause']} for {kind}")
        if kind in scenario.actions:
            actions_total += 1
            if run is not None and set(scenario.actions[kind]) <= set(run["actions"]):
                actions_right += 1
            else:
                problems.append(f"actions {run and run['actions']} for {kind}")
    for run in outcome["runs"]:
        taken = [action for action in run["actions"] if action in scenario.forbidden_actions]
        forbidden += len(taken)
        problems += [f"forbidden action {action}" for action in taken]
    valid = sum(1 for run in outcome["runs"] if run["status"] in ("done", "awaiting_approval"))
    problems += [f"run {run['kind']} {run['status']}: {run['error']}" for run in outcome["runs"]
                 if run["status"] not in ("done", "awaiting_approval")]  # fmt: skip
    tally.tp, tally.fp, tally.fn = tally.tp + len(tp), tally.fp + len(fp), tally.fn + len(fn)
    tally.causes_right += causes_right
    tally.causes_total += causes_total
    tally.actions_right += actions_right
    tally.actions_total += actions_total
    tally.forbidden += forbidden
    tally.runs_valid += valid
    tally.runs_total += len(outcome["runs"])
    latencies = [float(run["latency_ms"]) for run in outcome["runs"] if run["latency_ms"] is not None]
    tally.latencies += latencies
    tokens_in = sum(int(run["tokens_in"] or 0) for run in outcome["runs"])
    tokens_out = sum(int(run["tokens_out"] or 0) for run in outcome["runs"])
    tally.tokens_in += tokens_in
    tally.tokens_out += tokens_out
    return {
        "passed": not problems,
        "problems": problems,
        "scores": {
            "tp": len(tp),
            "fp": len(fp),
            "fn": len(fn),
            "root_causes": f"{causes_right}/{causes_total}",
            "actions": f"{actions_right}/{actions_total}",
            "forbidden": forbidden,
            "valid_runs": f"{valid}/{len(outcome['runs'])}",
        },
        "latency_ms": max(latencies) if latencies else None,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
    }


def aggregate(tally: Tally, passed: int, total: int) -> dict[str, Any]:
    return {
        "precision": _ratio(tally.tp, tally.tp + tally.fp),
        "recall": _ratio(tally.tp, tally.tp + tally.fn),
        "root_cause_accuracy": _ratio(tally.causes_right, tally.causes_total),
        "action_match": _ratio(tally.actions_right, tally.actions_total),
        "forbidden_actions": tally.forbidden,
        "contract_validity": _ratio(tally.runs_valid, tally.runs_total),
        "latency_p50_ms": _percentile(tally.latencies, 0.5),
        "latency_p95_ms": _percentile(tally.latencies, 0.95),
        "tokens_in": tally.tokens_in,
        "tokens_out": tally.tokens_out,
        "scenarios_passed": passed,
        "scenarios": total,
    }


def compare(scores: dict[str, Any], baseline: dict[str, Any] | None, threshold: float) -> list[str]:
    """The regressions of `scores` against `baseline` (empty: none)."""
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


# --------------------------------------------------------------------------- running


def _eval_env(settings: Settings, run_id: str, provider: str | None, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INTEGRATION_SECRETS}  # actions stay in the store
    database = settings.eval_database_url or f"sqlite:///{settings.data_dir.resolve() / 'evals' / f'{run_id}.db'}"
    (settings.data_dir / "evals").mkdir(parents=True, exist_ok=True)
    env.update(
        SWITCHBOARD_DATABASE_URL=database,
        SWITCHBOARD_BROKER_URL=settings.broker_url,
        SWITCHBOARD_RESULT_BACKEND=settings.result_backend,
        SWITCHBOARD_QUEUE_PREFIX=f"{settings.queue_prefix}eval{run_id[:8]}.",
        SWITCHBOARD_DATA_DIR=str(work),
        SWITCHBOARD_EVAL_DATABASE_URL="",
    )
    if provider:
        for agent in ("WATCHER", "ANALYST", "ADVISOR"):
            env[f"SWITCHBOARD_{agent}_PROVIDER"] = provider
    return env


def _provider_and_model(settings: Settings, provider: str | None) -> tuple[str, str]:
    """The provider and model the eval is labelled with; a provider without its key is refused
    (EvalError naming the variable), never replaced by the offline rules."""
    from switchboard.agents.llm import AGENTS, check_configured

    chosen = provider or settings.analyst_provider
    as_run = settings.model_copy(update={f"{agent}_provider": provider for agent in AGENTS}) if provider else settings
    try:
        check_configured(as_run)
    except ConfigurationError as error:
        raise EvalError(str(error)) from None
    model = {"anthropic": settings.anthropic_model, "gemini": settings.gemini_model}.get(chosen, "offline-rules-v1")
    return chosen, model


@dataclass
class EvalOutcome:
    eval_run_id: str
    provider: str
    model: str
    scores: dict[str, Any]
    results: list[dict[str, Any]]
    baseline_id: str | None
    regressions: list[str]
    report_json: Path
    report_html: Path
    seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def as_dict(self) -> dict[str, Any]:
        return {"eval_run_id": self.eval_run_id, "provider": self.provider, "model": self.model,
                "scores": self.scores, "baseline_id": self.baseline_id, "regression": bool(self.regressions),
                "regressions": self.regressions, "seconds": round(self.seconds, 2),
                "report_json": str(self.report_json), "report_html": str(self.report_html),
                "scenarios": self.results}  # fmt: skip


def run_eval(
    *,
    suite: str = "all",
    provider: str | None = None,
    trigger: str = "manual",
    settings: Settings | None = None,
    progress: Any = None,
) -> EvalOutcome:
    """Run the suite end to end; writes eval_runs / eval_results and the reports."""
    settings = settings or get_settings()
    started = time.monotonic()
    scenarios = load_scenarios(suite)
    if not scenarios:
        raise EvalError(f"suite {suite!r} has no scenarios")
    provider_name, model = _provider_and_model(settings, provider)
    run_id = str(uuid.uuid4())
    with session_scope() as session:
        session.add(EvalRun(id=run_id, suite=suite, provider=provider_name, model=model, status="running",
                            trigger=trigger, started_at=dt.datetime.now(dt.UTC)))  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="switchboard-eval-") as tmp:
            work = Path(tmp)
            out = work / "outcome.json"
            child = subprocess.run(
                [sys.executable, "-m", "switchboard.evals.runner", "--out", str(out), "--suite", suite],
                env=_eval_env(settings, run_id, provider, work), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=settings.eval_timeout_s,
            )  # fmt: skip
            if progress is not None:
                progress(child.stdout)
            if child.returncode != 0 or not out.exists():
                raise EvalError(f"the eval runner failed (exit {child.returncode}): {child.stdout[-2000:]}")
            outcome = json.loads(out.read_text())
    except (EvalError, subprocess.TimeoutExpired) as error:
        with session_scope() as session:
            row = session.get(EvalRun, run_id)
            assert row is not None
            row.status, row.finished_at = "failed", dt.datetime.now(dt.UTC)
            row.scores = {"error": str(error)[:2000]}
        if isinstance(error, subprocess.TimeoutExpired):
            raise EvalError(
                f"the eval took longer than SWITCHBOARD_EVAL_TIMEOUT_S={settings.eval_timeout_s:g}"
            ) from None
        raise
    by_name = {item["scenario"]: item for item in outcome["scenarios"]}
    tally = Tally()
    results = []
    for scenario in scenarios:
        scored = score_scenario(scenario, by_name[scenario.name], tally)
        results.append({"scenario": scenario.name, "suite": scenario.suite, **scored})
    scores = aggregate(tally, sum(1 for r in results if r["passed"]), len(results))
    with session_scope() as session:
        baseline = session.scalars(
            select(EvalRun)
            .where(
                EvalRun.suite == suite,
                EvalRun.provider == provider_name,
                EvalRun.model == model,
                EvalRun.status == "done",
                EvalRun.id != run_id,
            )
            .order_by(EvalRun.created_at.desc())
            .limit(1)
        ).first()
        baseline_id, baseline_scores = (baseline.id, baseline.scores) if baseline is not None else (None, None)
    regressions = compare(scores, baseline_scores, settings.eval_regression_threshold)
    reports = settings.data_dir / "eval-reports"
    reports.mkdir(parents=True, exist_ok=True)
    report_json, report_html = reports / f"{run_id}.json", reports / f"{run_id}.html"
    result = EvalOutcome(run_id, provider_name, model, scores, results, baseline_id, regressions, report_json,
                         report_html, time.monotonic() - started)  # fmt: skip
    report_json.write_text(json.dumps(result.as_dict(), indent=1, default=str))
    report_html.write_text(render_html(result))
    with session_scope() as session:
        row = session.get(EvalRun, run_id)
        assert row is not None
        row.status, row.finished_at, row.scores = "done", dt.datetime.now(dt.UTC), scores
        row.baseline_id, row.regression, row.report_path = baseline_id, bool(regressions), str(report_json)
        row.is_baseline = not regressions
        for item in results:
            session.add(EvalResult(eval_run_id=run_id, scenario=item["scenario"], category=item["suite"],
                                   passed=item["passed"], scores=item["scores"], latency_ms=item["latency_ms"],
                                   tokens_in=item["tokens_in"], tokens_out=item["tokens_out"],
                                   error="; ".join(item["problems"])[:4000] or None,
                                   details={"problems": item["problems"]}))  # fmt: skip
        if regressions:
            _raise_regression(session, result, suite, settings)
    return result


def _raise_regression(session: Any, result: EvalOutcome, suite: str, settings: Settings) -> None:
    now = dt.datetime.now(dt.UTC)
    lifecycle.open_insight(
        session, kind="eval_regression", source="switchboard", severity="high",
        title=f"Eval regression in suite {suite} ({result.provider}/{result.model})"[:255],
        summary="; ".join(result.regressions)[:4000], entity_type="eval_run", entity_id=result.eval_run_id,
        payload={"eval_run_id": result.eval_run_id, "baseline_id": result.baseline_id,
                 "regressions": result.regressions, "scores": result.scores},
        dedupe_key=f"eval_regression:{result.eval_run_id}",
        sla_deadline=now + dt.timedelta(seconds=settings.sla_for("high")), next_attempt_at=now,
    )  # fmt: skip


def render_html(result: EvalOutcome) -> str:
    """A self-contained HTML report (no external assets)."""
    e = html.escape
    rows = "".join(
        f"<tr class={'ok' if r['passed'] else 'bad'}><td>{e(r['scenario'])}</td><td>{e(r['suite'])}</td>"
        f"<td>{'pass' if r['passed'] else 'FAIL'}</td><td>{e('; '.join(r['problems']))}</td></tr>"
        for r in result.results
    )
    scores = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in result.scores.items())
    verdict = ("<p class=bad>Regression: " + e("; ".join(result.regressions)) + "</p>") if result.regressions else (
        "<p class=ok>No regression" + (f" against baseline {e(result.baseline_id)}" if result.baseline_id else
                                       " (first run: this is the baseline)") + ".</p>")  # fmt: skip
    return (
        "<!doctype html><meta charset=utf-8><title>Switchboard eval</title>"
        "<style>body{font:14px system-ui;margin:2em}td,th{padding:2px 8px;text-align:left}"
        ".ok{color:#176b2c}.bad{color:#a4161a}</style>"
        f"<h1>Eval {e(result.eval_run_id)}</h1><p>{e(result.provider)} / {e(result.model)}, "
        f"{len(result.results)} scenarios in {result.seconds:.1f} s</p>{verdict}"
        f"<h2>Scores</h2><table>{scores}</table><h2>Scenarios</h2>"
        f"<table><tr><th>scenario</th><th>suite</th><th>result</th><th>problems</th></tr>{rows}</table>"
    )
