"""Agent steps/s for full runs against bare Celery no-op tasks/s, same broker, same invocation.

Both phases use the production settings (acks_late, prefetch 1, JSON, task events, Redis
result backend) and the same worker command line (`switchboard worker --concurrency N`) on a
fresh Postgres database and the bench Redis:

  bare:   N no-op tasks (`switchboard.probe`)
  agent:  full runs (watcher → analyst → advisor, `offline` provider, no artificial latency)
          dispatched by `dispatch_insight`, each step with its hooks writing agent_runs,
          agent_steps, conversations and decisions to Postgres

Each phase first fills the `default` queue while its worker consumes only the (empty) `low`
queue, then tells the worker to consume `default` too (`add_consumer`), so both measure what
the workers do — not the bench process publishing or dispatching on the same two cores.
Throughput = completed tasks (steps) / seconds from the `add_consumer` to the last result.

Usage: .venv/bin/python bench/throughput.py [--runs 500] [--tasks 3000] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REDIS_URL, Processes, bench_env, flush_redis, insight_row, scratch_database

QUEUE_PREFIX = f"tp{uuid.uuid4().hex[:6]}."
# The bench process itself publishes: point its settings at the bench broker before import.
for _name in [name for name in os.environ if name.startswith("SWITCHBOARD_")]:
    del os.environ[_name]
os.environ.update(SWITCHBOARD_BROKER_URL=REDIS_URL, SWITCHBOARD_QUEUE_PREFIX=QUEUE_PREFIX)


def _wait_worker_ready(log: Path, timeout_s: float = 60.0, count: int = 1) -> None:
    """Until ``count`` Celery processes logging to ``log`` say they are ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(" ready.") >= count:
            return
        time.sleep(0.1)
    raise SystemExit(f"worker not ready after {timeout_s:.0f} s; see {log}")


def _worker(processes: Processes, name: str, env: dict[str, str], concurrency: int) -> str:
    """Start a worker consuming only the empty `low` queue; its node name."""
    log = processes.log_dir / f"{name}.log"
    args = ["worker", "--queues", "low", "--concurrency", str(concurrency), "--processes", "1", "--name", f"{name}@%h"]
    processes.start(name, args, {**env, "SWITCHBOARD_LOG_LEVEL": "INFO", "SWITCHBOARD_LOG_FORMAT": "text"})
    _wait_worker_ready(log)
    return f"{name}@{socket.gethostname()}"


def _start_consuming(node: str | list[str], queue: str) -> float:
    """Have the worker's node(s) consume ``queue`` (already filled); the time the clock starts."""
    from switchboard.celery_app import app

    nodes = [node] if isinstance(node, str) else node
    started = time.perf_counter()
    replies = app.control.add_consumer(queue, destination=nodes, reply=True, timeout=10)
    answered = {name for reply in replies or [] for name, body in reply.items() if "ok" in body}
    if missing := sorted(set(nodes) - answered):
        raise SystemExit(f"worker {', '.join(missing)} did not start consuming {queue}: {replies!r}")
    return started


def measure_bare(tmp: Path, tasks: int, concurrency: int) -> float:
    from switchboard.celery_app import app
    from switchboard.settings import get_settings

    flush_redis()
    queue = get_settings().queue_name("default")
    client = redis.Redis.from_url(REDIS_URL)
    with scratch_database("tp_bare") as url, Processes(tmp) as processes:
        env = bench_env(url, tmp / "bare", SWITCHBOARD_QUEUE_PREFIX=QUEUE_PREFIX)
        node = _worker(processes, "bare", env, concurrency)
        ids = [uuid.uuid4().hex for _ in range(tasks)]
        with app.producer_or_acquire() as producer:
            for task_id in ids:
                app.send_task("switchboard.probe", task_id=task_id, queue=queue, producer=producer)
        started = _start_consuming(node, queue)
        keys = [f"celery-task-meta-{task_id}" for task_id in ids]
        while True:
            done = sum(client.exists(*keys[i : i + 500]) for i in range(0, len(keys), 500))
            if done == tasks:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    rate = tasks / elapsed
    print(f"[bare]  {tasks} no-op tasks in {elapsed:.2f} s: {rate:.0f} tasks/s", flush=True)
    return rate


def _insight_rows(count: int) -> list[dict[str, object]]:
    now = dt.datetime.now(dt.UTC)
    return [insight_row("medium", f"tp-{n}", now, dt.timedelta(hours=4)) for n in range(count)]


def measure_agent(tmp: Path, runs: int, concurrency: int) -> float:
    from switchboard.db.models import AgentRun, ProactiveInsight
    from switchboard.db.session import session_scope
    from switchboard.settings import get_settings
    from switchboard.tasks.runs import dispatch_insight

    flush_redis()
    with scratch_database("tp_agent") as url, Processes(tmp) as processes:
        os.environ["SWITCHBOARD_DATABASE_URL"] = url
        get_settings.cache_clear()
        queue = get_settings().queue_name("default")
        with session_scope() as session:
            ids = list(
                session.execute(insert(ProactiveInsight).returning(ProactiveInsight.id), _insight_rows(runs)).scalars()
            )
        env = bench_env(url, tmp / "agent", SWITCHBOARD_QUEUE_PREFIX=QUEUE_PREFIX)
        for agent in ("WATCHER", "ANALYST", "ADVISOR"):
            env[f"SWITCHBOARD_{agent}_PROVIDER"] = "offline"
        node = _worker(processes, "agent", env, concurrency)
        for insight_id in ids:
            dispatch_insight(insight_id, queue=queue)
        started = _start_consuming(node, queue)
        while True:
            with session_scope() as session:
                finished = session.scalar(
                    select(func.count()).where(AgentRun.status.in_(("done", "failed", "awaiting_approval")))
                )
                failed = session.scalar(select(func.count()).where(AgentRun.status == "failed"))
            if finished == runs:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    if failed:
        raise SystemExit(f"{failed} of {runs} runs failed: the figure would be meaningless")
    rate = 3 * runs / elapsed
    print(f"[agent] {runs} runs ({3 * runs} steps) in {elapsed:.2f} s: {rate:.0f} steps/s", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=500, help="full runs (3 steps each)")
    parser.add_argument("--tasks", type=int, default=3000, help="bare no-op tasks")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (both phases)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        bare = measure_bare(Path(tmp), args.tasks, args.concurrency)
        steps = measure_agent(Path(tmp), args.runs, args.concurrency)
    print(f"steps_per_s={steps:.0f} bare_celery_tasks_per_s={bare:.0f} ratio={steps / bare:.2f}")


if __name__ == "__main__":
    main()
