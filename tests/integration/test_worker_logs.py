"""Structured logs of a real worker process (prefork, `switchboard worker`): every line is one
JSON object, lines logged while a task runs carry its run id, step, Celery task id and queue,
and a configured secret never reaches the log even when a payload carries it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from switchboard.db.models import AgentRun, new_id
from switchboard.db.session import session_scope
from switchboard.tasks.probe import probe
from switchboard.tasks.steps import watcher_step
from tests.support.env import worker_env
from tests.support.runs import wait_for_runs

STRIPE_KEY = "sk_test_" + uuid.uuid4().hex
API_KEY = "sbk_" + uuid.uuid4().hex


def test_worker_lines_are_json_with_task_context_and_no_secret(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    prefix = f"log{uuid.uuid4().hex[:6]}."
    env = worker_env(
        database_url,
        redis_url,
        tmp_path,
        prefix=prefix,
        SWITCHBOARD_LOG_LEVEL="INFO",
        SWITCHBOARD_STRIPE_API_KEY=STRIPE_KEY,
        SWITCHBOARD_OPERATOR_KEYS=API_KEY,
    )
    argv = [sys.executable, "-m", "switchboard", "worker", "--queues", "default", "--concurrency", "1"]
    stderr_path = tmp_path / "worker.err"
    with stderr_path.open("wb") as stderr:
        worker = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        probe.apply_async(queue=f"{prefix}default").get(timeout=60)  # the worker is up
        run_id = new_id()
        with session_scope() as session:
            session.add(AgentRun(id=run_id, status="queued"))
        # a payload that violates the contract and carries a secret: the step fails permanently
        payload = {"run_id": run_id, "alert": {"kind": "not_a_kind", "note": f"key {STRIPE_KEY} / {API_KEY}"}}
        sent = watcher_step.apply_async(args=[payload], kwargs={"run_id": run_id}, queue=f"{prefix}default")
        [run] = wait_for_runs([run_id], timeout_s=30)
        assert run["status"] == "failed"
        time.sleep(0.5)  # the last lines of the task are flushed
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)

    text = stderr_path.read_text()
    assert STRIPE_KEY not in text and API_KEY not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON
    assert lines and all(
        {"ts", "level", "logger", "message", "run_id", "step", "task_id", "queue"} <= set(e) for e in lines
    )
    about_task = [entry for entry in lines if entry["task_id"] == sent.id]
    # "Task … received" is logged by the consumer before the task runs: it knows the task id only
    received = [entry for entry in about_task if entry["logger"] == "celery.worker.strategy"]
    assert len(received) == 1 and "received" in received[0]["message"]
    in_task = [entry for entry in about_task if entry not in received]
    assert len(in_task) >= 3
    assert any(entry["logger"] == "switchboard.hooks" and "failed at watcher" in entry["message"] for entry in in_task)
    # a permanent failure is expected: Celery's line says so in one line, without a traceback
    trace = [
        entry for entry in in_task if entry["logger"] == "celery.app.trace" and "raised expected" in entry["message"]
    ]
    assert trace and all("Traceback" not in json.dumps(entry) for entry in trace), trace
    assert all(
        (entry["run_id"], entry["step"], entry["queue"]) == (run_id, "watcher", f"{prefix}default") for entry in in_task
    )
    # Celery logs the received message's arguments: the secrets in the payload arrive masked
    assert "key [redacted] / [redacted]" in received[0]["data"]
    startup = [entry for entry in lines if entry["task_id"] is None]
    assert startup and all(entry["run_id"] is None for entry in startup)  # outside a task: null, not stale
