"""The eval harness end to end: `switchboard eval` through real workers on Postgres and Redis,
a deliberately broken detector flagged as a regression, and the nightly beat entry firing."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from switchboard.db.models import AgentRun, EvalResult, EvalRun, ProactiveInsight
from switchboard.db.session import session_scope
from switchboard.evals.scenarios import load_scenarios
from switchboard.settings import get_settings
from switchboard.tasks.orchestrator import poll
from tests.support.env import worker_env
from tests.support.services import DatabaseFactory


def _env(database_url: str, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return worker_env(database_url, redis_url, tmp_path, **extra)


def _eval(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switchboard", "eval", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_offline_eval_scores_every_scenario_through_real_workers(
    pg_database_factory: DatabaseFactory, redis_url: str, tmp_path: Path
) -> None:
    url = pg_database_factory.create()
    env = _env(url, redis_url, tmp_path)
    started = time.monotonic()
    completed = _eval(env, "--provider", "offline", "--json")
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    scenarios = load_scenarios()
    assert len(result["scenarios"]) == len(scenarios) >= 30
    scores = result["scores"]
    assert (scores["precision"], scores["recall"], scores["root_cause_accuracy"]) == (1.0, 1.0, 1.0)
    assert (scores["action_match"], scores["contract_validity"], scores["forbidden_actions"]) == (1.0, 1.0, 0)
    assert scores["scenarios_passed"] == len(scenarios) and result["regression"] is False
    assert elapsed < 60, f"eval took {elapsed:.1f} s"
    assert Path(result["report_json"]).exists() and "<table>" in Path(result["report_html"]).read_text()
    with session_scope(url) as session:
        run = session.get(EvalRun, result["eval_run_id"])
        assert run is not None and (run.status, run.provider, run.trigger) == ("done", "offline", "manual")
        assert session.scalar(select(func.count()).select_from(EvalResult)) == len(scenarios)
        assert session.scalar(select(func.count()).select_from(AgentRun)) == 0  # runs stayed in the eval store
    table = _eval(env, "--provider", "offline", "--suite", "calls")
    assert table.returncode == 0 and "calls_connect_rate_drop" in table.stdout and "no regression" in table.stdout
    print(f"offline eval: {len(scenarios)} scenarios in {elapsed:.1f} s (CLI wall time)")


def test_a_broken_detector_is_flagged_as_a_regression(
    pg_database_factory: DatabaseFactory, redis_url: str, tmp_path: Path
) -> None:
    url = pg_database_factory.create()
    baseline = _eval(_env(url, redis_url, tmp_path), "--provider", "offline", "--suite", "stripe", "--json")
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    broken_env = _env(url, redis_url, tmp_path, SWITCHBOARD_DISABLED_DETECTORS="stripe_payout_mismatch")
    broken = _eval(broken_env, "--provider", "offline", "--suite", "stripe", "--json")
    assert broken.returncode == 1, broken.stdout[-3000:] + broken.stderr[-3000:]
    result = json.loads(broken.stdout)
    assert result["regression"] is True and result["baseline_id"] == json.loads(baseline.stdout)["eval_run_id"]
    assert any(line.startswith("recall fell from 1.000 to") for line in result["regressions"])
    missed = {s["scenario"] for s in result["scenarios"] if not s["passed"]}
    assert missed == {"stripe_payout_mismatch", "stripe_payout_mismatch_cents", "stripe_payout_mismatch_critical"}
    with session_scope(url) as session:
        [insight] = session.scalars(select(ProactiveInsight).where(ProactiveInsight.kind == "eval_regression")).all()
        assert (insight.source, insight.severity, insight.status) == ("switchboard", "high", "new")
        assert insight.entity_id == result["eval_run_id"] and "recall fell" in str(insight.summary)
        assert session.get(EvalRun, result["eval_run_id"]).regression is True  # type: ignore[union-attr]
    # The regression is for a human: the orchestrator never dispatches it to the agents.
    settings = get_settings().model_copy(update={"database_url": url})
    os.environ["SWITCHBOARD_DATABASE_URL"], previous = url, os.environ["SWITCHBOARD_DATABASE_URL"]
    get_settings.cache_clear()
    try:
        assert poll(settings=settings)["dispatched"] == 0
    finally:
        os.environ["SWITCHBOARD_DATABASE_URL"] = previous
        get_settings.cache_clear()


def test_nightly_beat_entry_fires_through_a_worker(
    pg_database_factory: DatabaseFactory, redis_url: str, tmp_path: Path
) -> None:
    url = pg_database_factory.create()
    now = dt.datetime.now(dt.UTC)
    fire = (now + dt.timedelta(minutes=2 if now.second > 45 else 1)).replace(second=0, microsecond=0)
    env = _env(url, redis_url, tmp_path, SWITCHBOARD_EVAL_CRON_HOUR=str(fire.hour),
               SWITCHBOARD_EVAL_CRON_MINUTE=str(fire.minute), SWITCHBOARD_EVAL_PROVIDER="offline",
               SWITCHBOARD_WATCHER_SCAN_INTERVAL_S="3600")  # fmt: skip
    subprocess.run([sys.executable, "-m", "switchboard", "migrate"], env=env, check=True, capture_output=True)
    processes = []
    try:
        for args, log in ((["worker", "--queues", "low", "--concurrency", "1"], "worker.log"), (["beat"], "beat.log")):
            with (tmp_path / log).open("ab") as handle:
                command = [sys.executable, "-m", "switchboard", *args]
                processes.append(subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                                  start_new_session=True))  # fmt: skip
        deadline = fire + dt.timedelta(seconds=90)
        row = None
        while dt.datetime.now(dt.UTC) < deadline:
            with session_scope(url) as session:
                row = session.scalars(select(EvalRun).where(EvalRun.trigger == "nightly")).first()
                if row is not None and row.status == "done":
                    break
            time.sleep(1)
        assert row is not None and row.status == "done", (tmp_path / "worker.log").read_text()[-3000:]
        assert (row.provider, row.regression) == ("offline", False)
        started = row.started_at if row.started_at.tzinfo else row.started_at.replace(tzinfo=dt.UTC)
        assert started >= fire - dt.timedelta(seconds=1)  # it fired at the configured minute, not before
        print(f"nightly entry for {fire:%H:%M} UTC ran: eval {row.id} started {row.started_at}")
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
