"""The eval harness: run the scenarios through real workers in isolated stores, score them
(`scoring.py`), hold them to the floors and the pinned baseline, record and report.

Scenarios run in lanes (`SWITCHBOARD_EVAL_CONCURRENCY`): each lane is a runner process with a
store, queue prefix and worker of its own, taking its share of the scenarios one after another,
each within `SWITCHBOARD_EVAL_SCENARIO_TIMEOUT_S`. A regression (a floor missed, or a fall
against the pinned baseline) raises an `eval_regression` insight and exits 1; an eval that could
not run (a lane crashed, the whole eval over `SWITCHBOARD_EVAL_TIMEOUT_S`) is recorded failed,
raises an `eval_failed` insight and exits 2. Either insight is for a person: the orchestrator
never dispatches insights of source `switchboard` to the agents.

The baseline is pinned by a person (`switchboard eval baseline set EVAL_RUN_ID`), per suite; a
run never moves it, so slow drift keeps being measured against the same reference.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from switchboard.db import runs as lifecycle
from switchboard.db.ids import resolve
from switchboard.db.models import EvalResult, EvalRun
from switchboard.db.session import session_scope
from switchboard.errors import ConfigurationError, InvalidState
from switchboard.evals.judge import judge_all
from switchboard.evals.scenarios import Scenario, ScenarioError, load_scenarios
from switchboard.evals.scoring import Tally, aggregate, below_floors, compare, diff_scenarios, score_scenario
from switchboard.processes import stop_group
from switchboard.settings import Settings, get_settings

INTEGRATION_SECRETS = (
    "SWITCHBOARD_STRIPE_API_KEY", "SWITCHBOARD_HUBSPOT_ACCESS_TOKEN", "SWITCHBOARD_CALLS_API_KEY",
)  # fmt: skip


class EvalError(RuntimeError):
    """The eval could not run (a lane's worker did not start, a runner crashed, the timeout)."""


# --------------------------------------------------------------------------- the pinned baseline


@dataclass(frozen=True)
class Baseline:
    eval_run_id: str
    suite: str
    provider: str
    model: str | None
    scores: dict[str, Any]
    pinned_by: str | None
    pinned_at: dt.datetime | None
    results: dict[str, dict[str, Any]]  # scenario → {"passed", "scores", "problems"}


def pinned_baseline(session: Any, suite: str) -> Baseline | None:
    row = session.scalars(select(EvalRun).where(EvalRun.suite == suite, EvalRun.is_baseline.is_(True))).first()
    if row is None:
        return None
    results = {
        item.scenario: {"passed": item.passed, "scores": item.scores or {},
                        "problems": (item.details or {}).get("problems") or []}
        for item in session.scalars(select(EvalResult).where(EvalResult.eval_run_id == row.id))
    }  # fmt: skip
    return Baseline(row.id, row.suite, row.provider, row.model, row.scores or {}, row.baseline_pinned_by,
                    row.baseline_pinned_at, results)  # fmt: skip


def pin_baseline(eval_run_id: str, *, by: str, now: dt.datetime | None = None) -> EvalRun:
    """Make a finished eval run its suite's baseline (the previous one is unpinned)."""
    with session_scope() as session:
        row = session.get(EvalRun, resolve(EvalRun, eval_run_id, "eval run", session))
        assert row is not None
        if row.status != "done":
            raise InvalidState(f"eval run {row.id} is {row.status}: only a finished run can be the baseline")
        session.execute(update(EvalRun).where(EvalRun.suite == row.suite, EvalRun.id != row.id).values(
            is_baseline=False, baseline_pinned_by=None, baseline_pinned_at=None))  # fmt: skip
        row.is_baseline, row.baseline_pinned_by = True, by[:64]
        row.baseline_pinned_at = now or dt.datetime.now(dt.UTC)
        session.flush()
        session.expunge(row)
        return row


# --------------------------------------------------------------------------- running


def _lane_env(
    settings: Settings, database: str, prefix: str, provider: str | None, work: Path, batch: bool
) -> dict[str, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in INTEGRATION_SECRETS}  # actions stay in the store
    if batch:
        env["SWITCHBOARD_ANTHROPIC_BATCH"] = "true"
    env.update(
        SWITCHBOARD_DATABASE_URL=database,
        SWITCHBOARD_BROKER_URL=settings.broker_url,
        SWITCHBOARD_RESULT_BACKEND=settings.result_backend,
        SWITCHBOARD_QUEUE_PREFIX=prefix,
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


def _lanes(scenarios: list[Scenario], settings: Settings) -> list[list[Scenario]]:
    """The scenarios dealt round-robin into lanes; one lane when the eval store is a configured
    database (each scenario empties it, so two cannot share it)."""
    count = 1 if settings.eval_database_url else max(1, min(settings.eval_concurrency, len(scenarios)))
    return [scenarios[index::count] for index in range(count)]


def _run_lanes(
    lanes: list[list[Scenario]], settings: Settings, run_id: str, provider: str | None, scenario_dir: Path | None,
    progress: Any, batch: bool,
) -> list[dict[str, Any]]:  # fmt: skip
    (settings.data_dir / "evals").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="switchboard-eval-") as tmp:
        started = []
        for index, lane in enumerate(lanes):
            work = Path(tmp) / f"lane{index}"
            work.mkdir()
            database = settings.eval_database_url or (
                f"sqlite:///{settings.data_dir.resolve() / 'evals' / f'{run_id}-{index}.db'}"
            )
            prefix = f"{settings.queue_prefix}eval{run_id[:8]}.{index}."
            command = [sys.executable, "-m", "switchboard.evals.runner", "--out", str(work / "outcome.json"),
                       "--scenario-timeout", str(settings.eval_scenario_timeout_s)]  # fmt: skip
            if scenario_dir is not None:
                command += ["--scenarios", str(scenario_dir)]
            for scenario in lane:
                command += ["--scenario", scenario.name]
            log = (work / "runner.log").open("w")
            env = _lane_env(settings, database, prefix, provider, work, batch)
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)  # fmt: skip
            started.append((process, work, log))
        deadline = time.monotonic() + settings.eval_timeout_s
        try:
            for process, _, _ in started:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise EvalError(
                f"the eval took longer than SWITCHBOARD_EVAL_TIMEOUT_S={settings.eval_timeout_s:g}"
            ) from None
        finally:
            for process, _, log in started:
                if process.poll() is None:
                    stop_group(process)
                log.close()
        outcomes: list[dict[str, Any]] = []
        for index, (process, work, _) in enumerate(started):
            text = (work / "runner.log").read_text(errors="replace")
            if progress is not None:
                progress(text)
            out = work / "outcome.json"
            if process.returncode != 0 or not out.exists():
                raise EvalError(f"eval lane {index} failed (exit {process.returncode}): {text[-2000:]}")
            outcomes += json.loads(out.read_text())["scenarios"]
        return outcomes


@dataclass
class EvalOutcome:
    eval_run_id: str
    suite: str
    provider: str
    model: str
    scores: dict[str, Any]
    by_suite: dict[str, dict[str, Any]]
    results: list[dict[str, Any]]
    baseline_id: str | None
    floors_missed: list[str]
    regressions: list[str]  # floors missed, then falls against the baseline
    diff: list[dict[str, Any]]
    report_json: Path
    report_html: Path
    seconds: float
    batch: bool = False
    judge: dict[str, Any] | None = None  # the narrative judge's summary, apart from the exact-match scores

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def as_dict(self) -> dict[str, Any]:
        return {"eval_run_id": self.eval_run_id, "suite": self.suite, "provider": self.provider, "model": self.model,
                "scores": self.scores, "by_suite": self.by_suite, "baseline_id": self.baseline_id,
                "regression": bool(self.regressions), "floors_missed": self.floors_missed,
                "regressions": self.regressions, "diff": self.diff, "seconds": round(self.seconds, 2),
                "batch": self.batch, "judge": self.judge,
                "report_json": str(self.report_json), "report_html": str(self.report_html),
                "scenarios": self.results}  # fmt: skip


def run_eval(
    *,
    suite: str = "all",
    provider: str | None = None,
    trigger: str = "manual",
    settings: Settings | None = None,
    scenario_dir: Path | None = None,
    batch: bool | None = None,
    only: list[str] | None = None,
    progress: Any = None,
) -> EvalOutcome:
    """Run the suite end to end; writes eval_runs / eval_results and the reports. Raises
    EvalError (after recording the failure and raising an insight) when it could not run."""
    settings = settings or get_settings()
    batch = settings.eval_batch if batch is None else batch  # Claude turns through Message Batches
    started = time.monotonic()
    scenario_dir = scenario_dir or settings.eval_scenarios_dir
    scenarios = load_scenarios(suite, extra=scenario_dir)
    if only:
        unknown = sorted(set(only) - {s.name for s in scenarios})
        if unknown:
            raise ScenarioError(f"no scenario {', '.join(unknown)} in suite {suite}")
        scenarios = [s for s in scenarios if s.name in only]
    if not scenarios:
        raise EvalError(f"suite {suite!r} has no scenarios")
    provider_name, model = _provider_and_model(settings, provider)
    run_id = str(uuid.uuid4())
    with session_scope() as session:
        session.add(EvalRun(id=run_id, suite=suite, provider=provider_name, model=model, status="running",
                            trigger=trigger, started_at=dt.datetime.now(dt.UTC)))  # fmt: skip
    try:
        outcomes = _run_lanes(_lanes(scenarios, settings), settings, run_id, provider, scenario_dir, progress, batch)
    except EvalError as error:
        _record_failure(run_id, suite, provider_name, model, str(error), settings)
        raise
    by_name = {item["scenario"]: item for item in outcomes}
    judged, judge_summary = judge_all(scenarios, by_name, run_id, settings)
    overall, suites = Tally(), {name: Tally() for name in sorted({s.suite for s in scenarios})}
    results = []
    for scenario in scenarios:
        own = Tally()
        scored = score_scenario(scenario, by_name[scenario.name], own)
        overall.add(own)
        suites[scenario.suite].add(own)
        results.append({"scenario": scenario.name, "suite": scenario.suite, **scored,
                        "judge": judged.get(scenario.name)})  # fmt: skip
    scores = aggregate(overall, sum(1 for r in results if r["passed"]), len(results))
    by_suite = {
        name: aggregate(tally, sum(1 for r in results if r["passed"] and r["suite"] == name),
                        sum(1 for r in results if r["suite"] == name))
        for name, tally in suites.items()
    }  # fmt: skip
    with session_scope() as session:
        baseline = pinned_baseline(session, suite)
    floors_missed = below_floors(by_suite, settings.eval_floors)
    regressions = floors_missed + compare(scores, baseline.scores if baseline else None,
                                          settings.eval_regression_threshold)  # fmt: skip
    diff = diff_scenarios(results, baseline.results if baseline else None)
    reports = settings.data_dir / "eval-reports"
    reports.mkdir(parents=True, exist_ok=True)
    report_json, report_html = reports / f"{run_id}.json", reports / f"{run_id}.html"
    result = EvalOutcome(run_id, suite, provider_name, model, scores, by_suite, results,
                         baseline.eval_run_id if baseline else None, floors_missed, regressions, diff, report_json,
                         report_html, time.monotonic() - started, batch, judge_summary)  # fmt: skip
    report_json.write_text(json.dumps(result.as_dict(), indent=1, default=str))
    report_html.write_text(render_html(result))
    changes = {item["scenario"]: item for item in diff}
    with session_scope() as session:
        row = session.get(EvalRun, run_id)
        assert row is not None
        row.status, row.finished_at, row.scores = (
            "done",
            dt.datetime.now(dt.UTC),
            {**scores, "by_suite": by_suite, "batch": batch, "judge": judge_summary},
        )
        row.baseline_id, row.regression, row.report_path = result.baseline_id, bool(regressions), str(report_json)
        for item in results:
            session.add(EvalResult(eval_run_id=run_id, scenario=item["scenario"], category=item["suite"],
                                   passed=item["passed"], scores=item["scores"], latency_ms=item["latency_ms"],
                                   tokens_in=item["tokens_in"], tokens_out=item["tokens_out"],
                                   error="; ".join(item["problems"])[:4000] or None,
                                   details={"problems": item["problems"], "diff": changes[item["scenario"]],
                                            "judge": item["judge"]}))  # fmt: skip
        if regressions:
            _raise(session, "eval_regression", result.eval_run_id, settings,
                   title=f"Eval regression in suite {suite} ({provider_name}/{model})",
                   summary="; ".join(regressions),
                   payload={"eval_run_id": run_id, "baseline_id": result.baseline_id, "regressions": regressions,
                            "floors_missed": floors_missed, "scores": scores})  # fmt: skip
    return result


def _record_failure(run_id: str, suite: str, provider: str, model: str, error: str, settings: Settings) -> None:
    with session_scope() as session:
        row = session.get(EvalRun, run_id)
        assert row is not None
        row.status, row.finished_at = "failed", dt.datetime.now(dt.UTC)
        row.scores = {"error": error[:2000]}
        _raise(session, "eval_failed", run_id, settings, title=f"Eval of suite {suite} failed ({provider}/{model})",
               summary=error, payload={"eval_run_id": run_id, "error": error[:2000]})  # fmt: skip


def _raise(session: Any, kind: str, eval_run_id: str, settings: Settings, *, title: str, summary: str,
           payload: dict[str, Any]) -> None:  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    lifecycle.open_insight(
        session, kind=kind, source="switchboard", severity="high", title=title[:255], summary=summary[:4000],
        entity_type="eval_run", entity_id=eval_run_id, payload=payload, dedupe_key=f"{kind}:{eval_run_id}",
        sla_deadline=now + dt.timedelta(seconds=settings.sla_for("high")), next_attempt_at=now,
    )  # fmt: skip


def render_html(result: EvalOutcome) -> str:
    """A self-contained HTML report (no external assets)."""
    e = html.escape
    changes = {item["scenario"]: item for item in result.diff}

    def change(name: str) -> str:
        item = changes.get(name) or {}
        detail = "; ".join([*(f"+ {p}" for p in item.get("gained", [])), *(f"- {p}" for p in item.get("lost", []))])
        return f"<td class={e(item.get('change', ''))}>{e(item.get('change', ''))}</td><td>{e(detail)}</td>"

    rows = "".join(
        f"<tr class={'ok' if r['passed'] else 'bad'}><td>{e(r['scenario'])}</td><td>{e(r['suite'])}</td>"
        f"<td>{'pass' if r['passed'] else 'FAIL'}</td><td>{e('; '.join(r['problems']))}</td>"
        f"{change(r['scenario'])}</tr>"
        for r in result.results
    )
    names = list(result.scores)
    head = "".join(f"<th>{e(name)}</th>" for name in names)
    scores = "".join(
        f"<tr><th>{e(label)}</th>" + "".join(f"<td>{e(str(values.get(name, '')))}</td>" for name in names) + "</tr>"
        for label, values in [("all", result.scores), *result.by_suite.items()]
    )
    if result.regressions:
        verdict = "<p class=bad>Regression: " + e("; ".join(result.regressions)) + "</p>"
    else:
        against = f" against baseline {e(result.baseline_id)}" if result.baseline_id else " (no baseline pinned)"
        verdict = f"<p class=ok>Every floor met, no regression{against}.</p>"
    return (
        "<!doctype html><meta charset=utf-8><title>Switchboard eval</title>"
        "<style>body{font:14px system-ui;margin:2em}td,th{padding:2px 8px;text-align:left}"
        ".ok,.improved{color:#176b2c}.bad,.regressed{color:#a4161a}</style>"
        f"<h1>Eval {e(result.eval_run_id)}</h1><p>{e(result.provider)} / {e(result.model)}, "
        f"{len(result.results)} scenarios in {result.seconds:.1f} s</p>{verdict}"
        f"<h2>Scores</h2><table><tr><th></th>{head}</tr>{scores}</table>{_judge_html(result.judge)}<h2>Scenarios</h2>"
        "<table><tr><th>scenario</th><th>suite</th><th>result</th><th>problems</th><th>vs baseline</th>"
        f"<th>changed</th></tr>{rows}</table>"
    )


def _judge_html(judge: dict[str, Any] | None) -> str:
    if not judge or not judge.get("narratives"):
        return ""
    e = html.escape
    rows = "".join(f"<tr><th>{e(name)}</th><td>{value}</td></tr>" for name, value in judge["by_criterion"].items())
    return (f"<h2>Narratives</h2><p>Judged by {e(str(judge['provider']))}/{e(str(judge['model']))}, apart from the "
            f"scores above: {judge['narrative_score']} of the rubric's criteria met over {judge['narratives']} "
            f"narratives.</p><table>{rows}</table>")  # fmt: skip
