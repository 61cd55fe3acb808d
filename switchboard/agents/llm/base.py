"""The provider-neutral LLM interface: one request shape, one reply shape, tool calls included.

Agents build an `LLMRequest` (system prompt, neutral messages, tool specs, and a `purpose`
plus structured `facts` that the offline provider's rules read); each provider converts it
to its own wire format and returns an `LLMReply` with the usage it reported.

An agent's answer is structured: the request defines an `answer` tool whose input schema is
the answer's JSON schema, and `tool_choice="answer"` forces the model to call it (the
Messages API's `{"type": "tool"}`, Gemini's function-calling mode ANY limited to it). What a
provider returns that must go back unchanged on the next turn — thinking blocks and their
signatures, Gemini's thought signatures — travels opaque in `LLMReply.raw` / `Message.raw`.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from switchboard.integrations.resilience import CallContext

Purpose = Literal["watcher.summarise", "analyst.analyse", "advisor.plan", "eval.judge", "repair"]
# auto: the model may call any tool or answer; none: no tool call (the tools stay defined: the
# Messages API rejects tool blocks in a request without them); answer: it must call ANSWER_TOOL.
ToolChoice = Literal["auto", "none", "answer"]
# Why a model turn ended, the same words for every provider (the provider's own in stop_detail).
StopReason = Literal["end_turn", "tool_use", "max_tokens", "refusal", "pause_turn", "malformed", "other"]
ANSWER_TOOL = "answer"


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: name, description and a JSON schema of its input."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str  # JSON text
    is_error: bool = False


@dataclass(frozen=True)
class Message:
    """A neutral chat message: user text, assistant text/tool calls, or tool results."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_results: tuple[ToolResult, ...] = ()
    # an assistant turn exactly as `raw_provider` returned it (thinking blocks, signatures),
    # which that provider sends back instead of rebuilding it from text and tool_calls
    raw: tuple[Any, ...] = ()
    raw_provider: str | None = None


@dataclass(frozen=True)
class LLMRequest:
    purpose: Purpose
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "auto"
    facts: dict[str, Any] = field(default_factory=dict)  # structured context (offline rules)
    max_tokens: int = 1024
    # None: the provider's default; 0: thinking off; N: up to N thinking tokens (within max_tokens)
    thinking_budget: int | None = None


@dataclass(frozen=True)
class LLMReply:
    text: str
    tool_calls: tuple[ToolCall, ...]
    tokens_in: int  # input tokens billed at the full price (cache reads and writes apart)
    tokens_out: int  # output tokens, thinking included
    provider: str
    model: str
    stop_reason: StopReason = "end_turn"
    stop_detail: str | None = None  # the provider's own word for it
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    raw: tuple[Any, ...] = ()  # the assistant content as the provider returned it
    batch: bool = False  # answered through a batch API: billed at BATCH_DISCOUNT

    def as_message(self) -> Message:
        """This turn as the assistant message of the next request's history."""
        return Message(role="assistant", text=self.text, tool_calls=self.tool_calls, raw=self.raw,
                       raw_provider=self.provider)  # fmt: skip


class LLMProvider(abc.ABC):
    """A configured model behind one SDK (or the offline rules)."""

    name: str
    model: str

    @abc.abstractmethod
    def generate(self, request: LLMRequest, context: CallContext | None = None) -> LLMReply:
        """One model turn (made under the resilience layer, logged against ``context``'s run
        and step). Raises Deferred/Retryable for transient faults, Permanent otherwise."""


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer (tolerating ``` fences and prose around it)."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        start, end = stripped.find("{"), stripped.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("no JSON object in the answer") from None
        value = json.loads(stripped[start : end + 1])
    if not isinstance(value, dict):
        raise ValueError("the answer is JSON but not an object")
    return value
