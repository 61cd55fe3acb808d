"""Per-step context: what an agent step accumulates (usage, messages, raw outputs) for the
hooks to write back when the Celery task succeeds, retries or fails. It travels on the task's
own request (`attach`), never in process-wide state: safe under a thread pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from switchboard.agents.llm import BATCH_DISCOUNT, estimate_cost_usd
from switchboard.agents.llm.base import LLMReply
from switchboard.db.runs import Prior, add_cost


@dataclass
class ConversationEntry:
    role: str
    content: str
    provider: str | None = None
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0


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
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0  # None once a turn's cost is unknown
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
        self.cache_read_tokens += reply.cache_read_tokens
        self.cache_write_tokens += reply.cache_write_tokens
        cost = estimate_cost_usd(reply.model, reply.tokens_in, reply.tokens_out, reply.cache_read_tokens,
                                 reply.cache_write_tokens)  # fmt: skip
        if cost is not None and reply.batch:
            cost *= BATCH_DISCOUNT
        self.cost_usd = add_cost(self.cost_usd, cost)
        self.provider, self.model = reply.provider, reply.model
        content = reply.text or "; ".join(f"tool_use {c.name}({c.input})" for c in reply.tool_calls)
        self.conversation.append(
            ConversationEntry("assistant", content, reply.provider, reply.model, reply.tokens_in, reply.tokens_out)
        )

    def record_prompt(self, role: str, content: str) -> None:
        self.conversation.append(ConversationEntry(role, content))


_ATTRIBUTE = "switchboard_step"


def attach(request: Any, context: StepContext) -> StepContext:
    """Keep a running step's context on its Celery task request (one per task, per thread),
    where the hooks read it when the attempt succeeds, retries or fails."""
    setattr(request, _ATTRIBUTE, context)
    return context


def attached(request: Any) -> StepContext | None:
    """The context `attach` kept on this request (None when the attempt never opened one)."""
    context = getattr(request, _ATTRIBUTE, None)
    return context if isinstance(context, StepContext) else None
