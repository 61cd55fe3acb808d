"""The orchestrator: exactly-once dispatch under concurrency, escalation, expiry, entity limits."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import redis
from sqlalchemy import func, insert, select

from switchboard.db.models import AgentDecision, AgentRun, ProactiveInsight
from switchboard.db.queries import recent_runs
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from switchboard.tasks.orchestrator import poll
from tests.support.runs import truncate_run_tables

ALERT = {
    "kind": "hubspot_deal_without_owner",
    "source": "hubspot",
    "severity": "medium",
    "title": "Deal has no owner",
    "entity": {"source": "hubspot", "type": "deal", "id": "placeholder"},
    "dedupe_key": "placeholder",
    "detected_at": "2026-11-24T00:00:00+00:00",
}


def _insight_rows(count: int, now: dt.datetime, *, severity: str = "medium", entity: str | None = None,
                  age_h: float = 0.0, sla_h: float = 4.0) -> list[dict[str, object]]:  # fmt: skip
    rows = []
    for n in range(count):
        entity_id = entity or f"deal-{n}"
        key = f"test:{uuid.uuid4().hex}"
        payload = {**ALERT, "severity": severity, "entity": {**ALERT["entity"], "id": entity_id}, "dedupe_key": key}  # type: ignore[dict-item]
        created = now - dt.timedelta(hours=age_h)
        rows.append({
            "kind": ALERT["kind"], "source": "hubspot", "severity": severity, "title": "Deal has no owner",
            "entity_type": "deal", "entity_id": entity_id, "payload": payload, "dedupe_key": key, "status": "new",
            "attempts": 0, "max_attempts": 3, "occurrences": 1, "created_at": created, "updated_at": created,
            "sla_deadline": created + dt.timedelta(hours=sla_h), "next_attempt_at": created,
        })  # fmt: skip
    return rows


def _insert(rows: list[dict[str, object]]) -> None:
    with session_scope() as session:
        session.execute(insert(ProactiveInsight), rows)


ORCHESTRATOR_LOOP = """
import sys
from switchboard.tasks.orchestrator import poll
total = 0
while True:
    counts = poll()
    total += counts["dispatched"]
    if counts["dispatched"] == 0 and counts["lost_race"] == 0:
        break
print(total)
"""


def test_two_orchestrators_dispatch_5000_insights_exactly_once(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    truncate_run_tables(database_url)
    _insert(_insight_rows(5000, dt.datetime.now(dt.UTC)))
    prefix = f"o{uuid.uuid4().hex[:6]}."  # queues nobody consumes: the messages are counted, not run
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(SWITCHBOARD_DATABASE_URL=database_url, SWITCHBOARD_BROKER_URL=redis_url,
               SWITCHBOARD_QUEUE_PREFIX=prefix, SWITCHBOARD_DATA_DIR=str(tmp_path))  # fmt: skip
    orchestrators = [
        subprocess.Popen([sys.executable, "-c", ORCHESTRATOR_LOOP], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    totals = [int(proc.communicate(timeout=240)[0].strip()) for proc in orchestrators]
    assert all(proc.returncode == 0 for proc in orchestrators)
    assert sum(totals) == 5000 and all(total > 0 for total in totals), totals  # both took a share
    with session_scope() as session:
        per_insight = session.execute(
            select(AgentRun.insight_id, func.count()).group_by(AgentRun.insight_id).having(func.count() > 1)
        ).all()
        assert per_insight == []
        assert session.scalar(select(func.count()).select_from(AgentRun)) == 5000
        assert session.scalar(select(func.count()).where(ProactiveInsight.status == "queued")) == 5000
        assert session.scalar(select(func.count()).where(AgentDecision.kind == "dispatch")) == 5000
    client = redis.Redis.from_url(redis_url)
    queued = sum(client.llen(key) for key in client.scan_iter(f"{prefix}*"))
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
    assert queued == 5000
    print(f"orchestrator shares: {totals}")


def test_aging_insight_is_escalated_and_expired_one_is_marked(database_url: str, redis_url: str) -> None:
    truncate_run_tables(database_url)
    now = dt.datetime.now(dt.UTC)
    settings = get_settings().model_copy(update={"queue_prefix": f"e{uuid.uuid4().hex[:6]}."})
    _insert(_insight_rows(1, now, severity="medium", age_h=3.0, sla_h=4.0, entity="aging"))
    _insert(_insight_rows(1, now, severity="low", age_h=25.0, sla_h=24.0, entity="late"))
    counts = poll(now, settings)
    assert (counts["dispatched"], counts["expired"]) == (1, 1)
    with session_scope() as session:
        aging = session.scalars(select(ProactiveInsight).where(ProactiveInsight.entity_id == "aging")).one()
        late = session.scalars(select(ProactiveInsight).where(ProactiveInsight.entity_id == "late")).one()
        assert aging.status == "queued" and aging.queue == settings.queue_name("high")
        assert late.status == "expired" and late.run_id is None
        reasons = sorted(str(d.input["reason"]) for d in session.scalars(select(AgentDecision)))
    assert reasons[0].startswith("low: SLA deadline passed 3600 s ago")
    assert reasons[1] == "medium: only 25% of SLA left, escalated to high"
    listed = {run["insight_kind"]: run for run in recent_runs()}
    expired = [run for run in recent_runs() if run["status"] == "expired"]
    assert len(expired) == 1 and "SLA deadline passed" in str(expired[0]["error"])
    assert listed


def test_per_entity_concurrency_limit_defers_the_excess(database_url: str, redis_url: str) -> None:
    truncate_run_tables(database_url)
    now = dt.datetime.now(dt.UTC)
    settings = get_settings().model_copy(update={"queue_prefix": f"c{uuid.uuid4().hex[:6]}.", "max_runs_per_entity": 2})
    _insert(_insight_rows(3, now, entity="same-customer"))
    first = poll(now, settings)
    assert (first["dispatched"], first["deferred"]) == (2, 1)
    second = poll(now + dt.timedelta(seconds=10), settings)
    assert (second["dispatched"], second["deferred"]) == (0, 1)  # two runs still active
    with session_scope() as session:
        session.execute(AgentRun.__table__.update().values(status="done"))
    third = poll(now + dt.timedelta(seconds=20), settings)
    assert third["dispatched"] == 1
