"""Gemini through the `google-genai` SDK (generateContent, function calling, usage metadata).

google-genai is Google's supported SDK; it replaces the deprecated google-generativeai.
"""

from __future__ import annotations

import json
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

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


class GeminiProvider(LLMProvider):
    name = "gemini"

    def __init__(self, *, api_key: str, model: str, base_url: str, timeout_s: float = 60.0) -> None:
        self.model = model
        options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout_s * 1000),
            # attempts=1: no SDK-internal retries; our retry layer owns them.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=api_key, http_options=options)

    def generate(self, request: LLMRequest) -> LLMReply:
        config = types.GenerateContentConfig(
            system_instruction=request.system,
            max_output_tokens=request.max_tokens,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        if request.tools:
            config.tools = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=tool.name, description=tool.description, parameters_json_schema=tool.input_schema
                        )
                        for tool in request.tools
                    ]
                )
            ]
            if request.tool_choice == "none":
                config.tool_config = types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE)
                )
        contents = [_to_content(message) for message in request.messages]
        try:
            response = self._client.models.generate_content(model=self.model, contents=contents, config=config)
        except genai_errors.APIError as error:
            headers = getattr(getattr(error, "response", None), "headers", None)
            raise classify_http_error(
                self.name, int(error.code or 500), str(error.message or error), retry_after_from_headers(headers)
            ) from None
        except (json.JSONDecodeError, ValueError) as error:
            raise LLMUnavailable(f"{self.name}: unreadable response body ({error})") from None
        except Exception as error:  # httpx transport errors surface unwrapped
            if type(error).__module__.startswith(("httpx", "httpcore")):
                raise LLMUnavailable(f"{self.name}: {type(error).__name__}: {error}") from None
            raise
        texts: list[str] = []
        calls: list[ToolCall] = []
        candidate = response.candidates[0] if response.candidates else None
        parts = candidate.content.parts if candidate and candidate.content and candidate.content.parts else []
        for index, part in enumerate(parts):
            if part.text:
                texts.append(part.text)
            if part.function_call and part.function_call.name:
                calls.append(
                    ToolCall(
                        id=part.function_call.id or f"call_{index}",
                        name=part.function_call.name,
                        input=dict(part.function_call.args or {}),
                    )
                )
        usage = response.usage_metadata
        return LLMReply(
            text="".join(texts),
            tool_calls=tuple(calls),
            tokens_in=int(usage.prompt_token_count or 0) if usage else 0,
            tokens_out=int(usage.candidates_token_count or 0) if usage else 0,
            provider=self.name,
            model=response.model_version or self.model,
            stop_reason=getattr(candidate.finish_reason, "value", None) if candidate else None,
        )


def _to_content(message: Message) -> types.Content:
    if message.role == "tool":
        return types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(name=result.name, response=_as_object(result.content))
                for result in message.tool_results
            ],
        )
    if message.role == "assistant":
        parts: list[types.Part] = [types.Part.from_text(text=message.text)] if message.text else []
        parts += [types.Part.from_function_call(name=call.name, args=call.input) for call in message.tool_calls]
        return types.Content(role="model", parts=parts)
    return types.Content(role="user", parts=[types.Part.from_text(text=message.text)])


def _as_object(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except json.JSONDecodeError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}
