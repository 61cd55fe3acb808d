"""The resilience layer against a fake HubSpot, through real workers on Postgres and Redis:
Retry-After honoured without sleeping in a worker, a circuit breaker and a rate budget shared
by several worker processes, replay of a run that exhausted its attempts, and no secret in any
tool-call row or log line."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from switchboard.contracts import ActionPlan
from switchboard.db.models import ActionExecution, AgentConversation, AgentDecision, AgentRun, AgentStep
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.integrations import actions
from switchboard.integrations.resilience import CallContext, Deferred
from switchboard.settings import get_settings
from switchboard.tasks.integrations import fetch
from switchboard.tasks.runs import dispatch_insight
from switchboard.tasks.watch import scan
from tests.fakes.http import Fault, max_in_window
from tests.fakes.hubspot import FakeHubSpot
from tests.support.env import worker_env
from tests.support.runs import empty_tables, wait_for_runs, wait_for_status

TOKEN = "pat-na1-" + str(uuid.uuid4())
SECRETS = {
    "SWITCHBOARD_HUBSPOT_ACCESS_TOKEN": TOKEN,
    "SWITCHBOARD_STRIPE_API_KEY": "sk_live_" + uuid.uuid4().hex[:24],
    "SWITCHBOARD_STRIPE_WEBHOOK_SECRET": "whsec_" + uuid.uuid4().hex,
    "SWITCHBOARD_HUBSPOT_CLIENT_SECRET": uuid.uuid4().hex,
    "SWITCHBOARD_CALLS_API_KEY": "gong-" + uuid.uuid4().hex,
    "SWITCHBOARD_OPERATOR_KEYS": "sbk_" + uuid.uuid4().hex,
    "SWITCHBOARD_INGEST_KEYS": "sbi_" + uuid.uuid4().hex,
}
TASKS_PATH = "/crm/v3/objects/tasks"


@pytest.fixture(scope="module")
def fake_hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN) as fake:
        yield fake  # type: ignore[misc]


def _clear_shared_state(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for pattern in ("switchboard:breaker:*", "switchboard:ratelimit:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)
    client.close()


@pytest.fixture()
def hubspot(
    fake_hubspot: FakeHubSpot, database_url: str, redis_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHubSpot]:
    """The in-process worker talks to the fake HubSpot with real-looking secrets configured."""
    fake_hubspot.reset()
    fake_hubspot.objects["tasks"].clear()
    empty_tables(database_url)
    _clear_shared_state(redis_url)
    for name, value in {**SECRETS, "SWITCHBOARD_HUBSPOT_API_BASE": fake_hubspot.url}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield fake_hubspot
    monkeypatch.undo()
    get_settings.cache_clear()
    _clear_shared_state(redis_url)


def _dispatch_ownerless_deal() -> str:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, [RecordIn("hubspot", "deal", "deal-int", now - dt.timedelta(days=1), {
            "id": "deal-int", "properties": {"dealname": "Integration test", "amount": "900.00",
                                             "dealstage": "qualified", "hubspot_owner_id": None}})])  # fmt: skip
    [insight_id] = scan.delay(["hubspot"]).get(timeout=60)["insights"]
    return dispatch_insight(insight_id)


def _tool_rows(run_id: str, tool: str) -> list[AgentDecision]:
    with session_scope() as session:
        rows = session.scalars(
            select(AgentDecision)
            .where(AgentDecision.run_id == run_id, AgentDecision.tool == tool)
            .order_by(AgentDecision.id)
        ).all()
        session.expunge_all()
        return list(rows)


def test_429_retry_after_is_honoured_and_every_attempt_logged(hubspot: FakeHubSpot) -> None:
    hubspot.inject(Fault("status", status=429, headers={"Retry-After": "2"}, times=3, method="POST", path=TASKS_PATH))
    run_id = _dispatch_ownerless_deal()
    wait_for_status(run_id, "done", timeout_s=120)
    creates = [r for r in hubspot.seen(TASKS_PATH, "POST") if r.path == TASKS_PATH]
    assert [r.status for r in creates] == [429, 429, 429, 201]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(creates)]
    assert all(gap >= 2.0 for gap in gaps), gaps
    rows = _tool_rows(run_id, "hubspot:tasks.create")
    assert [(row.status, row.attempts) for row in rows] == [
        ("retrying", 1),
        ("retrying", 2),
        ("retrying", 3),
        ("done", 4),
    ]
    assert all(row.error_class == "IntegrationError" for row in rows[:3]) and rows[3].error_class is None
    assert "HTTP 429" in str(rows[0].error_message)
    assert len(hubspot.objects["tasks"]) == 1
    with session_scope() as session:
        [execution] = session.scalars(select(ActionExecution).where(ActionExecution.run_id == run_id)).all()
        assert execution.status == "done" and execution.result and execution.result["destination"] == "hubspot"
        advisor = session.scalars(
            select(AgentStep).where(AgentStep.run_id == run_id, AgentStep.step == "advisor")
        ).one()
        assert advisor.retries == 3 and advisor.status == "done"
    print(f"429 gaps between attempts (s): {[round(g, 2) for g in gaps]}")


def test_no_secret_in_tool_call_rows_or_logs(hubspot: FakeHubSpot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hubspot.inject(Fault("status", status=503, times=1, method="POST", path=TASKS_PATH))
    run_id = _dispatch_ownerless_deal()
    wait_for_status(run_id, "done", timeout_s=120)
    with session_scope() as session:
        texts = [repr((d.input, d.output, d.error_message)) for d in session.scalars(select(AgentDecision))]
        texts += [repr((s.input, s.output, s.error)) for s in session.scalars(select(AgentStep))]
        texts += [repr(r.error) for r in session.scalars(select(AgentRun))]
        texts += [c.content for c in session.scalars(select(AgentConversation))]
    assert any("HTTP 503" in text for text in texts)  # the failure was logged, and scanned
    haystack = "\n".join(texts) + "\n" + caplog.text
    for name, secret in SECRETS.items():
        assert secret not in haystack, f"{name} leaked"
    assert len(hubspot.seen()) >= 2 and hubspot.seen()[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_replay_after_exhausted_5xx_completes_without_repeating_effects(
    hubspot: FakeHubSpot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_INTEGRATION_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    hubspot.inject(Fault("status", status=500, times=None, method="POST", path=TASKS_PATH))
    run_id = _dispatch_ownerless_deal()
    [run] = wait_for_runs([run_id], timeout_s=120)
    assert run["status"] == "failed"
    assert str(run["error"]).startswith("advisor: IntegrationExhausted: hubspot:tasks.create failed: HTTP 500")
    assert hubspot.objects["tasks"] == {}

    hubspot.clear_faults()  # the API recovers
    listed = subprocess.run(
        [sys.executable, "-m", "switchboard", "failures"], capture_output=True, text=True, env=os.environ
    )
    assert listed.returncode == 0 and run_id in listed.stdout and "IntegrationExhausted" in listed.stdout
    replayed = subprocess.run(
        [sys.executable, "-m", "switchboard", "replay", run_id], capture_output=True, text=True, env=os.environ
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"run {run_id} queued again from its advisor step" in replayed.stdout
    wait_for_status(run_id, "done", timeout_s=120)
    assert len(hubspot.objects["tasks"]) == 1
    with session_scope() as session:
        steps = {s.step: s for s in session.scalars(select(AgentStep).where(AgentStep.run_id == run_id))}
        assert (steps["watcher"].attempt, steps["analyst"].attempt) == (1, 1)  # not re-run
        executions = session.scalars(select(ActionExecution).where(ActionExecution.run_id == run_id)).all()
        assert [(e.action_type, e.status) for e in executions] == [("create_hubspot_task", "done")]
    statuses = [row.status for row in _tool_rows(run_id, "hubspot:tasks.create")]
    assert statuses == ["retrying", "failed", "done"]
    again = subprocess.run(
        [sys.executable, "-m", "switchboard", "replay", run_id], capture_output=True, text=True, env=os.environ
    )
    assert again.returncode == 1 and "only failed runs can be replayed" in again.stdout + again.stderr


# --------------------------------------------------------------------------- several worker processes


def _worker(env: dict[str, str], concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "switchboard", "worker", "--queues", "default", "--concurrency", str(concurrency)],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _worker_env(fake: FakeHubSpot, database_url: str, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return worker_env(database_url, redis_url, tmp_path, **SECRETS, SWITCHBOARD_HUBSPOT_API_BASE=fake.url, **extra)


def _send_fetches(env: dict[str, str], ids: list[str]) -> list[object]:
    queue = env["SWITCHBOARD_QUEUE_PREFIX"] + "default"
    return [fetch.apply_async(args=["hubspot", "deal", object_id], queue=queue) for object_id in ids]


def test_circuit_breaker_shared_by_two_worker_processes(
    fake_hubspot: FakeHubSpot, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    fake = fake_hubspot
    fake.reset()
    _clear_shared_state(redis_url)
    ids = [f"deal-cb-{n}" for n in range(6)]
    for object_id in ids:
        fake.add("deals", object_id, {"dealname": object_id})
    env = _worker_env(fake, database_url, redis_url, tmp_path, SWITCHBOARD_BREAKER_FAILURE_THRESHOLD="3",
                      SWITCHBOARD_BREAKER_RESET_TIMEOUT_S="3", SWITCHBOARD_INTEGRATION_MAX_ATTEMPTS="30",
                      SWITCHBOARD_INTEGRATION_BACKOFF_BASE_S="0.2", SWITCHBOARD_INTEGRATION_BACKOFF_CAP_S="0.5",
                      SWITCHBOARD_RETRY_BACKOFF_CAP_S="1")  # fmt: skip
    fake.inject(Fault("status", status=503, times=None, method="GET", path_prefix="/crm/v3/objects/deals"))
    client = redis.Redis.from_url(redis_url)
    worker = _worker(env, 2, tmp_path / "worker.log")
    try:
        results = _send_fetches(env, ids)
        deadline = time.monotonic() + 60
        while not client.hget("switchboard:breaker:hubspot", "opened"):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.02)
        open_until = float(client.hget("switchboard:breaker:hubspot", "open_until") or 0)
        opened_at = open_until - 3
        storm = fake.seen("/crm/v3/objects/deals")
        fake.clear_faults()  # the storm ends while the circuit is open
        for result in results:
            assert result.get(timeout=90)["stored"] is True  # type: ignore[attr-defined]
    finally:
        _stop(worker)
    requests = fake.seen("/crm/v3/objects/deals")
    assert len([r for r in storm if r.status == 503]) >= 3  # the threshold was reached before it opened
    during_open = [r for r in requests if opened_at + 0.05 < r.wall < open_until]
    assert during_open == [], "requests reached the API while the circuit was open"
    after = sorted((r for r in requests if r.wall >= open_until), key=lambda r: r.wall)
    probe = after[0]
    assert probe.status == 200
    assert [r for r in after[1:] if r.wall < probe.done_wall] == [], "more than one probe while half-open"
    assert client.hget("switchboard:breaker:hubspot", "state") == b"closed"
    assert int(client.hget("switchboard:breaker:hubspot", "opened") or 0) == 1
    client.close()
    print(f"breaker: {len(storm)} requests before it opened, 0 while open, 1 probe, then {len(after) - 1} more")


def test_rate_budget_shared_by_four_worker_processes(
    fake_hubspot: FakeHubSpot, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    fake = fake_hubspot
    fake.reset()
    _clear_shared_state(redis_url)
    ids = [f"deal-rl-{n}" for n in range(60)]
    for object_id in ids:
        fake.add("deals", object_id, {"dealname": object_id})
    env = _worker_env(fake, database_url, redis_url, tmp_path, SWITCHBOARD_HUBSPOT_RATE_PER_S="10")
    worker = _worker(env, 4, tmp_path / "worker.log")
    try:
        started = time.monotonic()
        for result in _send_fetches(env, ids):
            assert result.get(timeout=120)["stored"] is True  # type: ignore[attr-defined]
        elapsed = time.monotonic() - started
    finally:
        _stop(worker)
    times = sorted(r.wall for r in fake.seen("/crm/v3/objects/deals"))
    assert len(times) == 60
    # The bucket (rate 10/s, burst 1) grants at most 11 tokens in any second; the fake sees
    # arrivals, which trail their grants by each process's send latency, so a request granted
    # late in one window can land in the next: one grant interval (100 ms) of that jitter is
    # allowed. Four processes each with its own bucket would send 40 a second.
    busiest = max_in_window(times, 1.0)
    assert busiest <= 12, f"{busiest} requests in one second"
    # Sustained: 59 intervals after the first token take at least 5.8 s at 10/s (1.5 s at 40/s).
    span = times[-1] - times[0]
    assert span >= 5.8 - 0.1, f"60 requests in {span:.2f} s"
    print(f"rate limit: 60 requests in {elapsed:.1f} s (span {span:.2f} s), at most {busiest} in any 1 s window")


def test_a_created_task_whose_ledger_entry_was_never_marked_done_is_found_not_created_again(
    hubspot: FakeHubSpot,
) -> None:
    """The state a step leaves when HubSpot created the task and the tool-call row says so, but
    the ledger's `done` never got written (the database went away in between): the claim stays
    `executing`. When the claim's lease has run out, the next delivery must find the task."""
    run_id = _dispatch_ownerless_deal()
    wait_for_status(run_id, "done", timeout_s=120)
    assert len(hubspot.objects["tasks"]) == 1
    lease_s = get_settings().task_time_limit_s
    with session_scope() as session:
        plan = session.scalars(select(AgentStep).where(AgentStep.run_id == run_id, AgentStep.step == "advisor")).one()
        [planned] = [a for a in ActionPlan.model_validate(plan.output).actions if a.type == "create_hubspot_task"]
        claim = session.scalars(select(ActionExecution).where(ActionExecution.run_id == run_id)).one()
        claim.status = "executing"
        claim.executed_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=lease_s + 1)
    assert [row.status for row in _tool_rows(run_id, "hubspot:tasks.create")] == ["done"]

    context = CallContext(run_id=run_id, step="advisor", agent="advisor")
    for _ in range(50):  # as the task would: a call deferred by the shared rate budget is made later
        try:
            performed, result = actions.execute(run_id, planned, context)
            break
        except Deferred as deferred:
            time.sleep(deferred.retry_after_s or 0.1)
    assert performed and result["deduplicated"] is True
    assert [result["task_id"]] == list(hubspot.objects["tasks"])  # the task the first attempt made
    assert [row.status for row in _tool_rows(run_id, "hubspot:tasks.create")] == ["done"]  # no second create
