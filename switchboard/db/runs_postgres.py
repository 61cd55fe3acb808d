"""Two run-lifecycle writes on PostgreSQL, one statement each: a step's start and its success
(`db/runs.py` calls them behind `start_step` and `finish_step`).

A step's start touches the run, the step, the insight and the previous step; its success the
step, the run (totals, and the outcome after the last step), the insight and the step's
conversation. Through the ORM that was about ten round trips per hook — the largest cost of a
step once the model is fast. Here each hook is one statement of data-modifying CTEs.

Every CTE that writes reads from `run`, the UPDATE of the run's row: the run row is locked
first, as the ORM path (`session.get(..., with_for_update=True)`) does, so the hooks of one
run serialise on it and never deadlock on each other. The semantics are those of the portable
path in `switchboard.db.runs`; `tests/integration/test_step_hooks.py` runs both.

The statements run in autocommit (each is its own transaction: no BEGIN/COMMIT round trips)
and are PREPAREd once per connection: planning them cost as much as running them. Behind a
pooler in transaction mode (PgBouncer, Supabase's port 6543) a connection's prepared
statements may be missing or taken; the first such error switches the process to sending the
statements as text. A step's start is committed without waiting for its WAL flush
(`synchronous_commit` off for that statement alone): it records progress that the step's
outcome supersedes, so a database crash may lose it but nothing that matters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

log = logging.getLogger("switchboard.lifecycle")

_PARAM = re.compile(r"(?<![:\w]):(\w+)")
# invalid_sql_statement_name (not prepared on this server connection), duplicate_prepared_statement,
# feature_not_supported ("cached plan must not change result type": the schema changed under it)
_NOT_PREPARED = {"26000", "42P05", "0A000"}
# Sent in the same round trip before each statement: the run's row is locked by a statement of
# its own, so the statement after it reads the step, the approvals and everything else as they
# are once the lock is held (a statement's reads are as of its start, and a data-modifying CTE
# that waits for a lock does not read again).
_LOCK_RUN = "SELECT 1 FROM agent_runs WHERE id = {run_id} FOR UPDATE; "
_prepare = True  # until a pooler shows it cannot keep prepared statements


class Prepared:
    """A statement with :named parameters, PREPAREd once per database connection (parameter
    types given in ``types``, in PostgreSQL's names) and EXECUTEd after; sent as text when
    prepared statements are not available."""

    def __init__(self, name: str, sql: str, types: dict[str, str]) -> None:
        names = list(dict.fromkeys(_PARAM.findall(sql)))
        if set(names) != set(types):
            raise ValueError(f"{name}: parameters {sorted(names)} but types for {sorted(types)}")
        # The name carries the statement's hash: behind a pooler, a server connection another
        # version of Switchboard prepared on never runs that version's SQL under our name.
        name = f"{name}_{hashlib.sha256(sql.encode()).hexdigest()[:10]}"
        self.name = name
        self.names = names
        self.json_params = {n for n, kind in types.items() if kind == "jsonb"}
        self.prepare_sql = f"PREPARE {name}({', '.join(types[n] for n in names)}) AS " + _PARAM.sub(
            lambda m: f"${names.index(m.group(1)) + 1}", sql
        )
        self.execute_sql = (
            _LOCK_RUN.format(run_id="%(run_id)s") + f"EXECUTE {name}({', '.join(f'%({n})s' for n in names)})"
        )
        typed = _LOCK_RUN.format(run_id=":run_id") + _PARAM.sub(
            lambda m: f"CAST(:{m.group(1)} AS {types[m.group(1)]})", sql
        )
        self.text: TextClause = text(typed).bindparams(
            *(bindparam(n, type_=JSONB(none_as_null=True)) for n in names if n in self.json_params)
        )

    def execute(self, session: Session, params: dict[str, Any]) -> Any:
        """Run it on the session's connection; the result's one row."""
        global _prepare
        connection = session.connection()
        if _prepare:
            prepared: set[str] = connection.connection.info.setdefault("switchboard_prepared", set())
            try:
                if self.name not in prepared:
                    connection.exec_driver_sql(self.prepare_sql)
                    prepared.add(self.name)
                values = {
                    n: json.dumps(params[n]) if n in self.json_params and params[n] is not None else params[n]
                    for n in self.names
                }
                return connection.exec_driver_sql(self.execute_sql, values).one()
            except DBAPIError as error:
                if getattr(error.orig, "pgcode", None) not in _NOT_PREPARED:
                    raise
                log.warning("prepared statements unavailable on this database connection (a pooler in "
                            "transaction mode?): sending statements as text from now on")  # fmt: skip
                _prepare = False
        return connection.execute(self.text, params).one()


_STARTED = Prepared(
    "switchboard_step_started",
    """
WITH run AS (
    UPDATE agent_runs AS r
    SET status = 'running', agent = :agent,
        queue_wait_ms = CASE WHEN r.started_at IS NULL THEN :wait_ms ELSE r.queue_wait_ms END,
        started_at = coalesce(r.started_at, :now), updated_at = now()
    WHERE r.id = :run_id
    RETURNING r.id, r.insight_id
), prior AS (
    SELECT status, output FROM agent_steps WHERE run_id = :run_id AND step = :step
), step AS (
    INSERT INTO agent_steps AS s (run_id, step, agent, status, attempt, retries, task_id, queue,
                                  enqueued_at, started_at, queue_wait_ms, input, tokens_in, tokens_out, cost_usd)
    SELECT run.id, :step, :agent, 'running', 1, 0, :task_id, :queue, :enqueued, :now, :wait_ms, :input, 0, 0, 0
    FROM run
    ON CONFLICT (run_id, step) DO UPDATE
    SET status = 'running', attempt = s.attempt + 1, task_id = excluded.task_id, queue = excluded.queue,
        enqueued_at = excluded.enqueued_at, started_at = excluded.started_at,
        queue_wait_ms = excluded.queue_wait_ms, input = coalesce(s.input, excluded.input), updated_at = now()
    WHERE s.status <> 'done'
    RETURNING s.id
), insight AS (
    UPDATE proactive_insights AS i SET status = 'running', updated_at = now()
    FROM run WHERE i.id = run.insight_id AND i.run_id = run.id AND i.status <> 'running'
    RETURNING i.id
), previous AS (
    UPDATE agent_steps AS p SET status = 'done', error = NULL, finished_at = coalesce(p.finished_at, :now),
                                updated_at = now()
    WHERE p.run_id = :run_id AND p.step = :previous AND p.status <> 'done' AND EXISTS (SELECT 1 FROM run)
    RETURNING p.id
)
SELECT (SELECT count(*) FROM run) AS found, (SELECT status FROM prior) AS status, (SELECT output FROM prior) AS output,
       (SELECT count(*) FROM step) + (SELECT count(*) FROM insight) + (SELECT count(*) FROM previous) AS written,
       set_config('synchronous_commit', 'off', true) AS commit_mode
""",
    {"run_id": "text", "step": "text", "agent": "text", "previous": "text", "task_id": "text", "queue": "text",
     "now": "timestamptz", "enqueued": "timestamptz", "wait_ms": "double precision", "input": "jsonb"},
)  # fmt: skip


def step_started(
    session: Session,
    *,
    run_id: str,
    step: str,
    agent: str,
    previous: str | None,
    task_id: str | None,
    queue: str | None,
    now: dt.datetime,
    enqueued: dt.datetime | None,
    wait_ms: float | None,
    step_input: dict[str, Any] | None,
) -> tuple[str | None, dict[str, Any] | None] | None:
    """Mark the step running (unless it already finished) and the run, insight and previous
    step accordingly; the step's prior (status, output), or None for an unknown run."""
    row = _STARTED.execute(
        session,
        {"run_id": run_id, "step": step, "agent": agent, "previous": previous, "task_id": task_id, "queue": queue,
         "now": now, "enqueued": enqueued, "wait_ms": wait_ms, "input": step_input},
    )  # fmt: skip
    return (row.status, row.output) if row.found else None


_FINISHED = """
WITH run AS (
    UPDATE agent_runs AS r
    SET tokens_in = r.tokens_in + :tokens_in, tokens_out = r.tokens_out + :tokens_out,
        cache_read_tokens = r.cache_read_tokens + :cache_read, cache_write_tokens = r.cache_write_tokens + :cache_write,
        cost_usd = r.cost_usd + :cost_usd,
        provider = CASE WHEN :provider IS NULL THEN r.provider ELSE (
            SELECT string_agg(name, '+' ORDER BY name COLLATE "C")
            FROM (SELECT DISTINCT unnest(string_to_array(coalesce(r.provider, ''), '+') || :provider)
                  AS name) AS names
            WHERE name <> '') END,
        model = CASE WHEN :provider IS NULL THEN r.model ELSE :model END,
        {final}
        updated_at = now()
    WHERE r.id = :run_id
    RETURNING r.id, r.insight_id, r.status
), step AS (
    INSERT INTO agent_steps AS s (run_id, step, agent, status, attempt, retries, finished_at, output,
                                  tokens_in, tokens_out, cache_read_tokens, cache_write_tokens, cost_usd, provider,
                                  model)
    SELECT run.id, :step, :agent, 'done', 0, 0, :now, :output, :tokens_in, :tokens_out, :cache_read, :cache_write,
           :cost_usd, :provider, :model
    FROM run
    ON CONFLICT (run_id, step) DO UPDATE
    SET status = 'done', error = NULL,
        -- a step its own success already recorded (done, with its output) keeps that outcome;
        -- one closed by its successor's start (done, no output) gets it now
        finished_at = CASE WHEN s.status = 'done' AND s.output IS NOT NULL THEN s.finished_at
                           ELSE excluded.finished_at END,
        latency_ms = CASE WHEN s.status = 'done' AND s.output IS NOT NULL THEN s.latency_ms
                          ELSE extract(epoch FROM (excluded.finished_at - s.started_at)) * 1000 END,
        output = CASE WHEN s.status = 'done' AND s.output IS NOT NULL THEN s.output ELSE excluded.output END,
        tokens_in = s.tokens_in + excluded.tokens_in, tokens_out = s.tokens_out + excluded.tokens_out,
        cache_read_tokens = s.cache_read_tokens + excluded.cache_read_tokens,
        cache_write_tokens = s.cache_write_tokens + excluded.cache_write_tokens,
        cost_usd = s.cost_usd + excluded.cost_usd,
        provider = coalesce(excluded.provider, s.provider), model = coalesce(excluded.model, s.model),
        updated_at = now()
    RETURNING s.latency_ms
), insight AS (
    UPDATE proactive_insights AS i SET status = run.status, updated_at = now()
    FROM run WHERE {final_insight} i.id = run.insight_id AND i.run_id = run.id AND i.status <> run.status
    RETURNING i.id
), conversation AS (
    INSERT INTO agent_conversations (run_id, step, agent, entity_type, entity_id, role, content, provider, model,
                                     tokens_in, tokens_out)
    SELECT run.id, :step, :agent, :entity_type, :entity_id, c.role, c.content, c.provider, c.model,
           coalesce(c.tokens_in, 0), coalesce(c.tokens_out, 0)
    FROM run, jsonb_to_recordset(:conversation)
        AS c(role text, content text, provider text, model text, tokens_in int, tokens_out int)
    RETURNING 1
)
SELECT (SELECT count(*) FROM run) AS found, (SELECT latency_ms FROM step) AS latency_ms,
       (SELECT count(*) FROM insight) + (SELECT count(*) FROM conversation) AS written
"""

# The last step settles the run: waiting for approval while any of its actions is pending one.
_SETTLE = """
        status = CASE WHEN EXISTS (SELECT 1 FROM approvals AS a WHERE a.run_id = r.id AND a.status = 'pending')
                      THEN 'awaiting_approval' ELSE 'done' END,
        finished_at = :now, error = NULL,
        latency_ms = extract(epoch FROM (:now - coalesce(r.enqueued_at, r.created_at))) * 1000,"""

_FINISHED_TYPES = {
    "run_id": "text", "step": "text", "agent": "text", "now": "timestamptz", "output": "jsonb", "tokens_in": "integer",
    "tokens_out": "integer", "cache_read": "integer", "cache_write": "integer",
    "cost_usd": "double precision", "provider": "text", "model": "text",
    "entity_type": "text", "entity_id": "text", "conversation": "jsonb",
}  # fmt: skip
_FINISHED_STEP = Prepared(
    "switchboard_step_finished", _FINISHED.format(final="", final_insight="false AND"), _FINISHED_TYPES
)
_FINISHED_RUN = Prepared("switchboard_run_finished", _FINISHED.format(final=_SETTLE, final_insight=""), _FINISHED_TYPES)


def step_succeeded(
    session: Session,
    *,
    run_id: str,
    step: str,
    agent: str,
    final: bool,
    now: dt.datetime,
    output: dict[str, Any],
    tokens_in: int,
    tokens_out: int,
    cache_read: int,
    cache_write: int,
    cost_usd: float | None,
    provider: str | None,
    model: str | None,
    entity_type: str | None,
    entity_id: str | None,
    conversation: list[dict[str, Any]],
) -> tuple[bool, float | None]:
    """Record a step's success (and the run's outcome after the last step); (run found, latency ms)."""
    row = (_FINISHED_RUN if final else _FINISHED_STEP).execute(
        session,
        {"run_id": run_id, "step": step, "agent": agent, "now": now, "output": output,
         "tokens_in": tokens_in, "tokens_out": tokens_out, "cache_read": cache_read, "cache_write": cache_write,
         "cost_usd": cost_usd, "provider": provider, "model": model,
         "entity_type": entity_type, "entity_id": entity_id, "conversation": conversation},
    )  # fmt: skip
    return bool(row.found), row.latency_ms
