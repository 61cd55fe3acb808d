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
- Batch mode (`SWITCHBOARD_ANTHROPIC_BATCH`, for nightly evals): each turn is one request of a
  Message Batch (half price). The first attempt submits it and the step is re-queued (a
  deferral: no retry used) every `anthropic_batch_poll_s` until the batch has ended; then the
  answer is collected. What was submitted and collected is kept in Redis under a key made of the
  run, the step and the turn's place in it (purpose, history length, budget), so a step re-run —
  after a deferral, a worker restart or a retry — polls the batch it submitted instead of
  submitting again, and replays the turns it already collected (their usage counted once).
  One request a batch: coalescing turns is left for later.
"""

from __future__ import annotations

import hashlib
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
from switchboard.errors import Permanent
from switchboard.integrations.resilience import (
    CallContext,
    CallFailure,
    Deferred,
    RateLimiter,
    call,
    policy_for,
    shared_redis,
)

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


BATCH_KEEP_S = 29 * 86400  # Anthropic keeps a batch's results 29 days


class BatchPending(Deferred):
    """The turn's batch has not ended yet: the step is re-queued to poll it again."""


class BatchRequestFailed(Permanent):
    """The batch answered the turn with an error the request itself caused."""


def estimate_tokens(payload: Any) -> int:
    """About four characters a token: enough to decide whether a prefix is worth caching."""
    return len(json.dumps(payload, separators=(",", ":"))) // 4


class AnthropicProvider(LLMProvider):
    name = "anthropic"

    def __init__(
        self, *, api_key: str, model: str, base_url: str, timeout_s: float = 60.0, batch_poll_s: float | None = None
    ) -> None:
        self.model = model
        self.batch_poll_s = batch_poll_s  # None: the Messages API; else each turn through a Message Batch
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
        if self.batch_poll_s is not None:
            return self._batched(params, request, context)
        limiter = RateLimiter(shared_redis(), self.name, self.model, policy_for(self.name))

        def exchange() -> LLMReply:
            def create() -> Any:
                raw = self._client.messages.with_raw_response.create(**params)
                limiter.adjust_from_anthropic(dict(raw.headers))
                return raw.parse()

            return self._reply(self._sdk(create))

        arguments = {"model": self.model, "purpose": request.purpose, "turn": len(request.messages),
                     "max_tokens": request.max_tokens}  # fmt: skip
        return call(self.name, self.model, "messages", arguments, exchange, context=context, summarise=_summary,
                    on_headers=limiter.adjust_from_anthropic)  # fmt: skip

    # ----------------------------------------------------------------------- batch mode

    def _batched(self, params: dict[str, Any], request: LLMRequest, context: CallContext | None) -> LLMReply:
        assert self.batch_poll_s is not None
        # The turn's place in its step, not its body: a re-run step rebuilds its prompt (the
        # Watcher re-checks the alert, `detected_at` moves) and must find the batch it submitted.
        where = [context.run_id, context.step] if context is not None else [json.dumps(params, sort_keys=True)]
        place = [request.purpose, len(request.messages), request.max_tokens, request.tool_choice]
        digest = hashlib.sha256(json.dumps([*where, *place]).encode()).hexdigest()
        custom_id = f"sb_{digest[:48]}"  # what a custom_id may be: ^[a-zA-Z0-9_-]{1,64}$
        key = f"switchboard:anthropic-batch:{custom_id}"
        store = shared_redis()
        state = {_text(k): _text(v) for k, v in store.hgetall(key).items()}
        arguments = {"model": self.model, "purpose": request.purpose, "turn": len(request.messages),
                     "custom_id": custom_id}  # fmt: skip
        if "message" in state:  # collected earlier (a re-run of the step): replayed, billed once
            reply = self._reply(anthropic.types.Message.model_validate_json(state["message"]))
            return _as_batch(reply, billed=False)
        if "batch_id" not in state:
            batch = call(self.name, self.model, "batches.create", arguments,
                         lambda: self._sdk(lambda: self._client.messages.batches.create(
                             requests=[{"custom_id": custom_id, "params": params}])),  # type: ignore[typeddict-item]
                         context=context, summarise=lambda b: {"batch_id": b.id})  # fmt: skip
            store.hset(key, mapping={"batch_id": batch.id})
            store.expire(key, BATCH_KEEP_S)
            raise BatchPending(f"batch {batch.id} submitted; polling", retry_after_s=self.batch_poll_s)
        batch_id = state["batch_id"]
        batch = call(self.name, self.model, "batches.retrieve", {**arguments, "batch_id": batch_id},
                     lambda: self._sdk(lambda: self._client.messages.batches.retrieve(batch_id)), context=context,
                     summarise=lambda b: {"status": b.processing_status})  # fmt: skip
        if batch.processing_status != "ended":
            raise BatchPending(f"batch {batch_id} is {batch.processing_status}", retry_after_s=self.batch_poll_s)
        results = call(self.name, self.model, "batches.results", {**arguments, "batch_id": batch_id},
                       lambda: self._sdk(lambda: list(self._client.messages.batches.results(batch_id))),
                       context=context, summarise=lambda r: {"results": len(r)})  # fmt: skip
        mine = next((item for item in results if item.custom_id == custom_id), None)
        outcome = mine.result if mine is not None else None
        if outcome is not None and outcome.type == "succeeded":
            store.hset(key, mapping={"message": outcome.message.model_dump_json()})
            return _as_batch(self._reply(outcome.message), billed=True)
        if outcome is not None and outcome.type == "errored" and outcome.error.error.type == "invalid_request_error":
            raise BatchRequestFailed(f"batch {batch_id}: the request was refused: {outcome.error.error.message}")
        # errored by the service, expired or canceled: submit the turn again on the next attempt
        store.delete(key)
        why = outcome.type if outcome is not None else "missing from the results"
        raise BatchPending(f"batch {batch_id}: the turn was {why}; submitting it again",
                           retry_after_s=self.batch_poll_s)  # fmt: skip

    @staticmethod
    def _sdk(fn: Any) -> Any:
        """``fn()``, an SDK call, with its failures as the resilience layer's CallFailure."""
        try:
            return fn()
        except anthropic.APIStatusError as error:
            raise CallFailure(error.status_code, str(error.message), dict(error.response.headers)) from None
        except (anthropic.APIConnectionError, anthropic.APIResponseValidationError) as error:
            raise CallFailure(None, f"{type(error).__name__}: {error}") from None
        except json.JSONDecodeError as error:
            raise CallFailure(None, f"unreadable response body ({error.msg})") from None

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _as_batch(reply: LLMReply, *, billed: bool) -> LLMReply:
    """A batch's answer: billed at the batch discount, and only the first time it is used."""
    from dataclasses import replace

    if billed:
        return replace(reply, batch=True)
    return replace(reply, batch=True, tokens_in=0, tokens_out=0, cache_read_tokens=0, cache_write_tokens=0)


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
