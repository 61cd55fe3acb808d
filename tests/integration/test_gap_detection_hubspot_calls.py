"""Gap detection and backfills for HubSpot (CRM search over last-modified time) and calls (the
call list) against their wire-format fakes, through the real worker: exactly the missing or
outdated objects are found, the backfill brings them in, and a second pass finds nothing."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import insert, select

from switchboard.db.backfill_jobs import get_job
from switchboard.db.models import BackfillJob, Event, SourceRecord
from switchboard.db.session import get_engine, session_scope
from switchboard.settings import get_settings
from switchboard.tasks.backfill import detect_gaps
from tests.fakes.gong import FakeGong
from tests.fakes.hubspot import FakeHubSpot
from tests.support.runs import empty_tables

TOKEN = "pat-na1-" + str(uuid.uuid4())
TIMEOUT_S = 60


def _reset(redis_url: str, database_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("switchboard:*"):
        if b"hubspot" in key or b"calls" in key:
            client.delete(key)
    empty_tables(database_url)


@pytest.fixture()
def services(
    database_url: str, redis_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeHubSpot, FakeGong]]:
    _reset(redis_url, database_url)
    with FakeHubSpot(token=TOKEN) as hubspot, FakeGong("gkey", "gsecret") as gong:
        assert isinstance(hubspot, FakeHubSpot) and isinstance(gong, FakeGong)
        monkeypatch.setenv("SWITCHBOARD_HUBSPOT_ACCESS_TOKEN", TOKEN)
        monkeypatch.setenv("SWITCHBOARD_HUBSPOT_API_BASE", hubspot.url)
        monkeypatch.setenv("SWITCHBOARD_HUBSPOT_RATE_PER_S", "1000")
        monkeypatch.setenv("SWITCHBOARD_CALLS_API_KEY", "gkey:gsecret")
        monkeypatch.setenv("SWITCHBOARD_CALLS_API_BASE", gong.url)
        monkeypatch.setenv("SWITCHBOARD_CALLS_RATE_PER_S", "1000")
        get_settings.cache_clear()
        yield hubspot, gong
        monkeypatch.undo()
        get_settings.cache_clear()
    _reset(redis_url, database_url)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _store(rows: list[dict[str, Any]]) -> None:
    if rows:
        with get_engine().begin() as connection:
            connection.execute(insert(SourceRecord), rows)


def _wait_job_done(job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = get_job(job_id) or {}
        assert job.get("status") != "failed", job
        if job.get("status") == "done":
            return job
        time.sleep(0.1)
    raise AssertionError(f"backfill {job_id} not done: {job}")


def _wait_events_processed() -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        with session_scope() as session:
            pending = session.scalars(select(Event.id).where(Event.status == "received")).all()
        if not pending:
            return
        time.sleep(0.1)
    raise AssertionError("backfilled events not processed")


def test_hubspot_gap_detection_finds_missing_and_outdated_objects(services: tuple[FakeHubSpot, FakeGong]) -> None:
    hubspot, _ = services
    now = dt.datetime.now(dt.UTC)
    modified_property = {"deals": "hs_lastmodifieddate", "contacts": "lastmodifieddate",
                         "companies": "hs_lastmodifieddate"}  # fmt: skip
    singular = {"deals": "deal", "contacts": "contact", "companies": "company"}
    stored: list[dict[str, Any]] = []
    expected_missing: list[str] = []
    for plural in ("deals", "contacts", "companies"):
        for n in range(12):
            modified = now - dt.timedelta(hours=1 + n)
            object_id = f"{plural[:2]}{n}"
            hubspot.add(plural, object_id, {modified_property[plural]: _iso(modified), "name": f"{plural} {n}"},
                        updated_at=_iso(modified))  # fmt: skip
            key = f"{singular[plural]}:{object_id}"
            if n % 4 == 0:
                expected_missing.append(key)  # never stored
                continue
            # n % 4 == 1: stored before HubSpot's last change, without it: outdated
            outdated = n % 4 == 1
            written = modified - dt.timedelta(minutes=5) if outdated else modified + dt.timedelta(minutes=1)
            stored.append({"source": "hubspot", "object_type": singular[plural], "object_id": object_id,
                           "data": {"id": object_id, "properties": {}}, "occurred_at": written,
                           "created_at": written, "updated_at": written})  # fmt: skip
            if outdated:
                expected_missing.append(key)
        # modified outside the window (older than the lookback, newer than the settle time): not a gap
        hubspot.add(plural, f"{plural[:2]}old", {modified_property[plural]: _iso(now - dt.timedelta(days=3))},
                    updated_at=_iso(now - dt.timedelta(days=3)))  # fmt: skip
        hubspot.add(plural, f"{plural[:2]}new", {modified_property[plural]: _iso(now - dt.timedelta(seconds=30))},
                    updated_at=_iso(now - dt.timedelta(seconds=30)))  # fmt: skip
    _store(stored)

    report = detect_gaps.delay(["hubspot"]).get(timeout=TIMEOUT_S)
    assert report["hubspot"]["missing"] == len(expected_missing) == 18
    job_id = report["hubspot"]["job_id"]
    with session_scope() as session:
        job_row = session.get(BackfillJob, job_id)
        assert job_row is not None and job_row.missing_ids == sorted(expected_missing)
    searches = hubspot.seen("/crm/v3/objects/deals/search", "POST")
    filters = searches[0].json()["filterGroups"][0]["filters"]
    assert [(f["propertyName"], f["operator"]) for f in filters] == [("hs_lastmodifieddate", "GTE"),
                                                                      ("hs_lastmodifieddate", "LT")]  # fmt: skip

    job = _wait_job_done(job_id)
    assert job["stored"] == len(expected_missing)  # only what was missing; the rest is current
    _wait_events_processed()
    with session_scope() as session:
        keys = {f"{r.object_type}:{r.object_id}" for r in session.scalars(select(SourceRecord))}
    assert set(expected_missing) <= keys
    assert not any(key.endswith(("old", "new")) for key in keys)  # outside the window: not fetched
    again = detect_gaps.delay(["hubspot"]).get(timeout=TIMEOUT_S)
    assert again["hubspot"] == {"missing": 0, "job_id": None}


def test_calls_gap_detection_finds_exactly_the_unstored_calls(services: tuple[FakeHubSpot, FakeGong]) -> None:
    _, gong = services
    now = dt.datetime.now(dt.UTC)
    stored: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    missing: list[str] = []
    for n in range(230):  # three pages of the call list
        started = now - dt.timedelta(minutes=10 + 5 * n)
        call = {"id": f"gc{n:03d}", "started": started.isoformat(), "duration": 60 + n, "primaryUserId": "rep-1"}
        gong.calls.append(call)
        if n % 23 == 0:
            missing.append(f"call:{call['id']}")
        else:
            stored.append({"source": "calls", "object_type": "call", "object_id": call["id"], "data": call,
                           "occurred_at": started})  # fmt: skip
            listed.append({"source": "calls", "external_id": f"call:{call['id']}", "type": "call.listed",
                           "payload": call, "occurred_at": started, "status": "processed"})  # fmt: skip
    gong.calls.append({"id": "gc-new", "started": (now - dt.timedelta(seconds=20)).isoformat(), "duration": 5})
    gong.calls.sort(key=lambda c: c["started"])
    _store(stored)
    with get_engine().begin() as connection:  # the stored calls came in as listed events, as a backfill stores them
        connection.execute(insert(Event), listed)

    report = detect_gaps.delay(["calls"]).get(timeout=TIMEOUT_S)
    assert report["calls"]["missing"] == len(missing) == 10
    job_id = report["calls"]["job_id"]
    with session_scope() as session:
        job_row = session.get(BackfillJob, job_id)
        assert job_row is not None and job_row.missing_ids == sorted(missing)
    listings = gong.seen("/v2/calls", "GET")
    assert listings and all("fromDateTime" in r.query and "toDateTime" in r.query for r in listings)

    job = _wait_job_done(job_id)
    assert job["stored"] == len(missing)  # the others are already stored: never stored twice
    _wait_events_processed()
    with session_scope() as session:
        calls = set(session.scalars(select(SourceRecord.object_id).where(SourceRecord.source == "calls")))
    assert calls == {c["id"] for c in gong.calls} - {"gc-new"}
    again = detect_gaps.delay(["calls"]).get(timeout=TIMEOUT_S)
    assert again["calls"] == {"missing": 0, "job_id": None}
