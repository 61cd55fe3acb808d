"""Gap detection and tracked backfills against the fake Stripe (`GET /v1/events` with real list
paging and `created` filters): 10,000 events of which the store lacks 737; gap detection finds
exactly those, the backfill stores them once, and a worker killed mid-backfill resumes from the
saved cursor without duplicates."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, insert, select, update

from switchboard.db.backfill_jobs import create_job, get_job, start_job
from switchboard.db.models import BackfillJob, Event
from switchboard.db.session import get_engine, session_scope
from switchboard.settings import get_settings
from switchboard.tasks.backfill import detect_gaps, stall_period
from tests.fakes.stripe import FakeStripe
from tests.support.env import worker_env
from tests.support.runs import empty_tables

TOTAL, MISSING = 10_000, 737
API_KEY = "sk_test_" + uuid.uuid4().hex


def _events(now: int) -> list[dict[str, Any]]:
    # spread over the last 20 hours, all older than the settle time
    rng = random.Random(20)
    events = []
    for n in range(TOTAL):
        created = now - 900 - rng.randrange(20 * 3600)
        events.append({
            "id": f"evt_{n:05d}", "object": "event", "type": "charge.succeeded", "created": created,
            "livemode": False, "api_version": "2024-06-20",
            "data": {"object": {"id": f"ch_{n:05d}", "object": "charge", "amount": 1000 + n, "currency": "usd",
                                "status": "succeeded", "created": created}},
        })  # fmt: skip
    return events


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe(API_KEY) as fake:
        assert isinstance(fake, FakeStripe)
        for event in _events(int(time.time())):
            fake.add("events", event)
        yield fake


def _store_all_but(fake: FakeStripe, missing: set[str]) -> None:
    rows = [
        {"source": "stripe", "external_id": e["id"], "type": e["type"], "payload": e, "status": "processed",
         "occurred_at": dt.datetime.fromtimestamp(e["created"], dt.UTC)}
        for e in fake.objects["events"].values() if e["id"] not in missing
    ]  # fmt: skip
    empty_tables()
    with get_engine().begin() as connection:
        for start in range(0, len(rows), 2000):
            connection.execute(insert(Event), rows[start : start + 2000])


def _stripe_ids() -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(Event.external_id).where(Event.source == "stripe")))


def _reset_shared_limits(redis_url: str) -> None:
    # rate buckets and breakers are shared through Redis: start from closed and full
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("switchboard:*:stripe*"):
        client.delete(key)


def _wait_job(job_id: str, status: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = get_job(job_id) or {}
        if job.get("status") == status:
            return job
        assert job.get("status") != "failed", job
        time.sleep(0.1)
    raise AssertionError(f"backfill {job_id} not {status} after {timeout_s:.0f} s: {job}")


@pytest.fixture()
def stripe_settings(
    fake_stripe: FakeStripe, redis_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    _reset_shared_limits(redis_url)
    fake_stripe.reset()
    monkeypatch.setenv("SWITCHBOARD_STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("SWITCHBOARD_STRIPE_API_BASE", fake_stripe.url)
    monkeypatch.setenv("SWITCHBOARD_STRIPE_RATE_PER_S", "1000")
    monkeypatch.setenv("SWITCHBOARD_BACKFILL_PAGES_PER_TASK", "25")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()
    _reset_shared_limits(redis_url)  # leave no bucket state behind for the next test


def test_gap_detection_finds_exactly_the_missing_events_and_the_backfill_stores_them_once(
    fake_stripe: FakeStripe, stripe_settings: None, celery_worker: object
) -> None:
    all_ids = sorted(fake_stripe.objects["events"])
    missing = sorted(random.Random(737).sample(all_ids, MISSING))
    _store_all_but(fake_stripe, set(missing))
    assert len(_stripe_ids()) == TOTAL - MISSING

    report = detect_gaps.delay(["stripe"]).get(timeout=120)
    assert report["stripe"]["missing"] == MISSING
    job_id = report["stripe"]["job_id"]
    found = get_job(job_id)
    assert found is not None and found["trigger"] == "gap_detection" and found["expected"] == MISSING
    with session_scope() as session:
        job_row = session.get(BackfillJob, job_id)
        assert job_row is not None and job_row.missing_ids == missing  # exactly those 737
    # the scan asked Stripe for a created-time window, page by page

    job = _wait_job(job_id, "done", timeout_s=120)
    scans = fake_stripe.seen("/v1/events", "GET")
    assert scans and all("created[gte]" in r.query and "created[lt]" in r.query for r in scans)
    assert sum(1 for r in scans if "starting_after" not in r.query) == 2  # the scan's first page, the backfill's
    window = [e for e in fake_stripe.objects["events"].values()
              if dt.datetime.fromisoformat(job["window_start"]).timestamp() <= e["created"]
              < dt.datetime.fromisoformat(job["window_end"]).timestamp()]  # fmt: skip
    assert (job["stored"], job["fetched"], job["duplicates"]) == (MISSING, len(window), len(window) - MISSING)
    assert job["progress"] == 1.0 and job["pages"] == -(-len(window) // 100) and job["finished_at"]
    ids = _stripe_ids()
    assert len(ids) == TOTAL and sorted(ids) == all_ids  # every event once, none twice

    again = detect_gaps.delay(["stripe"]).get(timeout=120)
    assert again["stripe"] == {"missing": 0, "job_id": None}


def test_a_running_backfill_whose_message_was_lost_is_dispatched_again_by_gap_detection(
    fake_stripe: FakeStripe, stripe_settings: None, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job left `running` with no message anywhere (the broker lost it) and untouched for a
    whole redelivery period is re-dispatched by the next gap-detection pass and finishes; a live
    job touched within the period is left alone."""
    missing = set(random.Random(5).sample(sorted(fake_stripe.objects["events"]), 40))
    _store_all_but(fake_stripe, missing)
    now = dt.datetime.now(dt.UTC)
    lost = create_job("stripe", now - dt.timedelta(days=1), now, trigger="api")
    live = create_job("hubspot", now - dt.timedelta(days=1), now, trigger="api")
    assert start_job(lost) is not None and start_job(live) is not None  # running, no message queued
    settings = get_settings()
    quiet = stall_period(settings)
    with session_scope() as session:
        session.execute(update(BackfillJob).where(BackfillJob.id == lost)
                        .values(updated_at=now - quiet - dt.timedelta(seconds=1)))  # fmt: skip

    report = detect_gaps.delay(["calls"]).get(timeout=120)  # calls is not configured: only the sweep runs
    assert report["resumed"] == {"jobs": [lost]}
    job = _wait_job(lost, "done", timeout_s=120)
    assert (job["fetched"], job["stored"], job["pages"]) == (TOTAL, len(missing), 100)
    assert (get_job(live) or {})["status"] == "running"  # touched just now: not stalled
    assert "resumed" not in detect_gaps.delay(["calls"]).get(timeout=120)  # nothing stalled any more


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "switchboard", "worker", "--queues", "low", "--concurrency", "1"],
            env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def test_a_worker_killed_mid_backfill_resumes_from_its_cursor_without_duplicates(
    fake_stripe: FakeStripe, stripe_settings: None, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    all_ids = sorted(fake_stripe.objects["events"])
    missing = set(random.Random(11).sample(all_ids, MISSING))
    _store_all_but(fake_stripe, missing)
    prefix = f"b{uuid.uuid4().hex[:6]}."
    env = worker_env(
        database_url,
        redis_url,
        tmp_path,
        prefix=prefix,
        SWITCHBOARD_STRIPE_API_KEY=API_KEY,
        SWITCHBOARD_STRIPE_API_BASE=fake_stripe.url,
        # 10 pages a second: the 100 pages take about 10 s, so the kill lands mid-backfill;
        # a short visibility timeout brings the killed worker's message back within seconds.
        SWITCHBOARD_STRIPE_RATE_PER_S="10",
        SWITCHBOARD_BACKFILL_PAGES_PER_TASK="5",
        SWITCHBOARD_VISIBILITY_TIMEOUT_S="6",
        SWITCHBOARD_TASK_TIME_LIMIT_S="5",
        SWITCHBOARD_RETRY_BACKOFF_CAP_S="5",
        SWITCHBOARD_LOG_LEVEL="WARNING",
    )
    now = dt.datetime.now(dt.UTC)
    job_id = create_job("stripe", now - dt.timedelta(days=1), now, trigger="api")
    first = _worker(env, tmp_path / "worker-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        # the job's first task goes to this test's private low queue
        from switchboard.celery_app import app

        app.send_task("switchboard.tasks.backfill.run_backfill", args=[job_id], queue=f"{prefix}low")
        deadline = time.monotonic() + 60
        # mid-task (5 pages a task) the killed task's message is unacknowledged and comes back;
        # a kill between Redis BRPOP and the unacked record loses it, and gap detection's sweep
        # (sent below while waiting) dispatches the stalled job again.
        while (get_job(job_id) or {}).get("pages", 0) < 17:
            assert time.monotonic() < deadline, (tmp_path / "worker-1.log").read_text()
            assert first.poll() is None, (tmp_path / "worker-1.log").read_text()
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        at_kill = get_job(job_id)
        assert at_kill is not None and at_kill["status"] == "running" and 17 <= at_kill["pages"] < 100
        requests_before = len(fake_stripe.seen("/v1/events", "GET"))

        second = _worker(env, tmp_path / "worker-2.log")
        deadline = time.monotonic() + 90
        while (job := get_job(job_id) or {}).get("status") != "done":
            assert job.get("status") != "failed", job
            log = (tmp_path / "worker-2.log").read_text()[-4000:]
            assert time.monotonic() < deadline, f"{job}\nworker-2 log:\n{log}"
            # what beat would do: gap detection (calls is not configured here: only its sweep runs)
            app.send_task("switchboard.tasks.backfill.detect_gaps", args=[["calls"]], queue=f"{prefix}low")
            time.sleep(2)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)

    after = fake_stripe.seen("/v1/events", "GET")[requests_before:]
    assert after, "the second worker made no request"
    # resumed from the saved cursor: its first page starts after the cursor saved before the kill
    assert after[0].query.get("starting_after") == [at_kill["cursor"]]
    assert all("starting_after" in r.query for r in after)  # never restarted from the top
    assert len(after) <= 100 - at_kill["pages"] + 1
    # every page committed exactly once: the counts add up, nothing is stored twice
    assert (job["fetched"], job["stored"], job["duplicates"], job["pages"]) == (TOTAL, MISSING, TOTAL - MISSING, 100)
    ids = _stripe_ids()
    assert len(ids) == TOTAL and sorted(ids) == all_ids
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == TOTAL


BACKFILL_KEY = "sbk_" + uuid.uuid4().hex


@pytest.fixture()
def api(stripe_settings: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from switchboard.api.app import create_app

    monkeypatch.setenv("SWITCHBOARD_INGEST_KEYS", BACKFILL_KEY)
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://localhost") as client:
        yield client
    get_settings.cache_clear()


def test_backfill_api_starts_a_job_and_reports_its_progress(
    fake_stripe: FakeStripe, api: Any, celery_worker: object
) -> None:
    _store_all_but(fake_stripe, set())
    auth = {"Authorization": f"Bearer {BACKFILL_KEY}"}
    now = dt.datetime.now(dt.UTC)
    since = (now - dt.timedelta(hours=2)).isoformat()
    assert api.post("/api/backfill", json={"source": "stripe", "since": since}).status_code == 401
    bad = [
        api.post("/api/backfill", json={"source": "salesforce", "since": since}, headers=auth),
        api.post("/api/backfill", json={"source": "stripe", "since": "last tuesday"}, headers=auth),
        api.post("/api/backfill", json={"source": "stripe", "since": since, "until": since}, headers=auth),
        api.post("/api/backfill", json={"source": "stripe", "since": (now + dt.timedelta(days=1)).isoformat()},
                 headers=auth),
        api.post("/api/backfill", json={"source": "hubspot", "since": since}, headers=auth),
        api.post("/api/backfill", content=b"{", headers={**auth, "content-type": "application/json"}),
    ]  # fmt: skip
    assert [r.status_code for r in bad] == [422, 422, 422, 422, 409, 400]
    assert bad[0].json()["detail"][0]["loc"] == ["source"] and bad[1].json()["detail"][0]["loc"] == ["since"]
    assert "the window is empty" in bad[2].json()["detail"][0]["msg"]
    assert "not in the past" in bad[3].json()["detail"][0]["msg"]
    assert "hubspot is not configured" in bad[4].json()["detail"]
    assert _job_count() == 0  # bad input creates nothing

    started = api.post("/api/backfill", json={"source": "stripe", "since": since}, headers=auth)
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    assert started.json()["status"] in ("pending", "running") and started.json()["trigger"] == "api"
    _wait_job(job_id, "done", timeout_s=60)
    shown = api.get(f"/api/backfill/{job_id}", headers=auth)
    in_window = sum(1 for e in fake_stripe.objects["events"].values() if e["created"] >= int(now.timestamp()) - 7200)
    assert shown.status_code == 200
    assert {k: shown.json()[k] for k in ("status", "progress", "fetched", "stored", "duplicates")} == {
        "status": "done",
        "progress": 1.0,
        "fetched": in_window,
        "stored": 0,
        "duplicates": in_window,
    }
    assert api.get("/api/backfill/nope", headers=auth).status_code == 404
    assert api.get(f"/api/backfill/{job_id}").status_code == 401


def _job_count() -> int:
    from switchboard.db.models import BackfillJob

    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(BackfillJob)) or 0)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard", "backfill", *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_backfill_cli_shows_progress_and_rejects_bad_input(
    fake_stripe: FakeStripe, stripe_settings: None, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    missing = set(random.Random(5).sample(sorted(fake_stripe.objects["events"]), 300))
    _store_all_but(fake_stripe, missing)
    env = worker_env(database_url, redis_url, tmp_path, SWITCHBOARD_STRIPE_API_KEY=API_KEY,
                     SWITCHBOARD_STRIPE_API_BASE=fake_stripe.url, SWITCHBOARD_STRIPE_RATE_PER_S="1000",
                     SWITCHBOARD_LOG_FORMAT="text")  # fmt: skip
    unknown = _cli(env, "--source", "salesforce", "--since", "2026-11-01")
    assert unknown.returncode == 2 and "unknown source 'salesforce'" in unknown.stderr
    bad_date = _cli(env, "--source", "stripe", "--since", "yesterday-ish")
    assert bad_date.returncode == 2 and "--since 'yesterday-ish' is not an ISO date" in bad_date.stderr
    empty = _cli(env, "--source", "stripe", "--since", "2026-11-02", "--until", "2026-11-01")
    assert empty.returncode == 2 and "the window is empty" in empty.stderr
    assert _job_count() == 0  # bad input creates nothing

    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    done = _cli(env, "--source", "stripe", "--since", since, "--inline")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"done: {TOTAL} fetched, 300 stored, {TOTAL - 300} already stored" in done.stdout
    assert "100%" in done.stderr  # the progress bar reached the end
    assert len(_stripe_ids()) == TOTAL


def test_a_cli_backfill_on_a_worker_without_the_key_fails_with_the_reason_and_no_traceback(
    fake_stripe: FakeStripe, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"k{uuid.uuid4().hex[:6]}."
    cli_env = worker_env(database_url, redis_url, tmp_path, prefix=prefix, SWITCHBOARD_STRIPE_API_KEY=API_KEY,
                         SWITCHBOARD_STRIPE_API_BASE=fake_stripe.url)  # fmt: skip
    worker_without_key = {k: v for k, v in cli_env.items() if k != "SWITCHBOARD_STRIPE_API_KEY"}
    log = tmp_path / "worker.log"
    worker = _worker(worker_without_key, log)
    try:
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
        done = _cli(cli_env, "--source", "stripe", "--since", since)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
    assert done.returncode == 1, done.stdout + done.stderr
    reason = "this worker cannot read stripe: SWITCHBOARD_STRIPE_API_KEY is not set in the workers' environment"
    assert reason in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    worker_log = log.read_text()
    assert "raised unexpected" not in worker_log and "Traceback" not in worker_log, worker_log[-3000:]
    assert reason in worker_log  # the worker's one line says why
