"""The tool-call log: one agent_decisions row per external or LLM tool call, inputs redacted.

A call to an external API is written as it happens (pending → retrying → done | failed), each
change in its own transaction, so a worker that dies mid-call leaves a row saying the outcome
is unknown. A model's tool reading our own database has no such outcome: its row is written
once, finished."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select, update

from switchboard.db.models import AgentDecision
from switchboard.db.session import session_scope
from switchboard.redaction import redact, scrub

SUMMARY_CHARS = 2000


def summarise_output(output: Any) -> dict[str, Any]:
    """A bounded, redacted summary of a tool's output for the log."""
    text = json.dumps(redact(output), default=str)
    if len(text) <= SUMMARY_CHARS:
        return {"value": json.loads(text)}
    return {"truncated": text[:SUMMARY_CHARS], "chars": len(text)}


def start(
    run_id: str | None, step: str | None, agent: str | None, tool: str, arguments: dict[str, Any], *, attempts: int = 1
) -> int:
    """Insert a pending row for a call about to be made; returns its id."""
    with session_scope() as session:
        row = AgentDecision(
            run_id=run_id,
            step=step,
            agent=agent,
            kind="tool_call",
            tool=tool,
            input=redact(arguments),
            status="pending",
            attempts=attempts,
        )
        session.add(row)
        session.flush()
        return row.id


def record(
    run_id: str | None,
    step: str | None,
    agent: str | None,
    tool: str,
    arguments: dict[str, Any],
    *,
    status: str,
    latency_ms: float,
    output: Any = None,
    error: BaseException | None = None,
) -> None:
    """Insert the finished row of a call that has no effect outside our database (a model's
    tool reading stored records): nothing can be left half-done, so no pending row first."""
    with session_scope(autocommit=True) as session:
        session.execute(
            insert(AgentDecision).values(
                run_id=run_id, step=step, agent=agent, kind="tool_call", tool=tool, input=redact(arguments),
                status=status, attempts=1, latency_ms=latency_ms,
                output=summarise_output(output) if output is not None else None,
                error_class=type(error).__name__ if error is not None else None,
                error_message=scrub(str(error))[:4000] if error is not None else None,
            )
        )  # fmt: skip


def finish(
    row_id: int,
    *,
    status: str,
    latency_ms: float,
    output: Any = None,
    error: BaseException | None = None,
    attempts: int | None = None,
) -> None:
    """Close (or mark retrying) a tool-call row with its outcome."""
    values: dict[str, Any] = {"status": status, "latency_ms": latency_ms}
    if output is not None:
        values["output"] = summarise_output(output)
    if error is not None:
        values["error_class"] = type(error).__name__
        values["error_message"] = scrub(str(error))[:4000]
    if attempts is not None:
        values["attempts"] = attempts
    with session_scope() as session:
        session.execute(update(AgentDecision).where(AgentDecision.id == row_id).values(**values))


def failed_attempts(run_id: str, step: str | None, tool: str, arguments: dict[str, Any]) -> int:
    """How many earlier attempts of this exact call (same run, step, tool and input) failed
    transiently since its last permanent failure: the attempt number of a call survives the
    Celery retries between attempts, and a replay of the run starts counting again."""
    wanted = json.loads(json.dumps(redact(arguments), default=str))
    with session_scope() as session:
        rows = session.execute(
            select(AgentDecision.input, AgentDecision.status)
            .where(
                AgentDecision.run_id == run_id,
                AgentDecision.step == step,
                AgentDecision.tool == tool,
                AgentDecision.kind == "tool_call",
                AgentDecision.status.in_(("retrying", "failed")),
            )
            .order_by(AgentDecision.id)
        ).all()
    count = 0
    for row_input, status in rows:
        if row_input == wanted:
            count = count + 1 if status == "retrying" else 0  # a replay starts a fresh budget
    return count


def earlier_attempts(
    run_id: str,
    step: str | None,
    tool: str,
    arguments: dict[str, Any],
    *,
    lookup: tuple[str, str] | None = None,
) -> tuple[dict[str, Any] | None, bool]:
    """What earlier attempts of this exact call (same run, step, tool and input) tell, from one
    read: (what one that succeeded returned — its recorded output summary —, whether any may
    have taken effect).

    Only an HTTP 4xx answer (429 included) says the API did not perform it; an attempt that
    succeeded did (its attempt failed later, before the effect was recorded done: the object
    exists and must be found, not made again), and one that never finished (the worker died)
    or failed otherwise (5xx, timeout, connection lost) may have.

    `lookup` = (lookup tool, marker): a later successful lookup whose input contains the marker
    answers the question as of then — found nothing (its summary counts 0 results): no effect;
    found something: the effect exists."""
    wanted = json.loads(json.dumps(redact(arguments), default=str))
    tools = [tool] + ([lookup[0]] if lookup else [])
    with session_scope(autocommit=True) as session:
        rows = session.execute(
            select(AgentDecision.tool, AgentDecision.input, AgentDecision.output, AgentDecision.status,
                   AgentDecision.error_message)
            .where(AgentDecision.run_id == run_id, AgentDecision.step == step, AgentDecision.tool.in_(tools),
                   AgentDecision.kind == "tool_call")
            .order_by(AgentDecision.id)
        ).all()  # fmt: skip
    result: dict[str, Any] | None = None
    possible = False
    for row_tool, row_input, output, status, message in rows:
        if lookup and row_tool == lookup[0]:
            if status == "done" and lookup[1] in json.dumps(row_input):
                found = ((output or {}).get("value") or {}).get("results")
                possible = found != 0
            continue
        if row_input != wanted:
            continue
        value = (output or {}).get("value")
        if status == "done" and isinstance(value, dict):
            result = value
        if not (status in ("retrying", "failed") and "HTTP 4" in str(message or "")):
            possible = True
    return result, possible
