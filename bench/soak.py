"""Soak: 10,000 full runs through one worker as shipped (thread pool), its RSS sampled, to show
that nothing grows with the number of runs served.

Runs are full chains (watcher → analyst → advisor, `offline` provider with 20 ms per model
call) on Postgres and the bench Redis, fed in batches so the queue never holds more than a few
thousand messages. The worker's RSS is read after the first 1,000 runs and at the end; the
last line compares them.

Usage: .venv/bin/python bench/soak.py [--runs 10000] [--latency-ms 20]
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

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REDIS_URL, Processes, Sampler, bench_env, flush_redis, insight_row, scratch_database
from bench.throughput import _wait_worker_ready

QUEUE_PREFIX = f"sk{uuid.uuid4().hex[:6]}."
for _name in [name for name in os.environ if name.startswith("SWITCHBOARD_")]:
    del os.environ[_name]
os.environ.update(SWITCHBOARD_BROKER_URL=REDIS_URL, SWITCHBOARD_QUEUE_PREFIX=QUEUE_PREFIX)
BATCH = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
    from switchboard.db.models import AgentRun, ProactiveInsight
    from switchboard.db.session import session_scope
    from switchboard.settings import get_settings
    from switchboard.tasks.runs import dispatch_insight

    flush_redis()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp, scratch_database("soak") as url, \
            Processes(Path(tmp)) as processes:  # fmt: skip
        os.environ["SWITCHBOARD_DATABASE_URL"] = url
        get_settings.cache_clear()
        queue = get_settings().queue_name("default")
        env = bench_env(url, Path(tmp) / "soak", SWITCHBOARD_QUEUE_PREFIX=QUEUE_PREFIX,
                        SWITCHBOARD_OFFLINE_LATENCY_MS=str(args.latency_ms))  # fmt: skip
        child = processes.start("soak", ["worker", "--queues", "default", "--name", "soak@%h"],
                                {**env, "SWITCHBOARD_LOG_LEVEL": "INFO", "SWITCHBOARD_LOG_FORMAT": "text"})  # fmt: skip
        _wait_worker_ready(processes.log_dir / "soak.log")
        _wait_worker_ready(processes.log_dir / "soak.log", count=get_settings().processes)
        worker = Sampler(child.pid)  # RSS of `switchboard worker` and its Celery processes
        print(f"worker soak@{socket.gethostname()} ready, RSS {worker.rss_mb():.0f} MB", flush=True)
        started = time.perf_counter()
        rss: dict[int, float] = {}
        dispatched = 0
        while True:
            with session_scope() as session:
                finished = (
                    session.scalar(
                        select(func.count()).where(AgentRun.status.in_(("done", "failed", "awaiting_approval")))
                    )
                    or 0
                )
                failed = session.scalar(select(func.count()).where(AgentRun.status == "failed")) or 0
            if dispatched - finished < BATCH and dispatched < args.runs:
                now = dt.datetime.now(dt.UTC)
                rows = [insight_row("medium", f"soak-{n}", now, dt.timedelta(hours=4))
                        for n in range(dispatched, min(args.runs, dispatched + BATCH))]  # fmt: skip
                with session_scope() as session:
                    ids = list(session.execute(insert(ProactiveInsight).returning(ProactiveInsight.id),
                                               rows).scalars())  # fmt: skip
                for insight_id in ids:
                    dispatch_insight(insight_id, queue=queue)
                dispatched += len(ids)
            for mark in range(1000, args.runs + 1, 1000):
                if finished >= mark and mark not in rss:
                    rss[mark] = worker.rss_mb()
                    elapsed = time.perf_counter() - started
                    print(f"[soak] {mark} runs in {elapsed:.0f} s: RSS {rss[mark]:.0f} MB", flush=True)
            if finished >= args.runs:
                break
            time.sleep(0.2)
        if failed:
            raise SystemExit(f"{failed} runs failed: the figure would be meaningless")
    first, last = rss[1000], rss[max(rss)]
    print(f"runs={args.runs} rss_after_1000_mb={first:.0f} rss_end_mb={last:.0f} growth={last / first - 1:+.1%}")


if __name__ == "__main__":
    main()
