"""SIGKILL of the worker in the middle of an analyst step: the run still completes, once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from switchboard.agents import watcher
from switchboard.db.models import ActionExecution, AgentStep
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from switchboard.tasks.runs import dispatch_insight
from tests.support.env import worker_env
from tests.support.runs import empty_tables, wait_for_status


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "switchboard", "worker", "--queues", "high", "--concurrency", "1"],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _step_status(run_id: str, step: str) -> str | None:
    with session_scope() as session:
        return session.scalar(select(AgentStep.status).where(AgentStep.run_id == run_id, AgentStep.step == step))


def test_run_survives_sigkill_during_analyst_step(database_url: str, redis_url: str, tmp_path: Path) -> None:
    empty_tables(database_url)
    prefix = f"k{uuid.uuid4().hex[:6]}."
    env = worker_env(
        database_url,
        redis_url,
        tmp_path,
        prefix=prefix,
        # Each offline model call takes 2.5 s, so the kill lands inside the analyst step;
        # a short visibility timeout brings the orphaned message back within seconds.
        SWITCHBOARD_OFFLINE_LATENCY_MS="2500",
        SWITCHBOARD_VISIBILITY_TIMEOUT_S="12",
        SWITCHBOARD_TASK_TIME_LIMIT_S="10",
        SWITCHBOARD_RETRY_BACKOFF_CAP_S="5",
    )
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, [RecordIn("hubspot", "deal", "deal-k", now - dt.timedelta(days=2), {
            "id": "deal-k", "properties": {"dealname": "Kill test", "amount": "500.00", "dealstage": "qualified",
                                           "hubspot_owner_id": None}, "associations": {}})])  # fmt: skip
    [(insight_id, _, _)] = watcher.scan(["hubspot"], now, get_settings())

    first = _worker(env, tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        run_id = dispatch_insight(insight_id, queue=f"{prefix}high")
        deadline = time.monotonic() + 60
        while _step_status(run_id, "analyst") != "running":
            assert time.monotonic() < deadline, (tmp_path / "worker-1.log").read_text()
            assert first.poll() is None, (tmp_path / "worker-1.log").read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = time.monotonic()

        second = _worker(env, tmp_path / "worker-2.log")
        wait_for_status(run_id, "done", timeout_s=90)
        print(f"run completed {time.monotonic() - killed_at:.1f} s after the kill")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)

    with session_scope() as session:
        steps = {s.step: s for s in session.scalars(select(AgentStep).where(AgentStep.run_id == run_id))}
        assert steps["watcher"].attempt == 1
        assert steps["analyst"].attempt == 2  # the killed attempt, then the redelivery
        assert steps["advisor"].attempt == 1
        assert all(step.status == "done" for step in steps.values())
        executed = session.scalars(select(ActionExecution).where(ActionExecution.run_id == run_id)).all()
        assert [(row.action_type, row.status) for row in executed] == [("create_hubspot_task", "done")]
        assert session.scalar(select(func.count()).select_from(ActionExecution)) == 1
