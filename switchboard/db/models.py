"""SQLAlchemy 2.0 models of the shared memory.

The five seed tables keep the names the old stack used (knowledge_base, agent_conversations,
agent_decisions, proactive_insights, agent_context); the rest are Switchboard's own. Types are
portable: JSON becomes JSONB on PostgreSQL, big integer keys become SQLite's INTEGER rowid.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from switchboard.utc import as_utc

# Explicit constraint names keep migrations reproducible on both databases.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCTimestamp(TypeDecorator[dt.datetime]):
    """A timestamp read back timezone-aware in UTC from every database (SQLite keeps no offset,
    so its values come back naive): no caller fixes up naive datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return as_utc(value) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return as_utc(value) if value is not None else None


Timestamp = UTCTimestamp()

SEVERITIES = ("low", "medium", "high", "critical")


class InsightStatus(StrEnum):
    NEW = "new"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"
    AWAITING_APPROVAL = "awaiting_approval"
    MERGED = "merged"


class RunStatus(StrEnum):
    """The status of a run, and of each of its steps."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"
    FAILED = "failed"
    AWAITING_APPROVAL = "awaiting_approval"
    EXPIRED = "expired"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXECUTED = "executed"


INSIGHT_STATUSES = tuple(status.value for status in InsightStatus)
OPEN_INSIGHT_STATUSES = ("new", "queued", "running", "awaiting_approval")
RUN_STATUSES = tuple(status.value for status in RunStatus)
# runs that count against an entity's concurrency limit (the orchestrator's check)
ACTIVE_RUN_STATUSES = ("queued", "running", "retrying")
# deferred: the call waits without using an attempt (an overloaded model)
TOOL_CALL_STATUSES = ("pending", "retrying", "deferred", "done", "failed")
BACKFILL_STATUSES = ("pending", "running", "done", "failed")
APPROVAL_STATUSES = tuple(status.value for status in ApprovalStatus)


def new_id() -> str:
    """A random UUID as text: ids cross task boundaries, so they are strings everywhere."""
    return str(uuid.uuid4())


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now(), onupdate=func.now())


# --- seed tables ----------------------------------------------------------------------------


class KnowledgeChunk(TimestampMixin, Base):
    """A chunk of text with its embedding; re-embedded when the source's content hash changes."""

    __tablename__ = "knowledge_base"
    __table_args__ = (UniqueConstraint("source", "source_ref", "chunk_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    source_ref: Mapped[str] = mapped_column(String(255))
    chunk_index: Mapped[int] = mapped_column(Integer, default=0)
    content: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[list[float] | None] = mapped_column(JSONType)
    embedding_model: Mapped[str | None] = mapped_column(String(128))
    entity_type: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(255), index=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)


class AgentConversation(Base):
    """One message an agent sent or received, kept for grounding later runs on the same entity."""

    __tablename__ = "agent_conversations"
    __table_args__ = (Index(None, "entity_type", "entity_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    step: Mapped[str | None] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128))
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class AgentDecision(TimestampMixin, Base):
    """A decision, a dispatch record or a tool call, with its status and attempt history."""

    __tablename__ = "agent_decisions"
    __table_args__ = (
        CheckConstraint(_in("status", TOOL_CALL_STATUSES), name="status"),
        Index(None, "run_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(36))
    step: Mapped[str | None] = mapped_column(String(32))
    agent: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))  # decision | tool_call | dispatch
    tool: Mapped[str | None] = mapped_column(String(128))
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error_class: Mapped[str | None] = mapped_column(String(128))
    error_message: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)


class ProactiveInsight(TimestampMixin, Base):
    """The orchestrator's work queue: one anomaly to explain and act on."""

    __tablename__ = "proactive_insights"
    __table_args__ = (
        CheckConstraint(_in("severity", SEVERITIES), name="severity"),
        CheckConstraint(_in("status", INSIGHT_STATUSES), name="status"),
        # The claim query: due work by status and next attempt time.
        Index(None, "status", "next_attempt_at"),
        # One episode per anomaly: at most one uncleared insight per dedupe key, whatever its
        # status; a cleared one (the detector saw it clear, or an operator resolved it) may repeat.
        Index(
            "uq_proactive_insights_episode_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text("cleared_at IS NULL"),
            sqlite_where=text("cleared_at IS NULL"),
        ),
        # The orchestrator's per-entity concurrency check finds an entity's insights by it.
        Index(None, "source", "entity_type", "entity_id"),
        # The Watcher ranks its alert among the open ones of its source, oldest first.
        Index(
            "ix_proactive_insights_open_source_created_at",
            "source",
            "created_at",
            postgresql_where=text(_in("status", OPEN_INSIGHT_STATUSES)),
            sqlite_where=text(_in("status", OPEN_INSIGHT_STATUSES)),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str | None] = mapped_column(Text)
    entity_type: Mapped[str | None] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(24), default="new")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    sla_deadline: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    run_id: Mapped[str | None] = mapped_column(String(36))
    queue: Mapped[str | None] = mapped_column(String(64))
    cleared_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)  # the episode ended
    cleared_by: Mapped[str | None] = mapped_column(String(64))  # "detector" or the operator
    # an operator's triage (`db/runs.py`): seen by whom, not run before a time, and why
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    snoozed_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    note: Mapped[str | None] = mapped_column(Text)
    # why Switchboard cannot run it (a legacy row of an adopted table): set aside, cleared
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    # the span that raised it (W3C traceparent): its run continues that trace (tracing.py)
    traceparent: Mapped[str | None] = mapped_column(String(55))


class AgentContext(TimestampMixin, Base):
    """Cached context (facts, summaries) an agent may reuse until it expires."""

    __tablename__ = "agent_context"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


# What was in the database before Switchboard adopted it (db/adopt.py): kind "table" or
# "column" was there already (never dropped by a downgrade); "constraint" and "index"
# Switchboard added to such a table.
adopted_ledger = Table(
    "switchboard_adopted",
    Base.metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("table_name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(128), nullable=True),
    Column("created_at", Timestamp, server_default=func.now(), nullable=False),
    UniqueConstraint("table_name", "kind", "name"),
)


# --- Switchboard's own tables -----------------------------------------------------------------


class Event(Base):
    """An ingested event (webhook, API post or backfill), unique per source and external id."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("source", "external_id"), Index(None, "source", "occurred_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    occurred_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    received_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())
    status: Mapped[str] = mapped_column(String(16), default="received")
    processed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    error: Mapped[str | None] = mapped_column(Text)


class SourceRecord(TimestampMixin, Base):
    """The latest stored state of one object from a source system (a Stripe charge, a HubSpot
    deal, a call), kept so detectors and agent tools read facts without calling the API."""

    __tablename__ = "source_records"
    __table_args__ = (
        UniqueConstraint("source", "object_type", "object_id"),
        Index(None, "source", "object_type", "occurred_at"),
        Index("ix_source_records_object_id", "object_id"),  # the records an analysis cites, by id alone
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(255))
    account: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class AgentRun(TimestampMixin, Base):
    """One Watcher → Analyst → Advisor run with its totals."""

    __tablename__ = "agent_runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index(None, "created_at"),
        Index(None, "status", "created_at"),
        Index(None, "agent", "created_at"),
        # the dashboard's filter by insight kind, newest first
        Index(None, "insight_kind", "created_at"),
        # covering index of the outcome and usage charts (index-only scans over a time window)
        Index("ix_agent_runs_created_at_usage", "created_at", "status", "tokens_in", "tokens_out", "cost_usd"),
        # the active runs of an insight (the orchestrator's per-entity concurrency check, every pass)
        Index(
            "ix_agent_runs_active_insight_id",
            "insight_id",
            postgresql_where=text(_in("status", ACTIVE_RUN_STATUSES)),
            sqlite_where=text(_in("status", ACTIVE_RUN_STATUSES)),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    insight_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("proactive_insights.id", ondelete="SET NULL"))
    insight_kind: Mapped[str | None] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(64), default="watch_analyze_advise")
    agent: Mapped[str | None] = mapped_column(String(32))  # the last agent the run reached
    status: Mapped[str] = mapped_column(String(24), default="pending")
    queue: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[int | None] = mapped_column(Integer)
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128))
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    queue_wait_ms: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)  # input billed at the full price
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)  # output, thinking included
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # NULL: unknown (a model missing from the price table), never a made-up $0
    cost_usd: Mapped[float | None] = mapped_column(Float, default=0.0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    replay_of: Mapped[str | None] = mapped_column(String(36))
    trace_id: Mapped[str | None] = mapped_column(String(32))  # its OpenTelemetry trace, when traced


class AgentStep(TimestampMixin, Base):
    """One step (one Celery task) of a run: its timing, usage, payloads and outcome."""

    __tablename__ = "agent_steps"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        UniqueConstraint("run_id", "step"),
        Index(None, "agent", "started_at"),
        Index(None, "started_at"),
        # covering index of the latency chart (p50/p95 per agent over a time window)
        Index("ix_agent_steps_started_at_latency", "started_at", "agent", "latency_ms"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("agent_runs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(32))
    agent: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(64))
    queue: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    queue_wait_ms: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)  # input billed at the full price
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)  # output, thinking included
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # NULL: unknown (a model missing from the price table), never a made-up $0
    cost_usd: Mapped[float | None] = mapped_column(Float, default=0.0)
    provider: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class ActionExecution(Base):
    """The effect-once ledger: one row per executed side effect, keyed by its idempotency key."""

    __tablename__ = "action_executions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    run_id: Mapped[str | None] = mapped_column(String(36), index=True)
    action_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="done")
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    executed_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class Approval(TimestampMixin, Base):
    """A high-risk action waiting for a human decision."""

    __tablename__ = "approvals"
    __table_args__ = (
        CheckConstraint(_in("status", APPROVAL_STATUSES), name="status"),
        Index(None, "status"),
        Index(None, "run_id"),  # a run's approvals (run page, runs list)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36), ForeignKey("agent_runs.id", ondelete="CASCADE"))
    action_key: Mapped[str] = mapped_column(String(255), unique=True)
    action_type: Mapped[str] = mapped_column(String(64))
    action: Mapped[dict[str, Any]] = mapped_column(JSONType)
    risk: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)


class BackfillJob(TimestampMixin, Base):
    """A tracked backfill of one source over a time window, resumable from its cursor."""

    __tablename__ = "backfill_jobs"
    __table_args__ = (CheckConstraint(_in("status", BACKFILL_STATUSES), name="status"), Index(None, "status"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(32))
    window_start: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    window_end: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    cursor: Mapped[str | None] = mapped_column(Text)
    expected: Mapped[int | None] = mapped_column(Integer)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # gap_detection | api | cli: who asked for it.
    trigger: Mapped[str] = mapped_column(String(16), default="manual", server_default="manual")
    # Pages committed so far; also the version a runner compares-and-sets, so two runners of
    # one job (a redelivered message next to a live one) never commit the same page twice.
    pages: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What gap detection found missing (object keys), when it found the job; null otherwise.
    missing_ids: Mapped[list[str] | None] = mapped_column(JSONType)


class EvalRun(TimestampMixin, Base):
    """One evaluation of a suite with one provider and model, and its aggregate scores."""

    __tablename__ = "eval_runs"
    __table_args__ = (Index(None, "provider", "model", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    suite: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="running")
    trigger: Mapped[str] = mapped_column(String(16), default="manual")
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    baseline_id: Mapped[str | None] = mapped_column(String(36))
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)  # pinned by a person, one per suite
    baseline_pinned_by: Mapped[str | None] = mapped_column(String(64))
    baseline_pinned_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    regression: Mapped[bool] = mapped_column(Boolean, default=False)
    report_path: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class EvalResult(Base):
    """One scenario's outcome within an eval run."""

    __tablename__ = "eval_results"
    __table_args__ = (UniqueConstraint("eval_run_id", "scenario"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    eval_run_id: Mapped[str] = mapped_column(String(36), ForeignKey("eval_runs.id", ondelete="CASCADE"))
    scenario: Mapped[str] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(64))
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now())


class DeadLetter(Base):
    """A message no task could use (undecodable, unknown task, no such run): kept, never redelivered."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    received_at: Mapped[dt.datetime] = mapped_column(Timestamp, server_default=func.now(), index=True)
    reason: Mapped[str] = mapped_column(Text)
    queue: Mapped[str | None] = mapped_column(String(200))
    task_name: Mapped[str | None] = mapped_column(String(200))
    task_id: Mapped[str | None] = mapped_column(String(64))
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    body_excerpt: Mapped[str | None] = mapped_column(Text)


class EntityLink(TimestampMixin, Base):
    """A link between objects of two systems (a Stripe customer and its HubSpot contact, a call
    and its deal), found by enrichment and kept current as the records change; agents join
    across systems through it."""

    __tablename__ = "entity_links"
    __table_args__ = (
        UniqueConstraint("from_kind", "from_id", "to_kind", "to_id", "link_type"),
        Index(None, "to_kind", "to_id"),  # the reverse direction: what links to this deal?
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    from_kind: Mapped[str] = mapped_column(String(64))  # "<source>:<object type>", e.g. stripe:customer
    from_id: Mapped[str] = mapped_column(String(255))
    to_kind: Mapped[str] = mapped_column(String(64))
    to_id: Mapped[str] = mapped_column(String(255))
    link_type: Mapped[str] = mapped_column(String(32))  # email | domain | crm_context
    confidence: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


RECENT_RUNS_VIEW_SQL = """
CREATE VIEW recent_agent_runs AS
SELECT id AS run_id, agent AS agent_type, task, insight_kind, latency_ms, status, error,
       provider, tokens_in, tokens_out, created_at
FROM agent_runs
ORDER BY created_at DESC
LIMIT 50
"""
