"""The model conversation loop, shared by the three agents whatever the provider: tool calls
(recorded one row each), a structured answer through the `answer` tool, stop reasons, and one
repair turn.

Every request defines the agent's tools and the `answer` tool (whose input schema is the
answer's JSON schema, `agents/answers.py`). The model may call the data tools for a few
turns; then — or at once, for an agent without data tools — `tool_choice="answer"` makes it
call `answer`. The tools are never withdrawn: a history with tool blocks needs them defined.
An answer in text instead (prose, a JSON code fence) is read as JSON as a fallback, for models
that ignore the tool; an invalid answer gets one repair turn that keeps the history valid
(every tool call answered by its result), then the step fails permanently with the raw output.

Stop reasons: `max_tokens` → the same turn once more with twice the budget, then a permanent
failure naming the setting; `refusal` → permanent, the model's words stored; `pause_turn` →
the paused turn is sent back for the model to continue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import ValidationError

from switchboard import tracing
from switchboard.agents.context import StepContext
from switchboard.agents.llm.base import (
    ANSWER_TOOL,
    LLMProvider,
    LLMReply,
    LLMRequest,
    Message,
    ToolCall,
    ToolResult,
    ToolSpec,
    extract_json_object,
)
from switchboard.db import toolcalls
from switchboard.errors import Permanent
from switchboard.integrations.resilience import CallContext
from switchboard.settings import get_settings

T = TypeVar("T")

MAX_TOOL_TURNS = 4
MAX_PAUSES = 3  # pause_turn continuations of one turn


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with the spec it is described by."""

    spec: ToolSpec
    run: Callable[[dict[str, Any]], Any]


class MalformedModelOutput(Permanent):
    """The model's answer did not validate, even after one repair attempt."""


class ModelRefused(Permanent):
    """The model declined to answer (stop reason `refusal`, or a safety block)."""


class AnswerTruncated(Permanent):
    """The model's turn was cut at max_tokens, twice, the second time with twice the budget."""


def generate(ctx: StepContext, provider: LLMProvider, request: LLMRequest) -> LLMReply:
    """One model turn with its stop reason handled: continued after `pause_turn`, tried once
    more with twice the budget after `max_tokens`, a permanent failure on `refusal`."""
    context = CallContext(run_id=ctx.run_id, step=ctx.step, agent=ctx.agent)
    reply = _turn(ctx, provider, request, context)
    for _ in range(MAX_PAUSES):
        if reply.stop_reason != "pause_turn":
            break
        request = replace(request, messages=(*request.messages, reply.as_message()))
        reply = _turn(ctx, provider, request, context)
    if reply.stop_reason == "max_tokens":
        larger = replace(request, max_tokens=request.max_tokens * 2)
        reply = _turn(ctx, provider, larger, context)
        if reply.stop_reason == "max_tokens":
            ctx.raw_outputs.append(reply.text)
            setting = f"SWITCHBOARD_{ctx.agent.upper()}_MAX_TOKENS"
            raise AnswerTruncated(
                f"{ctx.agent}: the model's answer was cut at max_tokens twice ({request.max_tokens}, then "
                f"{larger.max_tokens} tokens, thinking included); raise {setting}"
            )
    if reply.stop_reason == "refusal":
        ctx.raw_outputs.append(reply.text)
        said = reply.text.strip() or "(no explanation given)"
        why = reply.stop_detail or "refusal"
        raise ModelRefused(f"{ctx.agent}: the model refused to answer ({why}): {said[:1000]}")
    return reply


def _turn(ctx: StepContext, provider: LLMProvider, request: LLMRequest, context: CallContext) -> LLMReply:
    """One model call, as a `chat {model}` span carrying its usage, recorded on the step."""
    settings = get_settings()
    with tracing.chat_span(provider.name, provider.model, request, settings) as span:
        reply = provider.generate(request, context)
        tracing.record_reply(span, reply, settings)
    ctx.record_reply(reply)
    return reply


def _continue_with(request: LLMRequest, reply: LLMReply, results: tuple[ToolResult, ...], **changes: Any) -> LLMRequest:
    """The request with this turn and the answers to its tool calls appended."""
    answered = Message(role="tool", tool_results=results)
    return replace(request, messages=(*request.messages, reply.as_message(), answered), **changes)


def ask(
    ctx: StepContext,
    provider: LLMProvider,
    request: LLMRequest,
    tools: dict[str, Tool],
    answer: ToolSpec,
    validate: Callable[[dict[str, Any]], T],
) -> T:
    """Converse until the model answers through ``answer``; validate it (one repair turn)."""
    ctx.record_prompt("user", request.messages[-1].text if request.messages else "")
    request = replace(
        request,
        tools=(*(tool.spec for tool in tools.values()), answer),
        tool_choice="auto" if tools else "answer",
    )
    turns = 0
    while True:
        reply = generate(ctx, provider, request)
        given = next((call for call in reply.tool_calls if call.name == ANSWER_TOOL), None)
        wanted = [call for call in reply.tool_calls if call.name != ANSWER_TOOL]
        if given is None and wanted and turns < MAX_TOOL_TURNS:
            turns += 1
            results = tuple(_call_tool(ctx, tools, call.id, call.name, call.input) for call in wanted)
            # out of turns: the tools stay defined, and the next turn must answer
            choice = "auto" if turns < MAX_TOOL_TURNS else "answer"
            request = _continue_with(request, reply, results, tool_choice=choice)
            continue
        break
    try:
        return validate(_answer_of(reply, given))
    except (ValueError, ValidationError) as error:
        ctx.raw_outputs.append(_raw(reply))
        problem = _describe(error)
    repair = _repair(request, reply, problem)
    ctx.record_prompt("user", f"repair: {problem}")
    second = generate(ctx, provider, repair)
    again = next((call for call in second.tool_calls if call.name == ANSWER_TOOL), None)
    try:
        return validate(_answer_of(second, again))
    except (ValueError, ValidationError) as error:
        ctx.raw_outputs.append(_raw(second))
        raise MalformedModelOutput(
            f"{ctx.agent} output invalid after one repair attempt: {_describe(error)}; "
            f"raw output: {_raw(second)[:2000]!r}"
        ) from None


def _answer_of(reply: LLMReply, given: ToolCall | None) -> dict[str, Any]:
    if given is not None:
        return given.input
    if reply.tool_calls:
        raise ValueError(f"no answer: the model called {', '.join(c.name for c in reply.tool_calls)} instead of answer")
    return extract_json_object(reply.text)  # the fallback for a model that answered in text


def _repair(request: LLMRequest, reply: LLMReply, problem: str) -> LLMRequest:
    """The turn that asks for a corrected answer, on a valid history: a turn with tool calls is
    followed by a result for each (the answer's names the problem), a text turn by a user turn."""
    ask_again = f"Your answer was not valid: {problem}. Call the {ANSWER_TOOL} tool with the corrected answer."
    changes: dict[str, Any] = {
        "purpose": "repair", "tool_choice": "answer", "facts": {**request.facts, "original_purpose": request.purpose},
    }  # fmt: skip
    if reply.tool_calls:
        results = tuple(
            ToolResult(call.id, call.name, json.dumps({"error": ask_again if call.name == ANSWER_TOOL else
                                                       "not run: give your answer now"}), is_error=True)
            for call in reply.tool_calls
        )  # fmt: skip
        return _continue_with(request, reply, results, **changes)
    return replace(request, messages=(*request.messages, replace(reply.as_message(), text=reply.text or "(empty)"),
                                      Message(role="user", text=ask_again)), **changes)  # fmt: skip


def _raw(reply: LLMReply) -> str:
    calls = "; ".join(f"{c.name}({json.dumps(c.input, default=str)})" for c in reply.tool_calls)
    return " ".join(part for part in (reply.text, calls) if part)


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
        with tracing.tool_span(name, call_id):
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


def _describe(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())[:1000]
    return str(error)[:1000]
