"""Claude through the official `anthropic` SDK: the Messages API with tool use, a forced
`answer` tool, thinking, prompt caching and its usage, each call under the resilience layer.

- The answer: `tool_choice {"type": "tool", "name": "answer"}`. With thinking on the API only
  takes `auto`/`none` ("Thinking may not be enabled when tool_choice forces tool use"), so the
  answer is asked for with `auto` and the system prompt's instruction; the tool loop's text
  fallback and repair turn cover a model that answers in prose.
- Thinking: budget -1 → `{"type": "adaptive"}`, N → `{"type": "enabled", "budget_tokens": N}`,
  0 or unset → no thinking parameter. Thinking blocks come back in `LLMReply.raw` and are sent
  back unchanged, signatures included, on the next turn of a tool conversation.
- Prompt caching: a `cache_control` breakpoint on the system prompt when tools + system reach
  the model's minimum cacheable length, and one on the newest message when the whole prompt
  does (each tool turn then reads the turns before from the cache). Usage: `input_tokens`
  counts only what was not cached; cache reads and writes are recorded apart.
- Rate limits: the `anthropic-ratelimit-*` headers of every response seed the shared budget.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic

from switchboard.agents.llm.base import (
    ANSWER_TOOL,
    LLMProvider,
    LLMReply,
    LLMRequest,
    Message,
    StopReason,
    ToolCall,
)
from switchboard.integrations.resilience import CallContext, CallFailure, RateLimiter, call, policy_for, shared_redis

# Fewest prompt tokens a cache breakpoint can cache, per model (below it nothing is cached).
MIN_CACHEABLE_TOKENS = {
    "claude-opus-5": 512,
    "claude-fable-5-1": 512,
    "claude-sonnet-5": 1024,
    "claude-sonnet-4-6": 1024,
    "claude-sonnet-4-5": 1024,
    "claude-haiku-4-5": 4096,
}
DEFAULT_MIN_CACHEABLE = 4096
CACHE = {"type": "ephemeral"}

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "refusal": "refusal",
    "pause_turn": "pause_turn",
}


def estimate_tokens(payload: Any) -> int:
    """About four characters a token: enough to decide whether a prefix is worth caching."""
    return len(json.dumps(payload, separators=(",", ":"))) // 4


class AnthropicProvider(LLMProvider):
    name = "anthropic"

    def __init__(self, *, api_key: str, model: str, base_url: str, timeout_s: float = 60.0) -> None:
        self.model = model
        # max_retries=0: our retry layer (Celery self.retry with backoff and Retry-After)
        # owns retries; SDK-internal retries would multiply attempts and hide them.
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def params(self, request: LLMRequest) -> dict[str, Any]:
        """The Messages API request body for ``request``."""
        tools = [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in request.tools]
        system: list[dict[str, Any]] = [{"type": "text", "text": request.system}]
        messages = [_to_wire(message) for message in request.messages]
        params: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens, "system": system,
                                  "messages": messages}  # fmt: skip
        budget = request.thinking_budget
        if budget == -1:
            params["thinking"] = {"type": "adaptive"}
        elif budget:
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if tools:
            params["tools"] = tools
            if request.tool_choice == "none":
                params["tool_choice"] = {"type": "none"}
            elif request.tool_choice == "answer" and "thinking" not in params:
                params["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
        least = MIN_CACHEABLE_TOKENS.get(self.model, DEFAULT_MIN_CACHEABLE)
        if estimate_tokens(tools) + estimate_tokens(system) >= least:
            system[-1]["cache_control"] = CACHE
        if messages and estimate_tokens(params) >= least:
            _mark_last_block(messages[-1])
        return params

    def generate(self, request: LLMRequest, context: CallContext | None = None) -> LLMReply:
        params = self.params(request)
        limiter = RateLimiter(shared_redis(), self.name, self.model, policy_for(self.name))

        def exchange() -> LLMReply:
            try:
                raw = self._client.messages.with_raw_response.create(**params)
                limiter.adjust_from_anthropic(dict(raw.headers))
                response = raw.parse()
            except anthropic.APIStatusError as error:
                raise CallFailure(error.status_code, str(error.message), dict(error.response.headers)) from None
            except (anthropic.APIConnectionError, anthropic.APIResponseValidationError) as error:
                raise CallFailure(None, f"{type(error).__name__}: {error}") from None
            except json.JSONDecodeError as error:
                raise CallFailure(None, f"unreadable response body ({error.msg})") from None
            return self._reply(response)

        arguments = {"model": self.model, "purpose": request.purpose, "turn": len(request.messages),
                     "max_tokens": request.max_tokens}  # fmt: skip
        return call(self.name, self.model, "messages", arguments, exchange, context=context, summarise=_summary,
                    on_headers=limiter.adjust_from_anthropic)  # fmt: skip

    def _reply(self, response: Any) -> LLMReply:
        texts = [block.text for block in response.content if block.type == "text"]
        calls = tuple(
            ToolCall(id=block.id, name=block.name, input=dict(block.input))
            for block in response.content
            if block.type == "tool_use" and isinstance(block.input, dict)
        )
        usage = response.usage
        return LLMReply(
            text="".join(texts),
            tool_calls=calls,
            tokens_in=usage.input_tokens,
            tokens_out=usage.output_tokens,
            provider=self.name,
            model=response.model or self.model,
            stop_reason=STOP_REASONS.get(str(response.stop_reason), "other"),
            stop_detail=response.stop_reason,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_tokens=usage.cache_creation_input_tokens or 0,
            raw=tuple(block.model_dump(exclude_none=True) for block in response.content),
        )


def _summary(reply: LLMReply) -> dict[str, Any]:
    return {"stop_reason": reply.stop_detail, "tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out,
            "cache_read_tokens": reply.cache_read_tokens, "cache_write_tokens": reply.cache_write_tokens,
            "tool_calls": [call.name for call in reply.tool_calls]}  # fmt: skip


def _mark_last_block(message: dict[str, Any]) -> None:
    content = message["content"]
    if isinstance(content, str):
        message["content"] = [{"type": "text", "text": content, "cache_control": CACHE}]
    elif content and content[-1].get("type") not in ("thinking", "redacted_thinking"):
        content[-1] = {**content[-1], "cache_control": CACHE}


def _to_wire(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": result.call_id, "content": result.content,
                 "is_error": result.is_error}
                for result in message.tool_results
            ] + ([{"type": "text", "text": message.text}] if message.text else []),
        }  # fmt: skip
    if message.role == "assistant" and message.raw and message.raw_provider == "anthropic":
        return {"role": "assistant", "content": [dict(block) for block in message.raw]}  # as Claude returned it
    if message.role == "assistant" and message.tool_calls:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in message.tool_calls]
        return {"role": "assistant", "content": blocks}
    return {"role": message.role, "content": message.text or "(empty)"}
