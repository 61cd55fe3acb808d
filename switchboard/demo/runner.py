"""Run the demo: embedded (or configured) broker, a worker, seeded data, real runs, a table."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Iterator

from rich.console import Console
from sqlalchemy import select

from switchboard.cli_output import stdout, table
from switchboard.db import migrate
from switchboard.db import runs as lifecycle
from switchboard.db.models import ProactiveInsight
from switchboard.db.queries import TERMINAL_RUN_STATUSES, recent_runs
from switchboard.db.records import upsert_records
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import APPROVAL_KIND, EXPECTED, closed_won_without_payment, demo_records
from switchboard.embedded import embedded_broker_answers, start_embedded_redis
from switchboard.processes import child_env, stop_group, worker_argv
from switchboard.settings import QUEUE_LEVELS, Settings

ALL_SOURCES = ["stripe", "hubspot", "calls"]


@contextlib.contextmanager
def broker_running(settings: Settings, console: Console) -> Iterator[None]:
    """The embedded broker for the duration (started when it is the configured one and not up)."""
    if not settings.uses_embedded_broker or embedded_broker_answers(settings):
        yield
        return
    process = start_embedded_redis(settings)
    console.print(f"embedded broker on {settings.embedded_redis_socket}")
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def _workers_answering(timeout_s: float) -> list[str]:
    """Workers that answer and consume this deployment's queues (a worker of another queue
    prefix on the same broker answers a ping too, but would never run the demo's steps)."""
    from switchboard.celery_app import app
    from switchboard.settings import get_settings

    settings = get_settings()
    wanted = {settings.queue_name(level) for level in QUEUE_LEVELS}
    consuming = app.control.inspect(timeout=timeout_s).active_queues() or {}
    return sorted(name for name, queues in consuming.items() if wanted <= {q.get("name") for q in queues or []})


@contextlib.contextmanager
def _worker(settings: Settings, console: Console) -> Iterator[None]:
    existing = _workers_answering(1.0)
    if existing:
        console.print(f"using running workers: {', '.join(existing)}")
        yield
        return
    env = child_env(settings)
    log_path = settings.data_dir / "demo-worker.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            worker_argv(settings, list(QUEUE_LEVELS), name="demo@%h"),
            env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _workers_answering(1.0):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo worker did not start; see {log_path}")
        console.print(f"started a worker for the demo (pid {process.pid}, log {log_path})")
        yield
    finally:
        stop_group(process)


def _resolve_earlier_demo_episodes(now: dt.datetime) -> int:
    """An earlier demo's anomalies are episodes that never cleared (the demo data persists):
    resolve them, as an operator would, so this demo raises and runs them again."""
    with session_scope() as session:
        rows = session.execute(
            select(ProactiveInsight.id, ProactiveInsight.kind, ProactiveInsight.entity_id).where(
                ProactiveInsight.cleared_at.is_(None), ProactiveInsight.status.in_(lifecycle.HANDLED_INSIGHT_STATUSES)
            )
        ).all()
        demo = {(anomaly.kind, anomaly.entity_id) for anomaly in EXPECTED}
        earlier = [row.id for row in rows if (row.kind, row.entity_id) in demo]
        for insight_id in earlier:
            lifecycle.resolve_insight(session, insight_id, by="demo", now=now)
        return len(earlier)


def _still_new(insight_ids: list[int]) -> list[int]:
    # Open insights merged from an earlier demo may already be running; only new ones start runs.
    with session_scope() as session:
        rows = session.execute(
            select(ProactiveInsight.id).where(ProactiveInsight.id.in_(insight_ids), ProactiveInsight.status == "new")
        )
        return sorted(row.id for row in rows)


def render_runs(runs: list[dict[str, object]], console: Console, title: str) -> None:
    """The run table (run, insight, status, latency, tokens, provider, actions)."""
    runs_table = table(
        title, ("run", "insight", "status", "latency ms", "tokens in/out", "provider", "actions", "error")
    )
    for run in runs:
        actions = f"{run['actions_executed']} done"
        if run["actions_awaiting_approval"]:
            actions += f", {run['actions_awaiting_approval']} awaiting approval"
        runs_table.add_row(
            str(run["run_id"]), str(run["insight_kind"]), str(run["status"]),
            "" if run["latency_ms"] is None else f"{run['latency_ms']:.0f}",
            f"{run['tokens_in']}/{run['tokens_out']}", str(run["provider"] or ""), actions,
            str(run["error"] or ""),
        )  # fmt: skip
    console.print(runs_table)


def run_demo(
    settings: Settings, *, timeout_s: float = 180.0, console: Console | None = None, approval: bool = False
) -> int:
    """Seed, scan, run every resulting insight through the workers; exit code 0 when all end well.
    With `approval`, one more scenario whose high-risk action waits for an operator."""
    from switchboard.tasks.runs import dispatch_insight
    from switchboard.tasks.watch import scan

    console = console or stdout()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with broker_running(settings, console):
        migrate.upgrade(settings.database_url)
        with _worker(settings, console):
            now = dt.datetime.now(dt.UTC)
            records = demo_records(now) + (closed_won_without_payment(now) if approval else [])
            with session_scope() as session:
                upsert_records(session, records)
            console.print(f"seeded {len(records)} Stripe, HubSpot and call records")
            if resolved := _resolve_earlier_demo_episodes(now):
                console.print(f"resolved {resolved} anomaly episode(s) left by an earlier demo")
            outcome = scan.delay(ALL_SOURCES).get(timeout=120)
            insight_ids = outcome["insights"]
            console.print(f"watcher scan raised {len(insight_ids)} insight(s) ({outcome['created']} new)")
            run_ids = [dispatch_insight(insight_id) for insight_id in _still_new(insight_ids)]
            deadline = time.monotonic() + timeout_s
            with console.status(f"running {len(run_ids)} run(s) through the workers…"):
                while time.monotonic() < deadline:
                    runs = recent_runs(run_ids=run_ids)
                    if all(run["status"] in TERMINAL_RUN_STATUSES for run in runs):
                        break
                    time.sleep(0.25)
            runs = recent_runs(run_ids=run_ids)
    render_runs(runs, console, "Switchboard demo runs")
    return _verdict(runs, console, approval)


def _verdict(runs: list[dict[str, object]], console: Console, approval: bool = False) -> int:
    expected = {anomaly.kind for anomaly in EXPECTED} | ({APPROVAL_KIND} if approval else set())
    kinds = {str(run["insight_kind"]) for run in runs}
    unexpected = sorted(kinds - expected)
    missing = sorted(expected - kinds)
    # a model that declines to answer is the model's call, handled as it should be (the run
    # failed with the model's words): reported, not a failure of the demo
    refused = [run for run in runs if run["status"] == "failed" and "ModelRefused" in str(run["error"] or "")]
    bad = [run for run in runs if run["status"] not in ("done", "awaiting_approval") and run not in refused]
    if refused:
        console.print(
            f"[yellow]{len(refused)} run(s) refused by the model (the reason is stored with the run)[/yellow]"
        )
    if unexpected:
        console.print(f"[red]normal data raised insights it must not: {unexpected}[/red]")
    if missing:
        console.print(f"[red]seeded anomalies that raised no run: {missing}[/red]")
    if bad:
        console.print(f"[red]{len(bad)} run(s) did not finish well[/red]")
    if unexpected or missing or bad:
        return 1
    console.print(f"all {len(runs)} anomalies handled; the normal data raised nothing")
    first = str(runs[0]["run_id"]) if runs else "RUN_ID"
    waiting = sum(int(str(run["actions_awaiting_approval"] or 0)) for run in runs)
    console.print(
        "next: `switchboard runs show " + first[:8] + "` (a run's answer, steps and tool calls), "
        "`switchboard insights`, "
        + (f"`switchboard approvals list` ({waiting} waiting), " if waiting else
           "`switchboard demo --approval` (one more anomaly whose action waits for you), ")
        + "and `make run` — then open the dashboard link it prints",
        highlight=False,
    )  # fmt: skip
    return 0
