"""The observability API on Postgres + Redis with a real worker: runs list and filters, a run's
detail, replay and approvals with their 4xx, chart series, and /metrics parsed with
prometheus_client's own text parser."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from switchboard.agents.llm import reset_provider_cache
from switchboard.api.app import create_app
from switchboard.api.metrics import queue_depths
from switchboard.celery_app import app as celery_app
from switchboard.db.models import RUN_STATUSES, AgentStep
from switchboard.db.session import session_scope
from switchboard.demo.scenarios import APPROVAL_KIND
from switchboard.integrations.resilience import CircuitBreaker, RateLimiter, policy_for, shared_redis
from switchboard.settings import Settings, get_settings, load_settings
from switchboard.tasks.integrations import fetch
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.llm_servers import FakeAnthropic, FakeGemini
from tests.support.api import api_client
from tests.support.env import child_env
from tests.support.observability import run_demo_and_approval_scenario
from tests.support.runs import empty_tables, failed_run, wait_for_runs, wait_for_status

API_KEY = "sbk_" + uuid.uuid4().hex
AUTH = {"X-API-Key": API_KEY}
HUBSPOT_TOKEN = "pat-na1-" + str(uuid.uuid4())


@pytest.fixture()
def client(database_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    empty_tables(database_url)
    with api_client(monkeypatch, SWITCHBOARD_OPERATOR_KEYS=API_KEY) as test_client:
        yield test_client


def test_runs_detail_replay_approvals_and_charts(client: TestClient) -> None:
    runs = run_demo_and_approval_scenario()
    failed_id = failed_run()

    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"X-API-Key": "wrong"}).status_code == 401
    listed = client.get("/api/runs?limit=50", headers=AUTH).json()
    assert listed["count"] == len(runs) + 1 == 5
    assert listed["runs"][0]["run_id"] == failed_id  # newest first
    waiting = client.get("/api/runs", params={"status": "awaiting_approval"}, headers=AUTH).json()["runs"]
    assert [r["insight_kind"] for r in waiting] == [APPROVAL_KIND]
    approval_run = waiting[0]["run_id"]
    by_kind = client.get("/api/runs", params={"insight_kind": "calls_connect_rate_drop"}, headers=AUTH).json()
    assert [r["insight_kind"] for r in by_kind["runs"]] == ["calls_connect_rate_drop"]
    by_agent = client.get("/api/runs", params={"agent": "watcher"}, headers=AUTH).json()["runs"]
    assert [r["run_id"] for r in by_agent] == [failed_id]  # the failed run stopped at the watcher
    bad = client.get("/api/runs", params={"agent": "janitor"}, headers=AUTH)
    assert bad.status_code == 422 and "unknown agent 'janitor'" in bad.json()["detail"][0]["msg"]
    assert set(client.get("/api/runs/filters", headers=AUTH).json()["insight_kind"]) >= {APPROVAL_KIND}

    detail = client.get(f"/api/runs/{approval_run}", headers=AUTH).json()
    assert [s["step"] for s in detail["steps"]] == ["watcher", "analyst", "advisor"]
    assert all(s["status"] == "done" and s["latency_ms"] > 0 and s["input"] and s["output"] for s in detail["steps"])
    assert [(t["status"], t["attempts"]) for t in detail["tool_calls"]] == [("done", 1)]
    assert detail["tool_calls"][0]["tool"].startswith("llm:")
    [pending] = [a for a in detail["approvals"] if a["status"] == "pending"]
    assert (pending["action_type"], pending["risk"]) == ("draft_customer_message", "high")
    assert detail["insight"]["kind"] == APPROVAL_KIND and detail["messages"] >= 6
    missing = client.get("/api/runs/no-such-run", headers=AUTH)
    assert (missing.status_code, missing.json()["detail"]) == (404, "no run no-such-run")
    failed = client.get(f"/api/runs/{failed_id}", headers=AUTH).json()
    assert failed["error"].startswith("watcher: ContractViolation") and failed["steps"][0]["error"]

    not_failed = client.post(f"/api/runs/{approval_run}/replay", headers=AUTH)
    assert not_failed.status_code == 409
    assert not_failed.json()["detail"] == f"run {approval_run} is awaiting_approval: only failed runs can be replayed"
    assert client.post("/api/runs/no-such-run/replay", headers=AUTH).status_code == 404
    replayed = client.post(f"/api/runs/{failed_id}/replay", headers=AUTH)
    assert (replayed.status_code, replayed.json()["replayed_from"]) == (202, "watcher")
    again = client.post(f"/api/runs/{failed_id}/replay", headers=AUTH)  # queued (or already failed again)
    assert again.status_code in (202, 409)
    wait_for_runs([failed_id], timeout_s=30)
    decisions = client.get(f"/api/runs/{failed_id}", headers=AUTH).json()["decisions"]
    assert [d["kind"] for d in decisions if d["kind"] == "replay"][:1] == ["replay"]

    listed_approvals = client.get("/api/approvals", headers=AUTH).json()
    assert [a["id"] for a in listed_approvals["approvals"]] == [pending["id"]]
    assert client.post("/api/approvals/999999/approve", headers=AUTH).status_code == 404
    approved = client.post(f"/api/approvals/{pending['id']}/approve", headers=AUTH)
    assert approved.status_code == 202 and approved.json()["task_id"]
    twice = client.post(f"/api/approvals/{pending['id']}/reject", headers=AUTH)
    assert twice.status_code == 409 and "is already" in twice.json()["detail"]
    wait_for_status(approval_run, "done")
    executed = client.get(f"/api/runs/{approval_run}", headers=AUTH).json()
    assert [a["status"] for a in executed["approvals"]] == ["executed"]
    assert sorted(a["action_type"] for a in executed["actions"]) == ["draft_customer_message", "flag_finance_review"]
    assert client.get("/api/approvals", headers=AUTH).json()["count"] == 0

    charts = client.get("/api/dashboard/charts", headers=AUTH).json()
    agents = {row["agent"] for row in charts["latency"]}
    assert agents == {"watcher", "analyst", "advisor"}
    assert all(0 < row["p50_ms"] <= row["p95_ms"] for row in charts["latency"])
    assert sum(row["steps"] for row in charts["latency"] if row["agent"] == "advisor") == 4
    assert sum(row["succeeded"] for row in charts["outcomes"]) == 4  # the approved run is done by now
    assert sum(row["awaiting_approval"] for row in charts["outcomes"]) == 0
    assert sum(row["failed"] for row in charts["outcomes"]) == 1
    assert sum(row["runs"] for row in charts["usage"]) == 5
    listed = client.get("/api/runs", headers=AUTH).json()["runs"]
    assert sum(row["tokens_in"] for row in charts["usage"]) == sum(int(r["tokens_in"]) for r in listed)
    assert set(charts["queues"]) == set(get_settings().all_queues)
    assert client.get("/api/dashboard/charts?hours=0", headers=AUTH).status_code == 422


def test_dashboard_page_and_assets_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert (
        "/dashboard/static/dashboard.js" in page.text and "http" not in page.text.split("<body>")[1].split("</body>")[0]
    )
    assert client.get("/dashboard/runs/abc").text == page.text
    script = client.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and "function drawLatency" in script.text
    assert client.get("/dashboard/static/../settings.py").status_code == 404
    assert client.get("/dashboard/static/secret.txt").status_code == 404
    config = client.get("/api/dashboard/config").json()
    assert config == {"api_key_required": True, "local_key": False, "refresh_s": 5.0}


def test_without_keys_only_loopback_clients_are_served(database_url: str) -> None:
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://localhost", client=("203.0.113.9", 50000)) as remote:
        refused = remote.get("/api/runs")
        assert refused.status_code == 401 and "SWITCHBOARD_OPERATOR_KEYS" in refused.json()["detail"]
        assert refused.headers["www-authenticate"] == "Bearer"
        assert remote.get("/metrics").status_code == 401
    with TestClient(create_app(), base_url="http://localhost", client=("127.0.0.1", 50000)) as local:
        assert local.get("/api/runs").status_code == 200
        # through a proxy on this machine every client looks local: a forwarding header says otherwise
        proxied = local.get("/api/runs", headers={"X-Forwarded-For": "127.0.0.1"})
        assert proxied.status_code == 401


def _scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """/metrics parsed by prometheus_client: sample name → labels → value."""
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return float(samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0))


@pytest.fixture()
def fake_hubspot(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHubSpot]:
    """A fake HubSpot, and the fake Anthropic and Gemini servers behind the real SDKs (the
    offline provider reports no tokens; these report real usage)."""
    with FakeHubSpot(token=HUBSPOT_TOKEN) as fake, FakeAnthropic() as anthropic, FakeGemini() as gemini:
        for name, value in {
            "SWITCHBOARD_HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN,
            "SWITCHBOARD_HUBSPOT_API_BASE": fake.url,
            "SWITCHBOARD_ANTHROPIC_API_KEY": "sk-ant-fake-" + uuid.uuid4().hex,
            "SWITCHBOARD_ANTHROPIC_BASE_URL": anthropic.url,
            "SWITCHBOARD_GEMINI_API_KEY": "AIzaFAKE-" + uuid.uuid4().hex,
            "SWITCHBOARD_GEMINI_BASE_URL": gemini.url,
            "SWITCHBOARD_WATCHER_PROVIDER": "gemini",
            "SWITCHBOARD_ANALYST_PROVIDER": "anthropic",
            "SWITCHBOARD_ADVISOR_PROVIDER": "anthropic",
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        reset_provider_cache()
        yield fake  # type: ignore[misc]
    monkeypatch.undo()
    get_settings.cache_clear()
    reset_provider_cache()


def test_metrics_carry_latency_runs_queues_breakers_rate_waits_and_tokens(
    client: TestClient, fake_hubspot: FakeHubSpot, redis_url: str
) -> None:
    shared = shared_redis()
    breaker_keys = ["switchboard:breaker:calls", "switchboard:ratelimit:hubspot:default"]
    shared.delete(*breaker_keys)
    before = _scrape(client)
    runs = run_demo_and_approval_scenario()

    # a real deferral: the HubSpot budget is spent, so the fetch is re-queued without calling
    fake_hubspot.add("deals", "d-metrics", {"dealname": "Metrics"})
    RateLimiter(shared, "hubspot", "default", policy_for("hubspot")).hold_off(0.4)
    result = fetch.apply_async(args=["hubspot", "deal", "d-metrics"], queue=get_settings().queue_name("default"))
    assert result.get(timeout=30)["stored"] is True
    # and an open circuit for the calls integration (its failure threshold reached)
    breaker = CircuitBreaker(shared, "calls", policy_for("calls"))
    for _ in range(get_settings().breaker_failure_threshold):
        breaker.record(False)
    try:
        after = _scrape(client)
    finally:
        shared.delete(*breaker_keys)

    for agent in ("watcher", "analyst", "advisor"):
        count = _value(after, "switchboard_step_latency_seconds_count", agent=agent)
        assert count - _value(before, "switchboard_step_latency_seconds_count", agent=agent) == len(runs) == 4
        assert _value(after, "switchboard_step_latency_seconds_sum", agent=agent) > _value(
            before, "switchboard_step_latency_seconds_sum", agent=agent
        )
        buckets = sorted(
            (float(dict(labels)["le"]), value)
            for labels, value in after["switchboard_step_latency_seconds_bucket"].items()
            if dict(labels)["agent"] == agent
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert buckets[-1] == (float("inf"), count)
    statuses = Counter(str(run["status"]) for run in runs)
    assert sum(statuses.values()) == 4 and statuses["done"] >= 3
    for status in RUN_STATUSES:
        assert _value(after, "switchboard_runs", status=status) == statuses.get(status, 0)
    assert _value(after, "switchboard_approvals_pending") == sum(int(str(r["actions_awaiting_approval"])) for r in runs)
    assert {dict(labels)["queue"] for labels in after["switchboard_queue_depth"]} == set(get_settings().all_queues)
    assert all(value >= 0 for value in after["switchboard_queue_depth"].values())
    assert _value(after, "switchboard_circuit_breaker_state", integration="calls", state="open") == 1
    assert _value(after, "switchboard_circuit_breaker_state", integration="calls", state="closed") == 0
    assert _value(after, "switchboard_circuit_breaker_state", integration="stripe", state="closed") == 1
    assert _value(after, "switchboard_circuit_breaker_open", integration="calls") == 1
    assert _value(after, "switchboard_circuit_breaker_opened_total", integration="calls") >= 1
    waits = _value(after, "switchboard_rate_limit_waits_total", integration="hubspot")
    assert waits - _value(before, "switchboard_rate_limit_waits_total", integration="hubspot") >= 1
    assert _value(after, "switchboard_rate_limit_wait_seconds_total", integration="hubspot") > 0
    with session_scope() as session:
        usage = session.execute(
            select(AgentStep.provider, func.sum(AgentStep.tokens_in), func.sum(AgentStep.tokens_out),
                   func.sum(AgentStep.cache_read_tokens), func.sum(AgentStep.cache_write_tokens))
            .where(AgentStep.run_id.in_([str(run["run_id"]) for run in runs]))
            .group_by(AgentStep.provider)
        ).all()  # fmt: skip
    assert {row[0] for row in usage} == {"anthropic", "gemini"}
    for provider, *stored_by_direction in usage:
        for direction, stored in zip(("in", "out", "cache_read", "cache_write"), stored_by_direction, strict=True):
            exported = _value(after, "switchboard_llm_tokens_total", provider=provider, direction=direction)
            previous = _value(before, "switchboard_llm_tokens_total", provider=provider, direction=direction)
            assert exported - previous == stored
            assert stored > 0 or direction.startswith("cache")
    anthropic_cache = next(row for row in usage if row[0] == "anthropic")
    assert anthropic_cache[3] > 0 and anthropic_cache[4] > 0  # the analyst's tool turn read its first prompt
    assert _value(after, "switchboard_llm_cost_usd_total", provider="anthropic") > 0
    assert _value(after, "switchboard_scrape_ok", source="database") == 1
    assert _value(after, "switchboard_scrape_ok", source="redis") == 1


def test_queue_depth_counts_every_priority_list(redis_url: str) -> None:
    """Messages nobody consumes (queues of another prefix), at three priorities."""
    settings: Settings = load_settings().model_copy(update={"queue_prefix": f"depth{uuid.uuid4().hex[:6]}."})
    sender = Celery("depth-test", set_as_current=False)
    from switchboard.celery_app import build_config

    sender.conf.update(build_config(settings))
    try:
        for priority in (1, 5, 5, 9):
            sender.send_task("switchboard.nothing", queue=settings.queue_name("high"), priority=priority)
        sender.send_task("switchboard.nothing", queue=settings.queue_name("low"), priority=0)
        deadline = time.monotonic() + 5
        while queue_depths(settings)[settings.queue_name("high")] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        depths = queue_depths(settings)
        assert depths == {
            settings.queue_name("critical"): 0,
            settings.queue_name("high"): 4,
            settings.queue_name("default"): 0,
            settings.queue_name("low"): 1,
        }
    finally:
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{settings.queue_prefix}*"):
            client.delete(key)
        client.close()
        sender.close()
    assert celery_app.conf.task_default_queue != settings.queue_name("default")


def _switchboard(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = child_env(
        SWITCHBOARD_DATABASE_URL=get_settings().database_url,
        SWITCHBOARD_BROKER_URL=get_settings().broker_url,
        SWITCHBOARD_QUEUE_PREFIX=get_settings().queue_prefix,
        COLUMNS="200",
        **extra_env,
    )
    return subprocess.run(
        [sys.executable, "-m", "switchboard", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_runs_table_and_runs_show(client: TestClient) -> None:
    runs = run_demo_and_approval_scenario()
    approval_run = next(str(r["run_id"]) for r in runs if r["insight_kind"] == APPROVAL_KIND)
    table = _switchboard("runs")  # piped, as `switchboard runs | cat`
    assert table.returncode == 0, table.stderr
    assert "Last 4 runs" in table.stdout and "awaiting_approval" in table.stdout
    for run in runs:  # whole ids, each on one line
        assert any(str(run["run_id"]) in line for line in table.stdout.splitlines()), table.stdout
    assert "…" not in table.stdout
    header = next(line for line in table.stdout.splitlines() if "insight" in line and "status" in line)
    assert "run" in header and "provider" in header

    by_prefix = _switchboard("runs", "show", approval_run[:8])
    assert by_prefix.returncode == 0 and f"run {approval_run}" in by_prefix.stdout, by_prefix.stderr
    too_short = _switchboard("runs", "show", approval_run[:2])
    assert too_short.returncode == 1 and "give at least 4 characters" in too_short.stderr

    approvals = _switchboard("approvals", "list")
    assert approvals.returncode == 0, approvals.stderr
    header = next(line for line in approvals.stdout.splitlines() if "risk" in line)
    assert "what and why" in header and "action" in header
    assert approval_run in approvals.stdout and "— why:" in approvals.stdout

    shown = _switchboard("runs", "show", approval_run)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"run {approval_run}" in out and "status awaiting_approval" in out
    for expected in ("Steps", "watcher", "analyst", "advisor", "Tool calls", "llm:get_record", "Approvals",
                     "draft_customer_message", "flag_finance_review (done)"):  # fmt: skip
        assert expected in out, expected
    as_json = json.loads(_switchboard("runs", "show", approval_run, "--json").stdout)
    assert [s["step"] for s in as_json["steps"]] == ["watcher", "analyst", "advisor"]

    unknown = _switchboard("runs", "show", "no-such-run")
    assert unknown.returncode == 1 and "no run no-such-run" in unknown.stderr and unknown.stdout == ""
