"""The tool-call log: one agent_decisions row per external or LLM tool call, written as it
happens (pending → retrying → done | failed) in its own transaction, inputs redacted."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import update

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


def start(run_id: str | None, step: str | None, agent: str | None, tool: str, arguments: dict[str, Any]) -> int:
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
            attempts=1,
        )
        session.add(row)
        session.flush()
        return row.id


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
