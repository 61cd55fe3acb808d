"""The model conversation loop: tool calls (recorded one row each) and JSON answers with one
repair attempt, shared by the three agents whatever the provider."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import ValidationError

from switchboard.agents.context import StepContext
from switchboard.agents.llm.base import (
    LLMProvider,
    LLMReply,
    LLMRequest,
    Message,
    ToolResult,
    ToolSpec,
    extract_json_object,
)
from switchboard.db import toolcalls
from switchboard.errors import Permanent

T = TypeVar("T")


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with the spec it is described by."""

    spec: ToolSpec
    run: Callable[[dict[str, Any]], Any]


class MalformedModelOutput(Permanent):
    """The model's answer did not validate, even after one repair attempt."""


def converse(
    ctx: StepContext, provider: LLMProvider, request: LLMRequest, tools: dict[str, Tool], *, max_turns: int = 4
) -> tuple[LLMReply, LLMRequest]:
    """Run model turns until it answers without tool calls; returns the answer and the final request."""
    ctx.record_prompt("user", request.messages[-1].text if request.messages else "")
    for _ in range(max_turns):
        reply = provider.generate(request)
        ctx.record_reply(reply)
        if not reply.tool_calls:
            return reply, request
        results = tuple(_call_tool(ctx, tools, call.id, call.name, call.input) for call in reply.tool_calls)
        request = replace(
            request,
            messages=(
                *request.messages,
                Message(role="assistant", text=reply.text, tool_calls=reply.tool_calls),
                Message(role="tool", tool_results=results),
            ),
        )
    # Out of turns: ask for the answer, the tools still defined but not to be called.
    reply = provider.generate(replace(request, tool_choice="none"))
    ctx.record_reply(reply)
    return reply, request


def _tool_key(name: str, arguments: dict[str, Any]) -> str:
    return f"{name}:{json.dumps(arguments, sort_keys=True, default=str)}"


def remember_tool_result(ctx: StepContext, name: str, arguments: dict[str, Any], output: Any) -> None:
    """What a tool call with these arguments would read now: a call the model makes in this
    step attempt is answered from it. The tools only read our own database, and one step's
    view of a record does not need to be fresher than a few milliseconds."""
    ctx.tool_results[_tool_key(name, arguments)] = output


def _call_tool(
    ctx: StepContext, tools: dict[str, Tool], call_id: str, name: str, arguments: dict[str, Any]
) -> ToolResult:
    tool = tools.get(name)
    started = time.perf_counter()
    key = _tool_key(name, arguments)
    try:
        if tool is None:
            raise KeyError(f"unknown tool {name!r}")
        output = ctx.tool_results[key] if key in ctx.tool_results else tool.run(arguments)
        ctx.tool_results[key] = output
    except Exception as error:  # the model sees the error and may recover
        toolcalls.record(ctx.run_id, ctx.step, ctx.agent, f"llm:{name}", arguments, status="failed",
                         latency_ms=_ms(started), error=error)  # fmt: skip
        return ToolResult(call_id, name, json.dumps({"error": f"{type(error).__name__}: {error}"}), is_error=True)
    toolcalls.record(ctx.run_id, ctx.step, ctx.agent, f"llm:{name}", arguments, status="done",
                     latency_ms=_ms(started), output=output)  # fmt: skip
    return ToolResult(call_id, name, json.dumps(output, default=str))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def ask_for_json(
    ctx: StepContext,
    provider: LLMProvider,
    request: LLMRequest,
    tools: dict[str, Tool],
    validate: Callable[[dict[str, Any]], T],
) -> T:
    """Converse, then validate the JSON answer; one repair turn, then a permanent failure."""
    reply, final_request = converse(ctx, provider, request, tools)
    try:
        return validate(extract_json_object(reply.text))
    except (ValueError, ValidationError) as error:
        ctx.raw_outputs.append(reply.text)
        problem = _describe(error)
    repair = replace(
        final_request,
        purpose="repair",
        tool_choice="none",
        facts={**request.facts, "original_purpose": request.purpose},
        messages=(
            *final_request.messages,
            Message(role="assistant", text=reply.text or "(empty)"),
            Message(
                role="user",
                text=f"Your answer was not valid: {problem}. Reply with only the corrected JSON object, no prose.",
            ),
        ),
    )
    ctx.record_prompt("user", f"repair: {problem}")
    second = provider.generate(repair)
    ctx.record_reply(second)
    try:
        return validate(extract_json_object(second.text))
    except (ValueError, ValidationError) as error:
        ctx.raw_outputs.append(second.text)
        raise MalformedModelOutput(
            f"{ctx.agent} output invalid after one repair attempt: {_describe(error)}; "
            f"raw output: {second.text[:2000]!r}"
        ) from None


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())[:1000]
    return str(error)[:1000]
