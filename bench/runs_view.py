"""The dashboard's queries at scale: the last-50 runs (unfiltered and with each filter) and the
chart series, on Postgres with 200,000 runs and 1,000,000 agent_steps rows.

Data (loaded with COPY into a scratch database migrated to head): 200,000 runs spread evenly over
the last 30 days (~6,700 a day), each with five step rows — the three agent steps plus two
sub-steps (`analyst.tools`, `advisor.actions`), so the steps table reaches 1,000,000 rows — 90%
done, 5% failed, 3% awaiting approval, 1% expired, 1% running; 13 insight kinds; one executed
action per done run and an approval per awaiting run. Each query runs 5 times to warm up and
then 30 times; figures are medians (p95 in brackets). Chart windows are the dashboard's: 24
hourly buckets for latency and outcomes, 14 days for usage.

Usage: .venv/bin/python bench/runs_view.py [--runs N]   (Postgres as for the tests)
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REDIS_URL, percentile, scratch_database

KINDS = [
    "stripe_failed_payment_spike", "stripe_refund_spike", "stripe_dispute_spike", "stripe_payout_mismatch",
    "stripe_charge_without_paid_invoice", "hubspot_deal_without_owner", "hubspot_contact_without_owner",
    "hubspot_closed_won_without_payment", "hubspot_duplicate_company", "hubspot_stale_deal",
    "calls_connect_rate_drop", "calls_short_call_ratio", "calls_no_next_step",
]  # fmt: skip
STEPS = [("watcher", "watcher"), ("analyst", "analyst"), ("analyst.tools", "analyst"), ("advisor", "advisor"),
         ("advisor.actions", "advisor")]  # fmt: skip
STATUSES = [("done", 0.90), ("failed", 0.05), ("awaiting_approval", 0.03), ("expired", 0.01), ("running", 0.01)]
DAYS = 30
WARMUP, REPEATS = 5, 30


def _status(rng: random.Random) -> str:
    roll, total = rng.random(), 0.0
    for status, share in STATUSES:
        total += share
        if roll < total:
            return status
    return "done"


def _ts(value: dt.datetime) -> str:
    return value.isoformat()


def load(url: str, runs: int, rng: random.Random) -> None:
    """COPY the runs, steps, executions and approvals in; ANALYZE."""
    now = dt.datetime.now(dt.UTC)
    run_buf, step_buf, exec_buf, appr_buf = io.StringIO(), io.StringIO(), io.StringIO(), io.StringIO()
    for index in range(runs):
        run_id = str(uuid.UUID(int=rng.getrandbits(128)))
        created = now - dt.timedelta(seconds=DAYS * 86400 * (index + 0.5) / runs)
        status = _status(rng)
        kind = rng.choice(KINDS)
        reached = "watcher" if status == "failed" and rng.random() < 0.3 else "advisor"
        offset = 0.0
        tokens_in = tokens_out = 0
        cost = 0.0
        for step, agent in STEPS:
            wait_ms = rng.uniform(2, 400)
            latency = rng.lognormvariate(7.5 if agent != "watcher" else 6.5, 0.6)  # ~1.8 s / ~0.7 s medians
            started = created + dt.timedelta(milliseconds=offset + wait_ms)
            finished = started + dt.timedelta(milliseconds=latency)
            offset += wait_ms + latency
            t_in, t_out = rng.randint(400, 4000), rng.randint(80, 900)
            step_cost = (t_in * 3 + t_out * 15) / 1_000_000
            tokens_in, tokens_out, cost = tokens_in + t_in, tokens_out + t_out, cost + step_cost
            step_status = "failed" if status == "failed" and agent == reached else "done"
            step_buf.write(
                f"{run_id}\t{step}\t{agent}\t{step_status}\t1\t0\t{_ts(created)}\t{_ts(started)}\t{_ts(finished)}\t"
                f"{wait_ms:.1f}\t{latency:.1f}\t{t_in}\t{t_out}\t{step_cost:.6f}\tanthropic\tclaude-sonnet-5\t"
                f"{_ts(created)}\t{_ts(created)}\n"
            )
        error = "advisor: IntegrationExhausted: hubspot:tasks.create failed" if status == "failed" else "\\N"
        run_buf.write(
            f"{run_id}\t{kind}\twatch_analyze_advise\t{reached}\t{status}\tt.default\t5\tanthropic+gemini\t"
            f"claude-sonnet-5\t{_ts(created)}\t{_ts(created)}\t{_ts(created + dt.timedelta(milliseconds=offset))}\t"
            f"{rng.uniform(2, 400):.1f}\t{offset:.1f}\t{tokens_in}\t{tokens_out}\t{cost:.6f}\t0\t{error}\t"
            f"{_ts(created)}\t{_ts(created)}\n"
        )
        if status == "done":
            exec_buf.write(f"{run_id}:advisor:0\t{run_id}\tflag_finance_review\tdone\t{_ts(created)}\n")
        if status == "awaiting_approval":
            appr_buf.write(
                f"{run_id}\t{run_id}:advisor:1\tdraft_customer_message\t{{}}\thigh\tpending\t{_ts(created)}\t"
                f"{_ts(created)}\n"
            )
    connection = psycopg2.connect(url.replace("postgresql+psycopg2", "postgresql"))
    try:
        with connection, connection.cursor() as cursor:
            for buffer, table, columns in (
                (run_buf, "agent_runs", "id, insight_kind, task, agent, status, queue, priority, provider, model, "
                 "enqueued_at, started_at, finished_at, queue_wait_ms, latency_ms, tokens_in, tokens_out, cost_usd, "
                 "retries, error, created_at, updated_at"),
                (step_buf, "agent_steps", "run_id, step, agent, status, attempt, retries, enqueued_at, started_at, "
                 "finished_at, queue_wait_ms, latency_ms, tokens_in, tokens_out, cost_usd, provider, model, "
                 "created_at, updated_at"),
                (exec_buf, "action_executions", "idempotency_key, run_id, action_type, status, executed_at"),
                (appr_buf, "approvals", "run_id, action_key, action_type, action, risk, status, created_at, "
                 "updated_at"),
            ):  # fmt: skip
                buffer.seek(0)
                cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", buffer)
            cursor.execute("SELECT count(*) FROM agent_steps")
            print(f"loaded {runs:,} runs and {cursor.fetchone()[0]:,} agent_steps rows", flush=True)  # type: ignore[index]
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    finally:
        connection.close()


def measure(name: str, query: Callable[[], Any]) -> float:
    for _ in range(WARMUP):
        query()
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        query()
        samples.append((time.perf_counter() - started) * 1000)
    p50 = percentile(samples, 0.5)
    print(f"{name:44} p50={p50:6.1f} ms  (p95 {percentile(samples, 0.95):.1f} ms)", flush=True)
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(6)
    with scratch_database("runsview") as url:
        os.environ.update(SWITCHBOARD_DATABASE_URL=url, SWITCHBOARD_BROKER_URL=REDIS_URL)
        from switchboard.db import queries
        from switchboard.settings import get_settings

        get_settings.cache_clear()
        started = time.monotonic()
        load(url, args.runs, rng)
        print(f"load + VACUUM ANALYZE took {time.monotonic() - started:.1f} s", flush=True)
        recent = [
            measure("recent runs (last 50)", lambda: queries.recent_runs(50)),
            measure("recent runs, status=failed", lambda: queries.recent_runs(50, status="failed")),
            measure("recent runs, agent=watcher", lambda: queries.recent_runs(50, agent="watcher")),
            measure("recent runs, insight_kind=…", lambda: queries.recent_runs(50, insight_kind="hubspot_stale_deal")),
            measure("recent runs, kind + status=awaiting_approval", lambda: queries.recent_runs(
                50, insight_kind="calls_no_next_step", status="awaiting_approval")),
        ]  # fmt: skip
        from sqlalchemy import text

        from switchboard.db.session import get_engine

        def view() -> None:
            with get_engine().connect() as connection:
                connection.execute(text("SELECT * FROM recent_agent_runs")).all()

        recent.append(measure("recent_agent_runs view", view))
        charts = [
            measure("chart: p50/p95 latency per agent, 24 h", lambda: queries.latency_percentiles(24)),
            measure("chart: outcomes per hour, 24 h", lambda: queries.run_outcomes(24)),
            measure("chart: tokens and cost per day, 14 days", lambda: queries.usage_per_day(14)),
        ]
        all_charts = measure(
            "all three chart queries together",
            lambda: (queries.latency_percentiles(24), queries.run_outcomes(24), queries.usage_per_day(14)),
        )
        measure("/metrics: runs by status + pending approvals", lambda: (
            queries.run_status_counts(), queries.pending_approval_count()))  # fmt: skip
    print(f"slowest recent-runs variant {max(recent):.1f} ms; chart queries together {all_charts:.1f} ms")
    print(f"recent_runs_ms={max(recent):.1f} charts_ms={max(charts):.1f}")


if __name__ == "__main__":
    main()
