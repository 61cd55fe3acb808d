"""Ingestion throughput: `POST /api/events/batch` through the real uvicorn server into Postgres,
against the same rows through a raw psycopg2 `COPY`, plus single-event latency at a fixed rate.

  api:    --events events (default 50,000) in batches of 500, from --clients concurrent
          keep-alive connections, to `switchboard api` (uvicorn, loopback); each batch is one
          set-based INSERT … ON CONFLICT DO NOTHING RETURNING and one Celery message
  copy:   the same rows, the table emptied first, through `COPY events (…) FROM STDIN` (CSV)
  single: `POST /api/events` at --rate requests/s (open loop: each request is sent at its
          scheduled time) for --seconds, first, on the idle server; latency is send → response

Usage: .venv/bin/python bench/ingest.py   (Postgres and Redis as for the tests)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import io
import json
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Processes, bench_env, flush_redis, percentile, scratch_database

BATCH = 500
API_KEY = "sbk_bench_" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _events(count: int, tag: str) -> list[dict[str, Any]]:
    """Stripe-shaped events with a realistic payload (~600 bytes of JSON each)."""
    now = int(time.time())
    return [
        {"source": "stripe", "external_id": f"evt_{tag}_{n:07d}", "type": "charge.succeeded",
         "occurred_at": f"2026-11-20T10:{n // 60 % 60:02d}:{n % 60:02d}Z",
         "payload": {"id": f"evt_{tag}_{n:07d}", "object": "event", "type": "charge.succeeded", "created": now,
                     "livemode": False, "api_version": "2024-06-20",
                     "data": {"object": {"id": f"ch_{tag}_{n:07d}", "object": "charge", "amount": 1000 + n,
                                         "currency": "usd", "customer": f"cus_{n % 997:05d}", "status": "succeeded",
                                         "created": now, "description": "Subscription renewal",
                                         "metadata": {"order": str(n), "plan": "pro"}}}}}
        for n in range(count)
    ]  # fmt: skip


def _wait_ready(base: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the API did not start at {base}")


async def _post_batches(base: str, batches: list[bytes], clients: int) -> float:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in batches:
        queue.put_nowait(body)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60.0) as http:
            while not queue.empty():
                response = await http.post("/api/events/batch", content=queue.get_nowait())
                if response.status_code != 202 or response.json()["accepted"] != BATCH:
                    raise SystemExit(f"batch refused: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


async def _single_latencies(base: str, rate: float, seconds: float, tag: str) -> list[float]:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    events = [json.dumps(e).encode() for e in _events(int(rate * seconds), tag)]
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10.0, limits=limits) as http:

        async def one(body: bytes) -> None:
            sent = time.perf_counter()
            response = await http.post("/api/events", content=body)
            latencies.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 202:
                raise SystemExit(f"event refused: {response.status_code} {response.text[:300]}")

        for body in events[:20]:  # warm the connections
            await one(body)
        latencies.clear()
        start = time.perf_counter()
        pending = []
        for n, body in enumerate(events[20:]):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(body)))
        await asyncio.gather(*pending)
    return latencies


def _copy(database_url: str, events: list[dict[str, Any]]) -> float:
    connection = psycopg2.connect(database_url)
    try:
        started = time.perf_counter()
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for e in events:
            writer.writerow([e["source"], e["external_id"], e["type"], json.dumps(e["payload"]), e["occurred_at"],
                             "received"])  # fmt: skip
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.copy_expert(
                "COPY events (source, external_id, type, payload, occurred_at, status) FROM STDIN WITH (FORMAT csv)",
                buffer,
            )
        connection.commit()
        return time.perf_counter() - started
    finally:
        connection.close()


def _truncate(database_url: str) -> None:
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE events RESTART IDENTITY")
        connection.commit()
    finally:
        connection.close()


def _count(database_url: str) -> int:
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM events")
            row = cursor.fetchone()
            return int(row[0]) if row else 0
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=50_000, help="events through the batch endpoint")
    parser.add_argument("--clients", type=int, default=4, help="concurrent batch connections")
    parser.add_argument("--rate", type=float, default=200.0, help="single-event requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the single-event run")
    args = parser.parse_args()
    events = _events(args.events - args.events % BATCH, "b")
    batches = [json.dumps({"events": events[i : i + BATCH]}).encode() for i in range(0, len(events), BATCH)]
    # the 50,000 event dicts would make every full collection in this client a ~100 ms pause
    # that shows up as server latency: keep them out of the collector
    gc.collect()
    gc.freeze()
    flush_redis()
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp, scratch_database("ingest") as url:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = bench_env(url, Path(tmp), SWITCHBOARD_INGEST_KEYS=API_KEY, SWITCHBOARD_API_PORT=str(port),
                        SWITCHBOARD_INGEST_MAX_BATCH_EVENTS="1000")  # fmt: skip
        with Processes(Path(tmp)) as processes:
            processes.start("api", ["api"], env)
            _wait_ready(base)
            # single events first, on a quiet server: right after 50,000 inserted rows Postgres
            # is busy with autovacuum and the checkpoint, which is not the figure asked for
            latencies = asyncio.run(_single_latencies(base, args.rate, args.seconds, "s"))
            print(f"single: {len(latencies)} requests at {args.rate:.0f}/s: p50={percentile(latencies, 0.5):.1f} ms "
                  f"p99={percentile(latencies, 0.99):.1f} ms max={max(latencies):.1f} ms", flush=True)  # fmt: skip
            _truncate(url)
            api_s = asyncio.run(_post_batches(base, batches, args.clients))
            stored = _count(url)
            assert stored == len(events), f"{stored} stored of {len(events)}"
            print(f"api: {len(events)} events in {len(batches)} batches of {BATCH} in {api_s:.2f} s", flush=True)
        _truncate(url)
        copy_s = _copy(url, events)
        assert _count(url) == len(events)
        print(f"copy: {len(events)} events in {copy_s:.2f} s", flush=True)
    flush_redis()
    api_rate, copy_rate = len(events) / api_s, len(events) / copy_s
    print(
        f"api_events_per_s={api_rate:.0f} copy_events_per_s={copy_rate:.0f} ratio={api_rate / copy_rate:.2f} "
        f"single_p99_ms={percentile(latencies, 0.99):.1f}"
    )


if __name__ == "__main__":
    main()
