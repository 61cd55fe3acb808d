"""Per-step context: what an agent step accumulates (usage, messages, raw outputs) for the
hooks to write back when the Celery task succeeds, retries or fails."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from switchboard.agents.llm import estimate_cost_usd
from switchboard.agents.llm.base import LLMReply


@dataclass
class ConversationEntry:
    role: str
    content: str
    provider: str | None = None
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0


RAW_OUTPUTS = "raw_outputs"  # a failed step's unparseable model answers, kept in its output


@dataclass(frozen=True)
class Prior:
    """A step's state when an attempt of it starts, as the start hook found it: a finished
    step's output is handed on instead of being made again, and the Advisor re-uses a plan
    an earlier attempt persisted instead of asking the model for a second one."""

    status: str | None
    output: dict[str, Any] | None


@dataclass
class StepContext:
    """Everything one attempt of one agent step learns about itself."""

    run_id: str
    step: str
    agent: str
    task_id: str
    entity_type: str | None = None
    entity_id: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    provider: str | None = None
    model: str | None = None
    conversation: list[ConversationEntry] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    prior: Prior | None = None  # the step's state before this attempt
    tool_results: dict[str, Any] = field(default_factory=dict)  # what the step's tools read, by call

    def record_reply(self, reply: LLMReply) -> None:
        """Add one model turn's usage and text to the step's totals and transcript."""
        self.tokens_in += reply.tokens_in
        self.tokens_out += reply.tokens_out
        self.cost_usd += estimate_cost_usd(reply.model, reply.tokens_in, reply.tokens_out)
        self.provider, self.model = reply.provider, reply.model
        content = reply.text or "; ".join(f"tool_use {c.name}({c.input})" for c in reply.tool_calls)
        self.conversation.append(
            ConversationEntry("assistant", content, reply.provider, reply.model, reply.tokens_in, reply.tokens_out)
        )

    def record_prompt(self, role: str, content: str) -> None:
        self.conversation.append(ConversationEntry(role, content))


_lock = threading.Lock()
_contexts: dict[str, StepContext] = {}
_priors: dict[str, Prior] = {}


def remember_prior(task_id: str, prior: Prior) -> None:
    """Called by the start hook, in the process that then runs the task."""
    with _lock:
        _priors[task_id] = prior


def take_prior(task_id: str) -> Prior | None:
    """The step's state the start hook found (None when the hook could not record the start)."""
    with _lock:
        return _priors.pop(task_id, None)


def read_prior(run_id: str, step: str) -> Prior:
    """The step's state read from the database (when the start hook could not say)."""
    from sqlalchemy import select

    from switchboard.db.models import AgentStep
    from switchboard.db.session import session_scope

    with session_scope(autocommit=True) as session:
        row = session.execute(
            select(AgentStep.status, AgentStep.output).where(AgentStep.run_id == run_id, AgentStep.step == step)
        ).first()
        return Prior(row.status, row.output) if row is not None else Prior(None, None)


def open_context(context: StepContext) -> StepContext:
    """Register the context of a running task so the signal hooks can find it by task id."""
    with _lock:
        _contexts[context.task_id] = context
    return context


def pop_context(task_id: str) -> StepContext | None:
    """Take the context of a finished attempt (None when the task failed before opening one);
    the attempt's prior state goes too, if the body never took it."""
    with _lock:
        _priors.pop(task_id, None)
        return _contexts.pop(task_id, None)
