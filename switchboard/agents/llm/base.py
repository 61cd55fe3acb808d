"""The provider-neutral LLM interface: one request shape, one reply shape, tool calls included.

Agents build an `LLMRequest` (system prompt, neutral messages, tool specs, and a `purpose`
plus structured `facts` that the offline provider's rules read); each provider converts it
to its own wire format and returns an `LLMReply` with the usage it reported.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from switchboard.errors import Permanent, Retryable

Purpose = Literal["watcher.summarise", "analyst.analyse", "advisor.plan", "repair"]


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


@dataclass(frozen=True)
class LLMRequest:
    purpose: Purpose
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    # "none": the tools stay defined (the Messages API rejects tool blocks in a request without
    # them) but the model may not call one — how an answer is asked for after tool turns.
    tool_choice: Literal["auto", "none"] = "auto"
    facts: dict[str, Any] = field(default_factory=dict)  # structured context (offline rules)
    max_tokens: int = 1024


@dataclass(frozen=True)
class LLMReply:
    text: str
    tool_calls: tuple[ToolCall, ...]
    tokens_in: int
    tokens_out: int
    provider: str
    model: str
    stop_reason: str | None = None


class LLMProvider(abc.ABC):
    """A configured model behind one SDK (or the offline rules)."""

    name: str
    model: str

    @abc.abstractmethod
    def generate(self, request: LLMRequest) -> LLMReply:
        """One model turn. Raises Retryable for transient faults, Permanent otherwise."""


class LLMRateLimited(Retryable):
    """The provider asked us to slow down (429/529/503)."""


class LLMUnavailable(Retryable):
    """Network error, timeout, 5xx or an unreadable response body."""


class LLMRejected(Permanent):
    """The provider refused the request (4xx other than 429): retrying will not help."""


def retry_after_from_headers(headers: Any) -> float | None:
    """Seconds to wait from Anthropic's retry-after-ms or the standard Retry-After header."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                import datetime as dt

                when = parsedate_to_datetime(value)
                return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
            except (TypeError, ValueError):
                return None
    return None


def classify_http_error(provider: str, status: int, message: str, retry_after_s: float | None) -> Exception:
    """Map an HTTP status from a provider onto our retry semantics."""
    text = f"{provider} answered HTTP {status}: {message[:300]}"
    if status in (429, 529, 503):
        return LLMRateLimited(text, retry_after_s=retry_after_s)
    if status >= 500 or status in (408, 409):
        return LLMUnavailable(text, retry_after_s=retry_after_s)
    return LLMRejected(text)


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
