"""Claude through the official `anthropic` SDK (Messages API, tool use, usage tokens)."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from switchboard.agents.llm.base import (
    LLMProvider,
    LLMReply,
    LLMRequest,
    LLMUnavailable,
    Message,
    ToolCall,
    classify_http_error,
    retry_after_from_headers,
)


class AnthropicProvider(LLMProvider):
    name = "anthropic"

    def __init__(self, *, api_key: str, model: str, base_url: str, timeout_s: float = 60.0) -> None:
        self.model = model
        # max_retries=0: our retry layer (Celery self.retry with backoff and Retry-After)
        # owns retries; SDK-internal retries would multiply attempts and hide them.
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s)

    def generate(self, request: LLMRequest) -> LLMReply:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "system": request.system,
            "messages": [_to_wire(message) for message in request.messages],
        }
        if request.tools:
            params["tools"] = [
                {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
                for tool in request.tools
            ]
            if request.tool_choice == "none":
                params["tool_choice"] = {"type": "none"}
        try:
            response = self._client.messages.create(**params)
        except anthropic.APIStatusError as error:
            raise classify_http_error(
                self.name, error.status_code, str(error.message), retry_after_from_headers(error.response.headers)
            ) from None
        except (anthropic.APIConnectionError, anthropic.APIResponseValidationError) as error:
            raise LLMUnavailable(f"{self.name}: {type(error).__name__}: {error}") from None
        except json.JSONDecodeError as error:
            raise LLMUnavailable(f"{self.name}: unreadable response body ({error.msg})") from None
        texts = [block.text for block in response.content if block.type == "text"]
        calls = tuple(
            ToolCall(id=block.id, name=block.name, input=dict(block.input))
            for block in response.content
            if block.type == "tool_use"
        )
        return LLMReply(
            text="".join(texts),
            tool_calls=calls,
            tokens_in=response.usage.input_tokens,
            tokens_out=response.usage.output_tokens,
            provider=self.name,
            model=response.model or self.model,
            stop_reason=response.stop_reason,
        )


def _to_wire(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": result.call_id,
                    "content": result.content,
                    "is_error": result.is_error,
                }
                for result in message.tool_results
            ],
        }
    if message.role == "assistant" and message.tool_calls:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
        blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in message.tool_calls]
        return {"role": "assistant", "content": blocks}
    return {"role": message.role, "content": message.text}
