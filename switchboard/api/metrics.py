"""`GET /metrics` in the Prometheus text format, computed at scrape time.

A custom collector reads the shared state every worker writes — Postgres (runs by status,
pending approvals), Redis (the Celery queues, the circuit breakers and rate-limit counters of
`integrations/resilience.py`, and the step-latency/token counters of `hooks/metrics.py`) — so
any number of worker processes on any number of machines and any API process agree, with no
per-process registry. A source that cannot be read is reported by `switchboard_scrape_ok` = 0
and its series are left out; the scrape itself still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool

from switchboard.api.auth import require_operator
from switchboard.hooks import metrics as hook_metrics
from switchboard.pipeline import AGENTS
from switchboard.settings import QUEUE_LEVELS, Settings, get_settings

log = logging.getLogger("switchboard.api.metrics")
router = APIRouter(tags=["metrics"])
INTEGRATIONS = ("stripe", "hubspot", "calls")
BREAKER_STATES = ("closed", "open", "half_open")


def queue_depths(settings: Settings | None = None) -> dict[str, int]:
    """Messages waiting in each Celery queue (every Redis priority list of the queue)."""
    from switchboard.celery_app import PRIORITY_STEPS

    settings = settings or get_settings()
    client = hook_metrics.metrics_redis(settings)
    names = [settings.queue_name(level) for level in QUEUE_LEVELS]
    pipe = client.pipeline(transaction=False)
    for name in names:
        # kombu keeps one list per priority step: "<queue>" for 0, "<queue>\x06\x16<n>" for the rest
        for step in PRIORITY_STEPS:
            pipe.llen(name if step == 0 else f"{name}\x06\x16{step}")
    lengths = pipe.execute()
    per_queue = len(PRIORITY_STEPS)
    return {name: int(sum(lengths[i * per_queue : (i + 1) * per_queue])) for i, name in enumerate(names)}


class SwitchboardCollector(Collector):
    """Reads the deployment's shared state at scrape time."""

    def collect(self) -> Iterator[Metric]:
        settings = get_settings()
        ok = GaugeMetricFamily(
            "switchboard_scrape_ok", "1 when the source could be read at this scrape", labels=["source"]
        )
        for source, produce in (("database", self._database), ("redis", self._redis)):
            try:
                families = list(produce(settings))
            except Exception as error:
                log.warning("metrics: reading %s failed: %s", source, type(error).__name__)
                ok.add_metric([source], 0)
                continue
            ok.add_metric([source], 1)
            yield from families
        yield ok

    def _database(self, settings: Settings) -> Iterator[Metric]:
        from switchboard.db.models import RUN_STATUSES
        from switchboard.db.queries import pending_approval_count, run_status_counts

        counts = run_status_counts()
        runs = GaugeMetricFamily("switchboard_runs", "Agent runs by current status", labels=["status"])
        for status in RUN_STATUSES:
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        yield GaugeMetricFamily(
            "switchboard_approvals_pending", "High-risk actions waiting for a decision", value=pending_approval_count()
        )

    def _redis(self, settings: Settings) -> Iterator[Metric]:
        client = hook_metrics.metrics_redis(settings)
        prefix = hook_metrics.key_prefix(settings)

        depth = GaugeMetricFamily("switchboard_queue_depth", "Messages waiting in the Celery queue", labels=["queue"])
        for name, value in queue_depths(settings).items():
            depth.add_metric([name], value)
        yield depth

        latency = HistogramMetricFamily(
            "switchboard_step_latency_seconds", "Latency of finished agent steps", labels=["agent"]
        )
        for agent in AGENTS:
            raw = hook_metrics.read_hash(client, f"{prefix}step_latency:{agent}")
            cumulative, buckets = 0, []
            for bound in hook_metrics.LATENCY_BUCKETS_S:
                cumulative += int(raw.get(repr(bound), 0))
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", int(raw.get("count", 0))))
            latency.add_metric([agent], buckets, sum_value=float(raw.get("sum", 0.0)))
        yield latency

        state = GaugeMetricFamily(
            "switchboard_circuit_breaker_state",
            "1 for the state the integration's shared circuit breaker is in",
            labels=["integration", "state"],
        )
        opened = CounterMetricFamily(
            "switchboard_circuit_breaker_opened", "Times the integration's circuit opened", labels=["integration"]
        )
        open_flag = GaugeMetricFamily(
            "switchboard_circuit_breaker_open", "1 while the integration's circuit is open or half-open",
            labels=["integration"],
        )  # fmt: skip
        for integration in INTEGRATIONS:
            raw = hook_metrics.read_hash(client, f"switchboard:breaker:{integration}")
            current = raw.get("state", "closed")
            for name in BREAKER_STATES:
                state.add_metric([integration, name], 1 if current == name else 0)
            open_flag.add_metric([integration], 0 if current == "closed" else 1)
            opened.add_metric([integration], int(raw.get("opened", 0)))
        yield state
        yield open_flag
        yield opened

        waits = hook_metrics.read_hash(client, f"{prefix}ratelimit_waits")
        wait_count = CounterMetricFamily(
            "switchboard_rate_limit_waits",
            "Calls deferred because the integration's shared rate budget was spent",
            labels=["integration"],
        )
        wait_seconds = CounterMetricFamily(
            "switchboard_rate_limit_wait_seconds", "Time those calls were deferred by", labels=["integration"]
        )
        names = sorted(set(INTEGRATIONS) | {k for k in waits if ":" not in k})
        for integration in names:
            wait_count.add_metric([integration], int(waits.get(integration, 0)))
            wait_seconds.add_metric([integration], float(waits.get(f"{integration}:seconds", 0.0)))
        yield wait_count
        yield wait_seconds

        usage = hook_metrics.read_hash(client, f"{prefix}tokens")
        tokens = CounterMetricFamily(
            "switchboard_llm_tokens",
            "Model tokens used, by provider and direction (in: input at the full price; cache_read, cache_write)",
            labels=["provider", "direction"],
        )
        cost = CounterMetricFamily(
            "switchboard_llm_cost_usd", "Estimated model cost in USD, by provider", labels=["provider"]
        )
        unpriced = CounterMetricFamily(
            "switchboard_llm_unpriced_steps",
            "Steps whose cost is unknown (a model without a price)",
            labels=["provider"],
        )
        providers = sorted({field.split(":", 1)[0] for field in usage})
        for provider in providers:
            tokens.add_metric([provider, "in"], int(usage.get(f"{provider}:in", 0)))
            tokens.add_metric([provider, "out"], int(usage.get(f"{provider}:out", 0)))
            tokens.add_metric([provider, "cache_read"], int(usage.get(f"{provider}:cache_read", 0)))
            tokens.add_metric([provider, "cache_write"], int(usage.get(f"{provider}:cache_write", 0)))
            cost.add_metric([provider], float(usage.get(f"{provider}:cost", 0.0)))
            unpriced.add_metric([provider], int(usage.get(f"{provider}:unpriced", 0)))
        yield tokens
        yield cost
        yield unpriced


_registry = CollectorRegistry(auto_describe=False)
_registry.register(SwitchboardCollector())


def render_metrics() -> bytes:
    return generate_latest(_registry)


@router.get(
    "/metrics",
    dependencies=[Depends(require_operator)],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics() -> Response:
    """Prometheus metrics of the whole deployment (read from Postgres and Redis at scrape time)."""
    body: Any = await run_in_threadpool(render_metrics)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
