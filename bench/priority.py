"""Critical pickup latency behind a routine backlog: production layout vs one FIFO queue.

Both layouts get the same load in the same invocation: 2,000 routine insights whose runs take
200 ms of simulated model latency each (4 offline model calls of 50 ms), dispatched by the real
orchestrator (beat every 2 s), then 50 critical insights created over 5 s the way a watcher
scan creates them (insight row, then the orchestrator's immediate trigger). Pickup latency is
insight created → its run's watcher step started.

  production: worker `critical,high` (8 processes) + worker `default,low` (4 processes), priorities on
  fifo:       two workers (6 processes each) on one queue, no priorities — the same 12 processes

"Processes" are the workers' slots: threads of the worker as shipped, or prefork processes with
`--pool prefork`; `--pool both --repeat N` measures the production layout on each pool N times,
alternating, and pools the samples (p99 of 50 samples is their maximum, and it is noisy).

Usage: .venv/bin/python bench/priority.py   (Postgres and Redis as for the tests)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery
from sqlalchemy import insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Processes, bench_env, flush_redis, insight_row, percentile, scratch_database
from switchboard.db.models import AgentRun, AgentStep, ProactiveInsight
from switchboard.db.session import session_scope

BACKLOG = 2000
CRITICAL = 50
CRITICAL_SPREAD_S = 5.0
OFFLINE_CALL_MS = 50  # 4 model calls per run: 200 ms per run

LAYOUTS = {
    "production": {
        "env": {},
        "workers": [
            ["--queues", "critical,high", "--concurrency", "8"],
            ["--queues", "default,low", "--concurrency", "4"],
        ],
        "trigger_queue": "critical",
        "trigger_priority": 0,
    },
    "fifo": {
        "env": {
            "SWITCHBOARD_QUEUE_CRITICAL": "fifo",
            "SWITCHBOARD_QUEUE_HIGH": "fifo",
            "SWITCHBOARD_QUEUE_DEFAULT": "fifo",
            "SWITCHBOARD_QUEUE_LOW": "fifo",
            "SWITCHBOARD_QUEUE_PRIORITIES": "false",
        },
        "workers": [["--queues", "default", "--concurrency", "6"], ["--queues", "default", "--concurrency", "6"]],
        "trigger_queue": "fifo",
        "trigger_priority": None,
    },
}


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def measure(layout_name: str, tmp: Path, pool: str) -> list[float]:
    layout = LAYOUTS[layout_name]
    flush_redis()
    with scratch_database(layout_name) as url:
        now = dt.datetime.now(dt.UTC)
        with session_scope(url) as session:
            rows = [insight_row("medium" if n % 2 else "low", f"routine-{n}", now, dt.timedelta(hours=24))
                    for n in range(BACKLOG)]  # fmt: skip
            session.execute(insert(ProactiveInsight), rows)
        env = bench_env(url, tmp / layout_name, SWITCHBOARD_OFFLINE_LATENCY_MS=str(OFFLINE_CALL_MS), **layout["env"])
        producer = Celery(broker=env["SWITCHBOARD_BROKER_URL"])
        with Processes(tmp) as processes:
            for index, worker_args in enumerate(layout["workers"]):
                args = ["worker", *worker_args, "--pool", pool, "--name", f"{layout_name}{index}@%h"]
                processes.start(f"{layout_name}-worker-{index}", args, env)
            processes.start(f"{layout_name}-beat", ["beat"], env)

            def backlog_dispatched() -> bool:
                with session_scope(url) as session:
                    return session.scalar(select(ProactiveInsight.id).where(ProactiveInsight.status == "new")) is None

            started = time.monotonic()
            _wait(backlog_dispatched, 600, "the backlog to be dispatched")
            print(f"[{layout_name}] backlog of {BACKLOG} dispatched in {time.monotonic() - started:.1f} s", flush=True)

            critical_ids: list[int] = []
            for n in range(CRITICAL):
                with session_scope(url) as session:
                    row = insight_row("critical", f"critical-{n}", dt.datetime.now(dt.UTC), dt.timedelta(minutes=15))
                    critical_ids.append(session.execute(insert(ProactiveInsight).returning(ProactiveInsight.id),
                                                        [row]).scalar_one())  # fmt: skip
                # what trigger_poll() sends when a scan raises a critical insight
                producer.send_task("switchboard.tasks.orchestrator.poll_insights", kwargs={"trigger": True},
                                   queue=layout["trigger_queue"], priority=layout["trigger_priority"])  # fmt: skip
                time.sleep(CRITICAL_SPREAD_S / CRITICAL)

            def timings() -> list[tuple[dt.datetime, dt.datetime, dt.datetime]]:
                with session_scope(url) as session:
                    rows = session.execute(
                        select(ProactiveInsight.created_at, AgentRun.enqueued_at, AgentStep.started_at)
                        .join(AgentRun, AgentRun.insight_id == ProactiveInsight.id)
                        .join(AgentStep, (AgentStep.run_id == AgentRun.id) & (AgentStep.step == "watcher"))
                        .where(ProactiveInsight.id.in_(critical_ids), AgentStep.started_at.is_not(None))
                    ).all()
                    return [(created, enqueued, step) for created, enqueued, step in rows]

            _wait(lambda: len(timings()) == CRITICAL, 1800, "every critical run to start")
            rows = timings()
        producer.close()

    def ms(later: dt.datetime, earlier: dt.datetime) -> float:
        return (later - earlier).total_seconds() * 1000

    latencies = [ms(step, created) for created, _, step in rows]
    to_dispatch = [ms(enqueued, created) for created, enqueued, _ in rows]
    to_start = [ms(step, enqueued) for _, enqueued, step in rows]
    print(f"[{layout_name}] critical pickup ms: p50={percentile(latencies, 0.5):.0f} "
          f"p99={percentile(latencies, 0.99):.0f} max={max(latencies):.0f} "
          f"(created->dispatched p50={percentile(to_dispatch, 0.5):.0f} p99={percentile(to_dispatch, 0.99):.0f}; "
          f"dispatched->started p50={percentile(to_start, 0.5):.0f} p99={percentile(to_start, 0.99):.0f})",
          flush=True)  # fmt: skip
    return latencies


def main() -> None:
    global BACKLOG, CRITICAL
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backlog", type=int, default=BACKLOG, help="routine insights queued first")
    parser.add_argument("--critical", type=int, default=CRITICAL, help="critical insights created over 5 s")
    parser.add_argument("--layout", choices=[*LAYOUTS, "both"], default="both")
    parser.add_argument("--pool", choices=["threads", "prefork", "both"], default="threads",
                        help="the workers' pool; both: the production layout on each, alternating")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="production-layout trials per pool, samples pooled")
    args = parser.parse_args()
    BACKLOG, CRITICAL = args.backlog, args.critical
    pools = ["threads", "prefork"] if args.pool == "both" else [args.pool]
    production: dict[str, list[float]] = {pool: [] for pool in pools}
    fifo: list[float] = []
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        if args.layout in ("production", "both"):
            for _ in range(args.repeat):
                for pool in pools:
                    production[pool] += measure("production", Path(tmp), pool)
        if args.layout in ("fifo", "both"):
            fifo = measure("fifo", Path(tmp), pools[0])
    if len(pools) > 1 and production[pools[0]]:
        for pool in pools:
            samples = production[pool]
            print(f"[production on {pool}] {len(samples)} critical pickups: "
                  f"p50={percentile(samples, 0.5):.0f} ms p99={percentile(samples, 0.99):.0f} ms")  # fmt: skip
    main_pool = production[pools[0]]
    if not (main_pool and fifo):
        return
    critical_p99 = percentile(main_pool, 0.99)
    fifo_p99 = percentile(fifo, 0.99)
    prefork = f" prefork_p99_ms={percentile(production['prefork'], 0.99):.0f}" if len(pools) > 1 else ""
    print(
        f"critical_p50_ms={percentile(main_pool, 0.5):.0f} critical_p99_ms={critical_p99:.0f} "
        f"fifo_p99_ms={fifo_p99:.0f} speedup={fifo_p99 / critical_p99:.1f}{prefork}"
    )


if __name__ == "__main__":
    main()
