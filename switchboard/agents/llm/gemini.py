"""Gemini through the `google-genai` SDK: generateContent with function calling, a forced
`answer` function, thinking and its usage, each call under the resilience layer.

google-genai is Google's supported SDK; it replaces the deprecated google-generativeai.

- The answer: function-calling mode ANY limited to `answer` (`allowed_function_names`); NONE
  to stop tool use with the declarations kept. (Gemini 2.5 refuses a JSON response mime type
  together with function calling, so the answer is a function call for every agent.)
- A model turn's parts — function calls with their thought signatures — go back unchanged
  (`LLMReply.raw`); N function calls are answered by N function responses, by name and id.
- Usage: `promptTokenCount` includes cached tokens, so input = prompt - cached and the cached
  part is a cache read; thinking (`thoughtsTokenCount`) is output, billed as such.
"""

from __future__ import annotations

import json
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from switchboard.agents.llm.base import (
    ANSWER_TOOL,
    LLMProvider,
    LLMReply,
    LLMRequest,
    Message,
    StopReason,
    ToolCall,
)
from switchboard.integrations.resilience import CallContext, CallFailure, call

# An id Switchboard made up for a function call Gemini sent without one (never sent back).
LOCAL_ID = "_local_"

REFUSALS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE",
            "MODEL_ARMOR"}  # fmt: skip
MALFORMED = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE"}


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

    def config(self, request: LLMRequest) -> types.GenerateContentConfig:
        config = types.GenerateContentConfig(
            system_instruction=request.system,
            max_output_tokens=request.max_tokens,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        if request.thinking_budget is not None:
            config.thinking_config = types.ThinkingConfig(thinking_budget=request.thinking_budget)
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
            mode = {"auto": None, "none": types.FunctionCallingConfigMode.NONE,
                    "answer": types.FunctionCallingConfigMode.ANY}[request.tool_choice]  # fmt: skip
            if mode is not None:
                config.tool_config = types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(
                        mode=mode, allowed_function_names=[ANSWER_TOOL] if request.tool_choice == "answer" else None
                    )
                )
        return config

    def generate(self, request: LLMRequest, context: CallContext | None = None) -> LLMReply:
        config = self.config(request)
        contents = [_to_content(message) for message in request.messages]

        def exchange() -> LLMReply:
            try:
                response = self._client.models.generate_content(model=self.model, contents=contents, config=config)
            except genai_errors.APIError as error:
                headers = getattr(getattr(error, "response", None), "headers", None)
                raise CallFailure(int(error.code or 500), str(error.message or error), dict(headers or {})) from None
            except (json.JSONDecodeError, ValueError) as error:
                raise CallFailure(None, f"unreadable response body ({error})") from None
            except Exception as error:  # httpx transport errors surface unwrapped
                if type(error).__module__.startswith(("httpx", "httpcore")):
                    raise CallFailure(None, f"{type(error).__name__}: {error}") from None
                raise
            return self._reply(response)

        arguments = {"model": self.model, "purpose": request.purpose, "turn": len(request.messages),
                     "max_tokens": request.max_tokens}  # fmt: skip
        return call(self.name, self.model, "generate_content", arguments, exchange, context=context,
                    summarise=_summary)  # fmt: skip

    def _reply(self, response: types.GenerateContentResponse) -> LLMReply:
        texts: list[str] = []
        calls: list[ToolCall] = []
        candidate = response.candidates[0] if response.candidates else None
        parts = list(candidate.content.parts or []) if candidate and candidate.content else []
        for index, part in enumerate(parts):
            if part.text and not part.thought:
                texts.append(part.text)
            function = part.function_call
            if function is not None and function.name:
                call_id = function.id or f"{LOCAL_ID}{index}"
                calls.append(ToolCall(id=call_id, name=function.name, input=dict(function.args or {})))
        finish = getattr(candidate.finish_reason, "value", None) if candidate else None
        blocked = getattr(getattr(response.prompt_feedback, "block_reason", None), "value", None)
        usage = response.usage_metadata
        prompt = int(usage.prompt_token_count or 0) if usage else 0
        cached = int(usage.cached_content_token_count or 0) if usage else 0
        output = int(usage.candidates_token_count or 0) + int(usage.thoughts_token_count or 0) if usage else 0
        return LLMReply(
            text="".join(texts),
            tool_calls=tuple(calls),
            tokens_in=prompt - cached,
            tokens_out=output,
            provider=self.name,
            model=response.model_version or self.model,
            stop_reason=_stop_reason(finish, blocked, bool(calls)),
            stop_detail=blocked or finish,
            cache_read_tokens=cached,
            raw=tuple(parts),
        )


def _stop_reason(finish: str | None, blocked: str | None, called: bool) -> StopReason:
    if blocked or finish in REFUSALS:
        return "refusal"
    if finish == "MAX_TOKENS":
        return "max_tokens"
    if finish in MALFORMED:
        return "malformed"
    if finish in (None, "STOP", "FINISH_REASON_UNSPECIFIED"):
        return "tool_use" if called else "end_turn"
    return "other"


def _summary(reply: LLMReply) -> dict[str, Any]:
    return {
        "stop_reason": reply.stop_detail, "tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out,
        "cache_read_tokens": reply.cache_read_tokens, "tool_calls": [call.name for call in reply.tool_calls],
    }  # fmt: skip


def _to_content(message: Message) -> types.Content:
    if message.role == "tool":
        return types.Content(
            role="user",
            parts=[
                types.Part(function_response=types.FunctionResponse(
                    id=None if result.call_id.startswith(LOCAL_ID) else result.call_id, name=result.name,
                    response={"error": _as_value(result.content)} if result.is_error
                    else {"output": _as_value(result.content)},
                ))
                for result in message.tool_results
            ],
        )  # fmt: skip
    if message.role == "assistant":
        if message.raw and message.raw_provider == "gemini":
            return types.Content(role="model", parts=list(message.raw))  # as Gemini returned it, signatures kept
        parts: list[types.Part] = [types.Part.from_text(text=message.text)] if message.text else []
        parts += [types.Part.from_function_call(name=call.name, args=call.input) for call in message.tool_calls]
        return types.Content(role="model", parts=parts or [types.Part.from_text(text="(empty)")])
    return types.Content(role="user", parts=[types.Part.from_text(text=message.text)])


def _as_value(content: str) -> Any:
    try:
        return json.loads(content)
    except json.JSONDecodeError:
        return content
