"""Insights an operator works (on Postgres, with the real orchestrator pass): acknowledge, snooze
and resolve from the CLI and the API — recorded, and honoured by the orchestrator (no run for a
snoozed or resolved insight; an acknowledged one past its SLA is run, not expired) and by the
Watcher (a worse occurrence of a snoozed episode re-opens it for when the snooze ends)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from switchboard.cli import cli
from switchboard.contracts import Alert, EntityRef
from switchboard.db import runs as lifecycle
from switchboard.db.models import AgentDecision, AgentRun, ProactiveInsight
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from switchboard.tasks.orchestrator import poll
from tests.support.api import api_client
from tests.support.runs import empty_tables, wait_for_runs

API_KEY = "sbo_" + uuid.uuid4().hex
AUTH = {"X-API-Key": API_KEY}


def _alert(n: int, severity: str = "low") -> Alert:
    return Alert(kind="hubspot_stale_deal", source="hubspot", severity=severity, title=f"deal {n} went quiet",
                 entity=EntityRef(source="hubspot", type="deal", id=f"d{n}"), dedupe_key=f"stale:d{n}",
                 detected_at=dt.datetime.now(dt.UTC))  # fmt: skip


def _raise(*alerts: Alert) -> list[int]:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        return [lifecycle.record_occurrence(session, alert, now, get_settings())[0] for alert in alerts]


def _insight(insight_id: int) -> ProactiveInsight:
    with session_scope() as session:
        found = session.get(ProactiveInsight, insight_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.fixture()
def client(database_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    empty_tables(database_url)
    with api_client(monkeypatch, SWITCHBOARD_OPERATOR_KEYS=API_KEY) as test_client:
        yield test_client
    with session_scope() as session:  # the runs a test dispatched finish before their rows go
        run_ids = list(session.scalars(select(AgentRun.id)))
    wait_for_runs(run_ids, timeout_s=60)
    empty_tables(database_url)


def test_snoozed_and_resolved_insights_get_no_run_and_the_cli_shows_the_triage(client: TestClient) -> None:
    snoozed, resolved, acknowledged, plain = _raise(_alert(1), _alert(2), _alert(3), _alert(4))
    runner = CliRunner()
    snooze = runner.invoke(cli, ["insights", "snooze", str(snoozed), "--until", "2h", "--note", "waiting on sales"])
    assert snooze.exit_code == 0, snooze.output
    assert f"insight {snoozed} (hubspot_stale_deal, deal d1): snoozed until" in snooze.output
    resolve = runner.invoke(cli, ["insights", "resolve", str(resolved), "--note", "deal closed by hand"])
    assert resolve.exit_code == 0 and "resolved by" in resolve.output, resolve.output
    ack = runner.invoke(cli, ["insights", "ack", str(acknowledged)])
    assert ack.exit_code == 0 and "ack " in ack.output, ack.output
    bad = runner.invoke(cli, ["insights", "snooze", str(plain), "--until", "soon"])
    assert bad.exit_code == 2 and "neither a duration" in bad.output
    again = runner.invoke(cli, ["insights", "ack", str(resolved)])
    assert again.exit_code == 1 and f"insight {resolved} is resolved" in again.output

    counts = poll()
    assert counts["dispatched"] == 2  # the acknowledged one and the untouched one
    with session_scope() as session:
        decisions = session.scalars(select(AgentDecision).where(AgentDecision.kind == "dispatch")).all()
        dispatched = {d.input["insight_id"] for d in decisions if (d.output or {}).get("outcome") == "dispatched"}
    assert dispatched == {acknowledged, plain}
    assert _insight(snoozed).status == "new" and _insight(resolved).status == "new"
    assert _insight(resolved).cleared_by and _insight(resolved).note == "deal closed by hand"

    table = runner.invoke(cli, ["insights", "--status", "all"])
    assert table.exit_code == 0, table.output
    assert "waiting on sales" in table.output and "deal closed by hand" in table.output
    listed = json.loads(runner.invoke(cli, ["insights", "--json"]).stdout)  # open: the resolved one is gone
    assert {item["id"] for item in listed} == {snoozed, acknowledged, plain}
    by_id = {item["id"]: item for item in listed}
    assert by_id[snoozed]["snoozed"] and by_id[snoozed]["sla_left_s"] > 0
    assert by_id[acknowledged]["acknowledged_by"] and by_id[plain]["run_id"]


def test_the_api_works_insights_and_the_watcher_honours_a_snooze(client: TestClient) -> None:
    [episode] = _raise(_alert(7))
    listed = client.get("/api/insights", headers=AUTH)
    assert listed.status_code == 200 and [i["id"] for i in listed.json()["insights"]] == [episode]
    assert client.get("/api/insights").status_code == 401
    assert client.get("/api/insights?status=nope", headers=AUTH).json()["detail"][0]["loc"] == ["query", "status"]
    past = client.post(f"/api/insights/{episode}/snooze", json={"until": "2020-01-01T00:00:00Z"}, headers=AUTH)
    assert past.status_code == 409 and "not in the future" in past.json()["detail"]
    naive = client.post(f"/api/insights/{episode}/snooze", json={"until": "2030-01-01T00:00:00"}, headers=AUTH)
    assert naive.status_code == 422
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    snoozed = client.post(f"/api/insights/{episode}/snooze", json={"until": until.isoformat(), "by": "ana"},
                          headers=AUTH)  # fmt: skip
    assert snoozed.status_code == 200 and snoozed.json()["snoozed"] and snoozed.json()["acknowledged_by"] == "ana"
    assert client.post("/api/insights/999999/resolve", headers=AUTH).status_code == 404

    # its run finished; the anomaly comes back worse while snoozed: re-opened for when the snooze ends
    with session_scope() as session:
        session.execute(update(ProactiveInsight).where(ProactiveInsight.id == episode).values(status="done"))
    assert _raise(_alert(7, severity="high")) == [episode]
    reopened = _insight(episode)
    assert (reopened.status, reopened.severity, reopened.occurrences) == ("new", "high", 2)
    assert reopened.next_attempt_at is not None and abs((reopened.next_attempt_at - until).total_seconds()) < 1
    assert poll()["dispatched"] == 0  # not before the snooze ends

    resolved = client.post(f"/api/insights/{episode}/resolve", json={"note": "fixed upstream"}, headers=AUTH)
    assert resolved.status_code == 200 and resolved.json()["resolved_by"] == "api"
    assert client.post(f"/api/insights/{episode}/acknowledge", headers=AUTH).status_code == 409
    # the episode ended: the next occurrence is a new insight
    assert _raise(_alert(7)) != [episode]


def test_an_acknowledged_insight_past_its_sla_is_run_not_expired(client: TestClient) -> None:
    expired, acknowledged = _raise(_alert(11), _alert(12))
    with session_scope() as session:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        session.execute(update(ProactiveInsight).where(ProactiveInsight.id.in_([expired, acknowledged]))
                        .values(sla_deadline=past))  # fmt: skip
    assert CliRunner().invoke(cli, ["insights", "ack", str(acknowledged)]).exit_code == 0
    counts = poll()
    assert (counts["expired"], counts["dispatched"]) == (1, 1)
    assert _insight(expired).status == "expired" and _insight(acknowledged).status != "expired"


def test_status_reports_each_check_with_an_exit_code_and_never_a_key(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-ant-" + uuid.uuid4().hex
    monkeypatch.setenv("SWITCHBOARD_ANTHROPIC_API_KEY", secret)
    get_settings.cache_clear()
    runner = CliRunner()
    shown = runner.invoke(cli, ["status", "--json", "--beat-wait", "1"])
    report = json.loads(shown.stdout)
    verdicts = {check["name"]: check["verdict"] for check in report["checks"]}
    assert verdicts["database"] == "ok" and verdicts["broker"] == "ok" and verdicts["queues"] == "ok", report
    assert verdicts["beat"] == "degraded"  # no beat runs in the test session: said so, exit 1
    assert shown.exit_code == 1 and report["status"] == "degraded"
    providers = next(check for check in report["checks"] if check["name"] == "providers")
    assert providers["data"]["keys_set"]["SWITCHBOARD_ANTHROPIC_API_KEY"] is True
    table = runner.invoke(cli, ["status", "--beat-wait", "1"])
    assert secret not in shown.output + table.output and "ANTHROPIC_API_KEY" in table.output
    assert "is `switchboard beat` running?" in table.output

    monkeypatch.setenv("SWITCHBOARD_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    get_settings.cache_clear()
    from switchboard.celery_app import app as celery_app

    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        down = runner.invoke(cli, ["status", "--json"])
    finally:
        celery_app.conf.broker_url = previous
    assert down.exit_code == 2, down.output
    assert {c["name"]: c["verdict"] for c in json.loads(down.stdout)["checks"]}["broker"] == "down"
    get_settings.cache_clear()
