"""Runs on Celery's thread pool: the exact command `celery -A switchboard.celery_app:app worker
--pool threads --concurrency 16`, in its own process, runs many runs at once — each step
waiting on a (simulated) model, so up to 16 overlap in one process — and every run's rows are
its own: steps, totals, conversations and actions are never mixed up between concurrent tasks.
Then a high-risk action waits for approval and executes once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from switchboard import approvals
from switchboard.agents import watcher
from switchboard.approvals import list_approvals
from switchboard.db.models import ActionExecution, AgentConversation, AgentRun, AgentStep, ProactiveInsight
from switchboard.db.records import upsert_records
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import closed_won_without_payment, demo_records
from switchboard.settings import get_settings
from switchboard.tasks.actions import execute_approved
from switchboard.tasks.runs import dispatch_insight
from tests.support.env import worker_env
from tests.support.runs import empty_tables, wait_for_runs, wait_for_status

SOURCES = ["stripe", "hubspot", "calls"]
RUNS_PER_INSIGHT = 8
LATENCY_MS = 300


@pytest.fixture()
def thread_pool_worker(
    database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The worker, on queues of its own (this process publishes there too); yields the prefix."""
    empty_tables(database_url)
    prefix = f"th{uuid.uuid4().hex[:6]}."
    env = worker_env(
        database_url, redis_url, tmp_path, prefix=prefix, SWITCHBOARD_OFFLINE_LATENCY_MS=str(LATENCY_MS),
        SWITCHBOARD_LOG_LEVEL="WARNING",
    )  # fmt: skip
    queues = ",".join(f"{prefix}{level}" for level in ("critical", "high", "default", "low"))
    argv = [sys.executable, "-m", "celery", "-A", "switchboard.celery_app:app", "worker", "--pool", "threads",
            "--concurrency", "16", "--queues", queues, "--hostname", f"threads-{prefix}@%h",
            "--loglevel", "INFO"]  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("wb") as handle:
        worker = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    monkeypatch.setenv("SWITCHBOARD_QUEUE_PREFIX", prefix)
    get_settings.cache_clear()
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield prefix
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        monkeypatch.undo()
        get_settings.cache_clear()
        assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


def test_runs_on_the_thread_pool_keep_their_own_rows(thread_pool_worker: str) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, demo_records(now) + closed_won_without_payment(now))
    insights = [insight_id for insight_id, _, _ in watcher.scan(SOURCES, now, get_settings())]
    assert len(insights) == 4

    started = time.monotonic()
    run_ids = [dispatch_insight(insight_id) for insight_id in insights for _ in range(RUNS_PER_INSIGHT)]
    runs = wait_for_runs(run_ids, timeout_s=120)
    elapsed = time.monotonic() - started
    # 32 runs of 3 steps, each step waiting 300 ms on the model at least once: one at a time
    # that is over 29 s; 16 threads at once bring it to a few seconds
    print(f"{len(run_ids)} runs on 16 threads in {elapsed:.1f} s")
    assert elapsed < 20
    # the episode's one approval belongs to the run that asked first; the others find it asked
    assert Counter(str(run["status"]) for run in runs) == {"done": 31, "awaiting_approval": 1}

    with session_scope() as session:
        entity_of = {i.id: i.entity_id for i in session.scalars(select(ProactiveInsight))}
        for run in session.scalars(select(AgentRun).where(AgentRun.id.in_(run_ids))):
            steps = session.scalars(select(AgentStep).where(AgentStep.run_id == run.id)).all()
            assert sorted(s.step for s in steps) == ["advisor", "analyst", "watcher"]
            assert all(s.status == "done" and s.attempt == 1 for s in steps), run.id
            # the offline provider counts no tokens: what marks a run as its own is its entity
            assert run.provider == "offline" and {s.provider for s in steps} == {"offline"}
            talk = session.scalars(select(AgentConversation).where(AgentConversation.run_id == run.id)).all()
            assert talk and {c.entity_id for c in talk} == {entity_of[run.insight_id]}, run.id
            assert {s.output["run_id"] for s in steps if s.output} == {run.id}
        # actions belong to the episode: eight analyses of one insight acted once
        executions = session.scalar(select(func.count()).select_from(ActionExecution))
    assert executions == 4

    # the high-risk action waits, is approved, and executes once on the thread pool (sent to its
    # queues by name: this process's task routes name the session's queues)
    [pending] = list_approvals("pending")
    approvals.approve(pending.id, by="test")
    execute_approved.apply_async(args=[pending.id], queue=f"{thread_pool_worker}high")
    wait_for_status(pending.run_id, "done", timeout_s=60)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ActionExecution)) == 5
