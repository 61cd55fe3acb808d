"""A step's start (`db/runs.start_step`, as the task base calls it) and its success (the hook,
as Celery calls it: the real step task, a pushed request carrying the attempt's context), on
PostgreSQL (one prepared statement each) and on SQLite (the portable path): the same attempts
leave the same rows, and the rows are the ones a run's history needs — including the awkward
orders a crash or a fast successor produces. In this process, against real databases.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

from switchboard.agents.context import ConversationEntry, StepContext, attach
from switchboard.db import runs as lifecycle
from switchboard.db import runs_postgres as postgres
from switchboard.db.models import AgentConversation, AgentRun, AgentStep, Approval, ProactiveInsight
from switchboard.db.runs import Prior
from switchboard.db.session import dispose_engines, get_engine, session_scope
from switchboard.hooks import runs as hooks
from switchboard.tasks.steps import advisor_step, analyst_step, watcher_step
from tests.support.pgbouncer import PgBouncer
from tests.support.runs import on_database
from tests.support.services import DatabaseFactory

NOW = dt.datetime.now(dt.UTC)
TASKS = {"watcher": watcher_step, "analyst": analyst_step, "advisor": advisor_step}


@pytest.fixture(params=["postgresql", "sqlite"])
def backend(
    request: pytest.FixtureRequest, pg_database_factory: DatabaseFactory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:  # fmt: skip
    url = pg_database_factory.create() if request.param == "postgresql" else f"sqlite:///{tmp_path / 'hooks.db'}"
    with on_database(url, monkeypatch):
        yield request.param


def _new_run() -> str:
    run_id = str(uuid.uuid4())
    with session_scope() as session:
        insight_id = session.scalar(
            insert(ProactiveInsight)
            .values(kind="hubspot_deal_without_owner", source="hubspot", severity="medium", title="Deal d1",
                    entity_type="deal", entity_id="d1", payload={}, dedupe_key=f"k:{run_id}", status="queued",
                    sla_deadline=NOW + dt.timedelta(hours=4), next_attempt_at=NOW, run_id=run_id)
            .returning(ProactiveInsight.id)
        )  # fmt: skip
        session.add(
            AgentRun(id=run_id, insight_id=insight_id, status="queued", enqueued_at=NOW - dt.timedelta(seconds=1))
        )
    return run_id


def _start(step: str, run_id: str, payload: dict[str, Any]) -> tuple[str, Prior | None]:
    """An attempt starts, as the task base records it (`tasks/base.AgentStepTask.begin`)."""
    task_id = str(uuid.uuid4())
    prior = lifecycle.start_step(
        run_id=run_id, step=step, agent=step, task_id=task_id, queue="t.default", now=NOW,
        enqueued=NOW - dt.timedelta(milliseconds=250), step_input=payload,
    )  # fmt: skip
    return task_id, prior


def _succeed(step: str, run_id: str, task_id: str, output: dict[str, Any], provider: str | None = None) -> None:
    """The attempt succeeds, as Celery tells the hooks: the task's request carries its context."""
    task = TASKS[step]
    task.push_request(id=task_id, kwargs={"run_id": run_id})
    if provider is not None:  # the attempt called a model: usage and a transcript to record
        ctx = attach(task.request, StepContext(run_id=run_id, step=step, agent=step, task_id=task_id,
                                               entity_type="deal", entity_id="d1"))  # fmt: skip
        ctx.tokens_in, ctx.tokens_out, ctx.cost_usd, ctx.provider, ctx.model = 100, 20, 0.5, provider, f"{provider}-m"
        reply = ConversationEntry("assistant", "the owner left", provider, f"{provider}-m", 100, 20)
        ctx.conversation = [ConversationEntry("user", "explain d1"), reply]
    try:
        hooks.on_success(sender=task, result=output)
    finally:
        task.pop_request()


def _state(run_id: str) -> dict[str, Any]:
    """What the hooks wrote for one run, without ids and clock readings."""
    with session_scope() as session:
        run = session.get(AgentRun, run_id)
        assert run is not None
        insight = session.get(ProactiveInsight, run.insight_id)
        steps = session.scalars(select(AgentStep).where(AgentStep.run_id == run_id).order_by(AgentStep.id)).all()
        talk = session.scalars(select(AgentConversation).where(AgentConversation.run_id == run_id)
                               .order_by(AgentConversation.id)).all()  # fmt: skip
        return {
            "run": (run.status, run.agent, run.tokens_in, run.tokens_out, round(run.cost_usd, 6), run.provider,
                    run.model, run.started_at is not None, run.queue_wait_ms is not None,
                    run.finished_at is not None, run.latency_ms is not None and run.latency_ms > 0),
            "insight": insight.status if insight else None,
            "steps": [(s.step, s.status, s.attempt, s.tokens_in, s.tokens_out, s.provider, s.model, s.queue,
                       s.input, s.output, s.started_at is not None, s.finished_at is not None,
                       s.latency_ms is not None and s.latency_ms >= 0, s.queue_wait_ms is not None) for s in steps],
            "conversation": [(c.step, c.role, c.content, c.provider, c.tokens_in, c.entity_id) for c in talk],
        }  # fmt: skip


def _scenarios() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    # a whole run, two providers
    run = _new_run()
    for step, provider in (("watcher", "gemini"), ("analyst", "anthropic"), ("advisor", None)):
        task_id, prior = _start(step, run, {"from": step})
        assert prior is not None and prior.output is None
        _succeed(step, run, task_id, {"made_by": step}, provider)
    out["whole run"] = _state(run)

    # the successor starts before the predecessor's success is written (the chain publishes first)
    run = _new_run()
    watcher_task, _ = _start("watcher", run, {"from": "watcher"})
    _start("analyst", run, {"from": "analyst"})
    out["successor first"] = _state(run)
    _succeed("watcher", run, watcher_task, {"made_by": "watcher"})
    out["successor first, then success"] = _state(run)

    # a finished step delivered again: handed on as it is, its outcome kept
    run = _new_run()
    task_id, _ = _start("watcher", run, {"from": "watcher"})
    _succeed("watcher", run, task_id, {"made_by": "watcher"}, "gemini")
    before = _state(run)
    again, prior = _start("watcher", run, {"from": "watcher"})
    assert prior == Prior("done", {"made_by": "watcher"})
    _succeed("watcher", run, again, {"made_by": "watcher"})
    out["redelivered"] = _state(run)
    assert out["redelivered"]["steps"] == before["steps"]

    # an action waits for approval: so do the run and the insight
    run = _new_run()
    with session_scope() as session:
        session.add(Approval(run_id=run, action_key=f"{run}:a", action_type="draft_customer_message", action={},
                             risk="high", status="pending"))  # fmt: skip
    task_id, _ = _start("advisor", run, {"from": "advisor"})
    _succeed("advisor", run, task_id, {"made_by": "advisor"})
    out["approval"] = _state(run)

    # a step of a run that does not exist writes nothing
    ghost = str(uuid.uuid4())
    assert _start("watcher", ghost, {})[1] is None
    _succeed("watcher", ghost, str(uuid.uuid4()), {"made_by": "watcher"}, "gemini")
    with session_scope() as session:
        assert session.scalars(select(AgentStep).where(AgentStep.run_id == ghost)).all() == []
    return out


EXPECTED_WHOLE_RUN_STEPS = [
    ("watcher", "done", 1, 100, 20, "gemini", "gemini-m", "t.default", {"from": "watcher"}, {"made_by": "watcher"},
     True, True, True, True),
    ("analyst", "done", 1, 100, 20, "anthropic", "anthropic-m", "t.default", {"from": "analyst"},
     {"made_by": "analyst"}, True, True, True, True),
    ("advisor", "done", 1, 0, 0, None, None, "t.default", {"from": "advisor"}, {"made_by": "advisor"},
     True, True, True, True),
]  # fmt: skip


def test_hooks_record_what_happened(backend: str) -> None:
    state = _scenarios()
    whole = state["whole run"]
    assert whole["run"] == ("done", "advisor", 200, 40, 1.0, "anthropic+gemini", "anthropic-m", True, True, True, True)
    assert whole["insight"] == "done"
    assert whole["steps"] == EXPECTED_WHOLE_RUN_STEPS
    assert [c[:3] for c in whole["conversation"]] == [
        ("watcher", "user", "explain d1"), ("watcher", "assistant", "the owner left"),
        ("analyst", "user", "explain d1"), ("analyst", "assistant", "the owner left"),
    ]  # fmt: skip

    # the predecessor is closed when its successor starts, and its own success completes it
    closed = state["successor first"]["steps"][0]
    assert closed[:2] == ("watcher", "done") and closed[9] is None and closed[12] is False
    completed = state["successor first, then success"]["steps"][0]
    assert completed[:2] == ("watcher", "done") and completed[9] == {"made_by": "watcher"} and completed[12] is True
    assert state["successor first, then success"]["steps"][1][:2] == ("analyst", "running")

    assert state["approval"]["run"][0] == "awaiting_approval" and state["approval"]["insight"] == "awaiting_approval"


def test_postgres_and_sqlite_paths_write_the_same_rows(
    pg_database_factory: DatabaseFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    states = []
    for url in (pg_database_factory.create(), f"sqlite:///{tmp_path / 'hooks.db'}"):
        with on_database(url, monkeypatch):
            states.append(_scenarios())
    postgres_state, sqlite_state = states
    assert postgres_state == sqlite_state


def test_statements_are_sent_as_text_once_a_connection_lost_its_prepared_ones(
    pg_database_factory: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What a pooler in transaction mode does: the next transaction runs on a server connection
    that never saw our PREPARE. The hook notices, switches to text, and loses nothing."""
    monkeypatch.setattr(postgres, "_prepare", True)
    with on_database(pg_database_factory.create(), monkeypatch):
        run = _new_run()
        task_id, _ = _start("watcher", run, {"from": "watcher"})
        with session_scope(autocommit=True) as session:  # the pooled connection the hooks use
            prepared = session.connection().connection.info["switchboard_prepared"]
            assert any(name.startswith("switchboard_step_started_") for name in prepared)
            session.execute(text("DEALLOCATE ALL"))
        _succeed("watcher", run, task_id, {"made_by": "watcher"}, "gemini")
        analyst_task, _ = _start("analyst", run, {"from": "analyst"})
        assert postgres._prepare is False
        assert "prepared statements unavailable" in caplog.text
        _succeed("analyst", run, analyst_task, {"made_by": "analyst"}, "anthropic")
        state = _state(run)
        assert [s[:2] for s in state["steps"]] == [("watcher", "done"), ("analyst", "done")]
        assert state["run"][2:6] == (200, 40, 1.0, "anthropic+gemini")


def test_through_a_real_transaction_pooler_the_hooks_share_server_connections_and_lose_nothing(
    pg_database_factory: DatabaseFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PgBouncer in transaction mode with one server connection (Supabase's port 6543, at its
    tightest): every client shares it, so a second client's PREPARE meets the first one's
    statement there. The hooks switch to text and write what the unpooled path writes."""
    monkeypatch.setattr(postgres, "_prepare", True)
    bouncer = PgBouncer.start(pg_database_factory.admin_url, pool_size=1)
    try:
        url = bouncer.url(pg_database_factory.create())  # its database, through this pooler
        with on_database(url, monkeypatch):
            run = _new_run()
            task_id, _ = _start("watcher", run, {"from": "watcher"})
            dispose_engines()  # the next hook comes in on a new client connection
            _succeed("watcher", run, task_id, {"made_by": "watcher"}, "gemini")
            analyst_task, _ = _start("analyst", run, {"from": "analyst"})
            _succeed("analyst", run, analyst_task, {"made_by": "analyst"}, "anthropic")
            state = _state(run)
            assert postgres._prepare is False and "prepared statements unavailable" in caplog.text
        assert [s[:2] for s in state["steps"]] == [("watcher", "done"), ("analyst", "done")]
        assert state["run"][2:6] == (200, 40, 1.0, "anthropic+gemini")
        assert bouncer.transactions(make_url(url).database or "") > 0
    finally:
        bouncer.stop()


def test_the_last_step_settles_the_run_on_approvals_decided_while_it_waited_for_the_run(
    pg_database_factory: DatabaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An approval decided while the last step's success waits for the run's lock (the approval
    API holds it): the run must end `done`, not wait for an approval that is no longer pending."""
    with on_database(pg_database_factory.create(), monkeypatch):
        run = _new_run()
        with session_scope() as session:
            session.add(Approval(run_id=run, action_key=f"{run}:a", action_type="draft_customer_message",
                                 action={}, risk="high", status="pending"))  # fmt: skip
        task_id, _ = _start("advisor", run, {"from": "advisor"})
        holder = get_engine().connect()
        holder.execute(text("SELECT 1 FROM agent_runs WHERE id = :id FOR UPDATE"), {"id": run})
        finishing = threading.Thread(target=_succeed, args=("advisor", run, task_id, {"made_by": "advisor"}))
        finishing.start()
        time.sleep(0.5)
        assert finishing.is_alive()  # waiting for the run
        holder.execute(text("UPDATE approvals SET status = 'rejected' WHERE run_id = :id"), {"id": run})
        holder.commit()
        holder.close()
        finishing.join(timeout=30)
        assert _state(run)["run"][0] == "done"
