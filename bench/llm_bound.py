"""Full runs under model latency: the worker as shipped against prefork with concurrency 2,
same invocation, against the bound `slots / (model calls per run x latency)`.

Every model call of the `offline` provider sleeps SWITCHBOARD_OFFLINE_LATENCY_MS (default 500
ms here), as a real model keeps a step waiting; runs are full chains (watcher → analyst →
advisor) on Postgres and the bench Redis, with every hook writing back. Each phase fills the
`default` queue while its worker consumes only the empty `low` queue, then `add_consumer`
starts the clock (as bench/throughput.py). Sampled while it runs: the worker's RSS (the whole
process tree: prefork's children included) and its CPU time.

With --tracing, the shipped worker runs --tracing-rounds more times exporting every span over
OTLP/HTTP to a local receiver, alternating with untraced runs, and the cost of tracing is
printed from the medians (1 - traced runs/s / untraced runs/s).

Usage: .venv/bin/python bench/llm_bound.py [--runs 600] [--prefork-runs 60] [--latency-ms 500] [--tracing]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REDIS_URL, Processes, Sampler, bench_env, flush_redis, insight_row, scratch_database
from bench.throughput import _start_consuming, _wait_worker_ready

QUEUE_PREFIX = f"lb{uuid.uuid4().hex[:6]}."
for _name in [name for name in os.environ if name.startswith("SWITCHBOARD_")]:
    del os.environ[_name]
os.environ.update(SWITCHBOARD_BROKER_URL=REDIS_URL, SWITCHBOARD_QUEUE_PREFIX=QUEUE_PREFIX)


def measure(
    tmp: Path, name: str, runs: int, latency_ms: int, worker_args: list[str], settings: dict[str, str] | None = None
) -> dict[str, float]:
    from switchboard.db.models import AgentConversation, AgentRun, AgentStep, ProactiveInsight
    from switchboard.db.session import session_scope
    from switchboard.settings import get_settings
    from switchboard.tasks.runs import dispatch_insight

    flush_redis()
    with scratch_database(f"lb_{name}") as url, Processes(tmp) as processes:
        os.environ["SWITCHBOARD_DATABASE_URL"] = url
        get_settings.cache_clear()
        queue = get_settings().queue_name("default")
        now = dt.datetime.now(dt.UTC)
        rows = [insight_row("medium", f"lb-{n}", now, dt.timedelta(hours=4)) for n in range(runs)]
        with session_scope() as session:
            ids = list(session.execute(insert(ProactiveInsight).returning(ProactiveInsight.id), rows).scalars())
        env = bench_env(url, tmp / name, SWITCHBOARD_QUEUE_PREFIX=QUEUE_PREFIX,
                        SWITCHBOARD_OFFLINE_LATENCY_MS=str(latency_ms), **(settings or {}))  # fmt: skip
        log = processes.log_dir / f"{name}.log"
        child = processes.start(name, ["worker", "--queues", "low", "--name", f"{name}@%h", *worker_args],
                                {**env, "SWITCHBOARD_LOG_LEVEL": "INFO", "SWITCHBOARD_LOG_FORMAT": "text"})  # fmt: skip
        nodes = _node_names(name, worker_args)
        _wait_worker_ready(log, count=len(nodes))
        for insight_id in ids:
            dispatch_insight(insight_id, queue=queue)
        sampler = Sampler(child.pid)
        idle_mb = sampler.rss_mb()  # ready, nothing consumed yet
        sampler.start()
        cpu_before = sampler.cpu_s()
        started = _start_consuming(nodes, queue)
        while True:
            with session_scope() as session:
                finished = session.scalar(
                    select(func.count()).where(AgentRun.status.in_(("done", "failed", "awaiting_approval")))
                )
            if finished == runs:
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        cpu = sampler.cpu_s() - cpu_before
        sampler.stop()
        with session_scope() as session:
            failed = session.scalar(select(func.count()).where(AgentRun.status == "failed"))
            calls = session.scalar(select(func.count()).where(AgentConversation.role == "assistant"))
            steps = session.scalar(select(func.count()).select_from(AgentStep)) or 1
    if failed:
        raise SystemExit(f"[{name}] {failed} of {runs} runs failed: the figure would be meaningless")
    result = {"runs_per_s": runs / elapsed, "calls_per_run": (calls or 0) / runs, "peak_rss_mb": sampler.peak_mb,
              "cpu_busy": cpu / (elapsed * (os.cpu_count() or 1))}  # fmt: skip
    slots = int(worker_args[worker_args.index("--concurrency") + 1]) if "--concurrency" in worker_args else None
    in_flight = slots or _shipped_slots()  # prefork2: one process of 2
    print(f"[{name}] {runs} runs in {elapsed:.1f} s: {result['runs_per_s']:.2f} runs/s, "
          f"{result['calls_per_run']:.1f} model calls a run, peak RSS {sampler.peak_mb:.0f} MB, "
          f"CPU {100 * result['cpu_busy']:.0f}% of {os.cpu_count()} cores", flush=True)  # fmt: skip
    print(f"[{name}] per in-flight step: {(sampler.peak_mb - idle_mb) / in_flight:.2f} MB "
          f"(RSS {idle_mb:.0f} MB ready -> {sampler.peak_mb:.0f} MB peak, {in_flight} slots); "
          f"CPU per step {1000 * cpu / steps:.1f} ms", flush=True)  # fmt: skip
    return result


def _traced(tmp: Path, name: str, runs: int, latency_ms: int, settings: dict[str, str]) -> float:
    """The shipped worker again, every span exported to a local OTLP/HTTP receiver that decodes
    them (tests/support/otlp.py); runs/s."""
    from tests.support.otlp import Receiver

    with Receiver() as receiver:
        traced = measure(tmp, name, runs, latency_ms, [],
                         {**settings, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})  # fmt: skip
        time.sleep(2)  # the last batch
        chats = sum(1 for span in receiver.spans if span.name.startswith("chat "))
        print(f"[{name}] {len(receiver.spans)} spans received ({chats} model calls), {len(receiver.refused)} refused",
              flush=True)  # fmt: skip
    return traced["runs_per_s"]


def _shipped_slots() -> int:
    from switchboard.settings import get_settings

    return get_settings().processes * get_settings().concurrency


def _node_names(name: str, worker_args: list[str]) -> list[str]:
    """The Celery nodes `switchboard worker --name NAME@%h …` starts (one per process)."""
    from switchboard.processes import worker_commands
    from switchboard.settings import get_settings

    pool = worker_args[worker_args.index("--pool") + 1] if "--pool" in worker_args else None
    commands = worker_commands(get_settings(), ["low"], name=f"{name}@{socket.gethostname()}", pool=pool)
    return [argv[argv.index("--hostname") + 1] for _, argv in commands]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=600, help="full runs on the worker as shipped")
    parser.add_argument("--prefork-runs", type=int, default=60, help="full runs on prefork, concurrency 2")
    parser.add_argument("--latency-ms", type=int, default=500, help="each model call's latency")
    parser.add_argument("--set", action="append", default=[], metavar="SWITCHBOARD_NAME=VALUE",
                        help="a setting for the shipped worker (repeatable), to try another size")  # fmt: skip
    parser.add_argument("--tracing", action="store_true",
                        help="the shipped worker again, exporting its traces to a local OTLP receiver")  # fmt: skip
    parser.add_argument("--tracing-rounds", type=int, default=3, help="traced runs, alternating with untraced")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    if bad := [name for name in settings if not name.startswith("SWITCHBOARD_")]:
        parser.error(f"--set takes SWITCHBOARD_NAME=VALUE, not {bad[0]}")
    os.environ.update(settings)  # the bound counts the shipped worker's slots as set
    slots = _shipped_slots()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        shipped = measure(Path(tmp), "shipped", args.runs, args.latency_ms, [], settings)
        if args.tracing:  # alternating, so drift on a shared machine falls on both sides alike
            off, on = [shipped["runs_per_s"]], []
            for round_ in range(args.tracing_rounds):
                on.append(_traced(Path(tmp), f"traced{round_}", args.runs, args.latency_ms, settings))
                if round_ < args.tracing_rounds - 1:  # each phase its own node names and database
                    again = measure(Path(tmp), f"untraced{round_}", args.runs, args.latency_ms, [], settings)
                    off.append(again["runs_per_s"])
            off_median, on_median = statistics.median(off), statistics.median(on)
            print(f"[tracing] off {', '.join(f'{x:.2f}' for x in off)} runs/s; on {', '.join(f'{x:.2f}' for x in on)}")
            print(f"tracing_off_runs_per_s={off_median:.2f} tracing_on_runs_per_s={on_median:.2f} "
                  f"cost={1 - on_median / off_median:.3f}", flush=True)  # fmt: skip
        prefork = measure(Path(tmp), "prefork2", args.prefork_runs, args.latency_ms,
                          ["--pool", "prefork", "--concurrency", "2"])  # fmt: skip
    bound = slots / (shipped["calls_per_run"] * args.latency_ms / 1000)
    print(f"[bound] {slots} slots / ({shipped['calls_per_run']:.1f} calls x {args.latency_ms} ms) = "
          f"{bound:.1f} runs/s; shipped/prefork2 = {shipped['runs_per_s'] / prefork['runs_per_s']:.1f}x")  # fmt: skip
    print(f"runs_per_s={shipped['runs_per_s']:.2f} prefork2_runs_per_s={prefork['runs_per_s']:.2f} "
          f"bound_runs_per_s={bound:.1f} of_bound={shipped['runs_per_s'] / bound:.2f} "
          f"peak_rss_mb={shipped['peak_rss_mb']:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
