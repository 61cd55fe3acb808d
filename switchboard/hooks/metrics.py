"""Cumulative metrics kept in Redis by the workers and read by `GET /metrics` at scrape time.

Every worker process on every machine adds to the same Redis hashes, so one scrape of any API
process sees the whole deployment (no per-process registries, no multiprocess directory).
Counters only ever go up; Prometheus treats a Redis flush like a process restart (a reset).

Keys (prefixed with the deployment's queue prefix, so deployments sharing a Redis stay apart):
  …metrics:step_latency:<agent>  hash: one field per histogram bucket (non-cumulative), sum, count
  …metrics:tokens                hash: "<provider>:in" / ":out" / ":cache_read" / ":cache_write" tokens,
                                 "<provider>:cost" USD (known costs), "<provider>:unpriced" steps
  …metrics:ratelimit_waits       hash: "<integration>" deferrals, "<integration>:seconds" waited
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from switchboard.settings import Settings, get_settings

log = logging.getLogger("switchboard.hooks.metrics")

# Step latency buckets in seconds: offline steps take milliseconds, model calls seconds to minutes.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def key_prefix(settings: Settings | None = None) -> str:
    return f"switchboard:{(settings or get_settings()).queue_prefix}metrics:"


def metrics_redis(settings: Settings | None = None) -> redis.Redis:
    from switchboard.integrations.resilience import shared_redis

    return shared_redis(settings)


def bucket_field(seconds: float) -> str:
    """The (non-cumulative) bucket a latency falls in: its upper bound, or +Inf."""
    for bound in LATENCY_BUCKETS_S:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def record_step(
    agent: str | None,
    latency_ms: float | None,
    provider: str | None = None,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost_usd: float | None = 0.0,
    cache_read: int = 0,
    cache_write: int = 0,
) -> None:
    """Add one step attempt to the counters in one round trip: its latency to its agent's
    histogram (when it finished) and its model usage to its provider's totals."""
    prefix = key_prefix()
    pipe = metrics_redis().pipeline(transaction=False)
    if agent is not None and latency_ms is not None:
        seconds = max(0.0, latency_ms / 1000.0)
        key = f"{prefix}step_latency:{agent}"
        pipe.hincrby(key, bucket_field(seconds), 1)
        pipe.hincrbyfloat(key, "sum", seconds)
        pipe.hincrby(key, "count", 1)
    if provider and (tokens_in or tokens_out or cache_read or cache_write or cost_usd != 0.0):
        key = f"{prefix}tokens"
        pipe.hincrby(key, f"{provider}:in", tokens_in)
        pipe.hincrby(key, f"{provider}:out", tokens_out)
        pipe.hincrby(key, f"{provider}:cache_read", cache_read)
        pipe.hincrby(key, f"{provider}:cache_write", cache_write)
        if cost_usd is None:
            pipe.hincrby(key, f"{provider}:unpriced", 1)
        else:
            pipe.hincrbyfloat(key, f"{provider}:cost", cost_usd)
    if len(pipe):
        pipe.execute()


def add_rate_limit_wait(integration: str, seconds: float) -> None:
    """Count one call deferred because its integration's shared rate budget was spent."""
    key = f"{key_prefix()}ratelimit_waits"
    pipe = metrics_redis().pipeline(transaction=False)
    pipe.hincrby(key, integration, 1)
    pipe.hincrbyfloat(key, f"{integration}:seconds", max(0.0, seconds))
    pipe.execute()


def on_any_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    """Every task (agent step, fetch, approved action) that was deferred by a spent rate budget."""
    from switchboard.integrations.resilience import Deferred

    try:
        deferred = getattr(reason, "exc", None)
        if not isinstance(deferred, Deferred) or "rate budget spent" not in str(deferred):
            return
        # Deferred messages read "<integration>:<operation>: rate budget spent, …"
        integration = str(deferred).split(":", 1)[0].strip() or "unknown"
        add_rate_limit_wait(integration, float(deferred.retry_after_s or 0.0))
    except Exception:  # losing a metric must not disturb the task
        log.exception("recording a rate-limit wait failed")


def read_hash(client: redis.Redis, name: str) -> dict[str, str]:
    raw: Any = client.hgetall(name)
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }


def connect() -> None:
    from celery import signals

    signals.task_retry.connect(on_any_retry, weak=False)
