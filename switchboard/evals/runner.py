"""The eval runner: a Switchboard process pointed at the isolated eval store.

`switchboard eval` starts it with the eval database, a private queue prefix and the chosen
providers in its environment. For each scenario it empties the store, seeds the scenario's
records, runs the Watcher's scan, dispatches every insight through a real worker (started here,
on the private queues), waits for the runs — up to the scenario timeout — and writes what
happened as JSON. Scoring happens in the parent (`harness.py`), which owns the production
database and starts one runner per lane.

Usage (internal): python -m switchboard.evals.runner --out results.json [--suite S] [--scenario N]...
    [--scenarios DIR] [--scenario-timeout SECONDS]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from switchboard.agents import watcher
from switchboard.db import migrate
from switchboard.db.models import (
    AgentRun,
    AgentStep,
    Approval,
    Base,
    EvalResult,
    EvalRun,
    ProactiveInsight,
    SourceRecord,
)
from switchboard.db.queries import TERMINAL_RUN_STATUSES
from switchboard.db.records import upsert_records
from switchboard.db.session import get_engine, session_scope
from switchboard.evals.scenarios import Scenario, load_scenarios
from switchboard.processes import child_env, stop_group, worker_argv
from switchboard.settings import QUEUE_LEVELS, Settings, get_settings
from switchboard.tasks.runs import dispatch_insight

SOURCES = ["stripe", "hubspot", "calls"]
KEEP = {EvalRun.__tablename__, EvalResult.__tablename__, "alembic_version"}


def reset_store(settings: Settings) -> None:
    """Empty every table of the eval store (children first)."""
    with get_engine(settings.database_url).begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in KEEP:
                connection.execute(delete(table))


def _worker_ready(name: str, timeout_s: float) -> bool:
    from switchboard.celery_app import app

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replies = app.control.ping(destination=[name], timeout=0.5) or []
        if any(name in reply for reply in replies):
            return True
    return False


def run_scenario(
    scenario: Scenario, settings: Settings, timeout_s: float, keep_alive: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    reset_store(settings)
    now = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    with session_scope() as session:
        upsert_records(session, scenario.build(now))
    raised = watcher.scan(SOURCES, now, settings)
    run_ids = [dispatch_insight(insight_id) for insight_id, _, _ in raised]
    deadline = started + timeout_s
    runs: list[AgentRun] = []
    timed_out = False
    while True:
        with session_scope() as session:
            runs = list(session.scalars(select(AgentRun).where(AgentRun.id.in_(run_ids))))
            session.expunge_all()
        if all(run.status in (*TERMINAL_RUN_STATUSES, "awaiting_approval") for run in runs):
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        keep_alive()
        time.sleep(0.05)
    outcome: dict[str, Any] = {"scenario": scenario.name, "alerts": [], "runs": [], "timed_out": timed_out,
                               "seconds": round(time.monotonic() - started, 3)}  # fmt: skip
    with session_scope() as session:
        for insight in session.scalars(select(ProactiveInsight).order_by(ProactiveInsight.id)):
            outcome["alerts"].append({"kind": insight.kind, "entity": insight.entity_id, "severity": insight.severity,
                                      "run_id": insight.run_id})  # fmt: skip
        for run_id in run_ids:
            run = session.get(AgentRun, run_id)
            if run is None:
                continue
            steps = {s.step: s for s in session.scalars(select(AgentStep).where(AgentStep.run_id == run_id))}
            analyst = steps.get("analyst")
            advisor = steps.get("advisor")
            plan = (advisor.output or {}) if advisor is not None and advisor.status == "done" else {}
            # the plan carries the analysis it was made from: the analyst step's own success hook
            # may still be on its way when the advisor's has settled the run
            analysis = plan.get("analysis") or ((analyst.output or {}) if analyst is not None else {})
            cited = [str(item) for item in analysis.get("evidence_ids") or []]
            approvals = session.scalars(select(Approval.action_type).where(Approval.run_id == run_id)).all()
            outcome["runs"].append({
                "run_id": run_id, "kind": run.insight_kind, "status": run.status, "error": run.error,
                "latency_ms": run.latency_ms, "tokens_in": run.tokens_in, "tokens_out": run.tokens_out,
                "provider": run.provider, "model": run.model,
                "metrics": ((run.input or {}).get("alert") or {}).get("metrics") or {},
                "root_cause": analysis.get("root_cause"), "narrative": analysis.get("narrative"),
                "confidence": analysis.get("confidence"), "evidence_ids": cited,
                "unknown_evidence": sorted(set(cited) - _stored_ids(session, cited)),
                "plan": list(plan.get("actions") or []), "rationale": plan.get("rationale"),
                "awaiting_approval": list(approvals),
            })  # fmt: skip
    return outcome


def _stored_ids(session: Any, ids: list[str]) -> set[str]:
    """Which of ``ids`` name a record in the store (an evidence id is a source object's id)."""
    if not ids:
        return set()
    return set(session.scalars(select(SourceRecord.object_id).where(SourceRecord.object_id.in_(ids))).all())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--suite", default="all")
    parser.add_argument("--scenario", action="append", default=[])
    parser.add_argument("--scenarios", type=Path, default=None, help="a directory of the user's own scenarios")
    parser.add_argument("--scenario-timeout", type=float, default=120.0)
    args = parser.parse_args()
    settings = get_settings()
    migrate.upgrade(settings.database_url)
    scenarios = [s for s in load_scenarios(args.suite, extra=args.scenarios)
                 if not args.scenario or s.name in args.scenario]  # fmt: skip
    worker = LaneWorker(settings)
    try:
        if not worker.start():
            print(f"the eval worker did not start; see {worker.log_path}", file=sys.stderr)
            return 2
        results = []
        for scenario in scenarios:
            results.append(run_scenario(scenario, settings, args.scenario_timeout, worker.keep_alive))
            print(f"  {scenario.name}: {len(results[-1]['alerts'])} alert(s) in {results[-1]['seconds']:.2f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        args.out.write_text(json.dumps({"scenarios": results}, default=str))
    finally:
        worker.stop()
    return 0


class LaneWorker:
    """The lane's worker on its private queues, started again if it dies (a nightly eval outlives
    a killed worker: its in-flight steps come back after the visibility timeout)."""

    def __init__(self, settings: Settings) -> None:
        import socket

        self.settings = settings
        self.name = f"eval-{os.getpid()}@%h"
        self.node = self.name.replace("%h", socket.gethostname())
        self.log_path = settings.data_dir / "eval-worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> bool:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                worker_argv(self.settings, list(QUEUE_LEVELS), name=self.name, concurrency=4),
                env=child_env(self.settings), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return _worker_ready(self.node, 60)

    def keep_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            self.restarts += 1
            print(f"  the eval worker exited ({self.process.returncode}); starting it again", file=sys.stderr,
                  flush=True)  # fmt: skip
            self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


if __name__ == "__main__":
    raise SystemExit(main())
