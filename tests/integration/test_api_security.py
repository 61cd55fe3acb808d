"""The API as a browser and an outside client see it: Host allowlist, no cross-site writes,
security headers, key scopes, strict ids, and a health check that tells strangers little and
broadcasts to the workers at most once per period (counted on Redis itself)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from switchboard.api import health
from switchboard.api.security import host_name
from tests.support.api import api_client
from tests.support.runs import empty_tables

OPERATOR_KEY = "sbk_" + uuid.uuid4().hex
INGEST_KEY = "sbi_" + uuid.uuid4().hex
AS_OPERATOR = {"X-API-Key": OPERATOR_KEY}
AS_INGEST = {"Authorization": f"Bearer {INGEST_KEY}"}


def _event() -> dict[str, str]:
    return {"source": "stripe", "external_id": f"evt_{uuid.uuid4().hex}", "type": "charge.succeeded"}


@pytest.fixture()
def client(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    empty_tables(database_url)
    with api_client(monkeypatch, SWITCHBOARD_OPERATOR_KEYS=OPERATOR_KEY, SWITCHBOARD_INGEST_KEYS=INGEST_KEY) as c:
        yield c


def test_host_names_are_parsed_as_browsers_send_them() -> None:
    assert host_name("127.0.0.1:8000") == "127.0.0.1"
    assert host_name("[::1]:8000") == "[::1]"
    assert host_name("LocalHost") == "localhost"
    assert host_name("[::1") == "" and host_name("") == ""


def test_unknown_hosts_are_refused_for_dns_rebinding(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in ("/dashboard", "/api/runs", "/api/health"):
        refused = client.get(path, headers={**AS_OPERATOR, "Host": "attacker.example"})
        assert refused.status_code == 400, path
        assert "SWITCHBOARD_ALLOWED_HOSTS" in refused.json()["detail"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/api/runs", headers={**AS_OPERATOR, "Host": host}).status_code == 200, host
    with api_client(
        monkeypatch, SWITCHBOARD_OPERATOR_KEYS=OPERATOR_KEY, SWITCHBOARD_ALLOWED_HOSTS="sb.example.com"
    ) as c:
        assert c.get("/api/runs", headers={**AS_OPERATOR, "Host": "sb.example.com"}).status_code == 200


def test_cross_site_writes_are_refused_before_any_route(client: TestClient) -> None:
    attacks = [
        {"Origin": "http://localhost:18603"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
    ]
    for path in ("/api/approvals/1/approve", "/api/approvals/1/reject", "/api/runs/r1/replay", "/api/backfill"):
        for headers in attacks:
            # even with the right key: a browser page on another origin never gets to act
            refused = client.post(path, headers={**AS_OPERATOR, **AS_INGEST, **headers})
            assert refused.status_code == 403, (path, headers)
            assert "request refused" in refused.json()["detail"]
    # the dashboard's own requests (same origin) and servers (no browser headers) go on to the route
    same_origin = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/api/approvals/1/approve", headers={**AS_OPERATOR, **same_origin}).status_code == 404
    assert client.post("/api/approvals/1/approve", headers=AS_OPERATOR).status_code == 404
    assert client.post("/api/events", json=_event(), headers=AS_INGEST).status_code == 202


def test_every_response_carries_the_security_headers_and_docs_load_no_cdn(client: TestClient) -> None:
    for response in (client.get("/dashboard"), client.get("/api/runs"), client.get("/api/health")):
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_a_key_of_one_scope_gets_403_on_the_other(client: TestClient) -> None:
    for method, path in (("post", "/api/approvals/1/approve"), ("post", "/api/runs/r1/replay"), ("get", "/api/runs")):
        refused = client.request(method, path, headers=AS_INGEST)
        assert refused.status_code == 403 and "ingest key" in refused.json()["detail"], path
    assert client.get("/metrics", headers=AS_INGEST).status_code == 403
    assert client.post("/api/approvals/1/approve", headers=AS_OPERATOR).status_code == 404  # no such approval
    assert client.post("/api/runs/r1/replay", headers=AS_OPERATOR).status_code == 404
    assert client.get("/metrics", headers=AS_OPERATOR).status_code == 200

    refused = client.post("/api/events", json=_event(), headers=AS_OPERATOR)
    assert refused.status_code == 403 and "operator key" in refused.json()["detail"]
    since = "2026-01-01T00:00:00"
    assert (
        client.post("/api/backfill", json={"source": "stripe", "since": since}, headers=AS_OPERATOR).status_code == 403
    )
    assert client.post("/api/events", json=_event(), headers=AS_INGEST).status_code == 202
    missing = client.post("/api/events", json=_event())
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"


def test_integer_ids_are_integers(client: TestClient) -> None:
    for approval_id in ("1.0", "1_000", "+1", "%C2%B2", "0"):
        assert client.post(f"/api/approvals/{approval_id}/approve", headers=AS_OPERATOR).status_code == 422


def test_health_says_little_to_strangers_and_broadcasts_once_per_period(
    client: TestClient, redis_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "WORKER_CHECK", health._WorkerCheck())  # a fresh cache for this count
    listener = redis.Redis.from_url(redis_url).pubsub()
    listener.psubscribe("*pidbox*")  # Celery's broadcast (control.ping) is a fanout PUBLISH on Redis
    while listener.get_message(timeout=0.2) is not None:  # the subscribe confirmation
        pass

    started = time.monotonic()
    answers = []
    for index in range(100):  # 100 requests spread over one second
        answers.append(client.get("/api/health"))
        time.sleep(max(0.0, started + (index + 1) * 0.01 - time.monotonic()))
    elapsed = time.monotonic() - started
    broadcasts = 0
    while (message := listener.get_message(timeout=0.5)) is not None:
        broadcasts += message["type"] == "pmessage"
    listener.close()
    print(f"100 health requests in {elapsed:.2f} s: {broadcasts} Celery broadcast(s)")
    assert 1 <= broadcasts <= math.ceil(elapsed)
    assert {answer.status_code for answer in answers} == {200}
    assert answers[-1].json() == {"status": "ok"}  # no node names for a stranger

    detailed = client.get("/api/health", headers=AS_OPERATOR).json()
    assert detailed["database"] == "ok" and detailed["broker"] == "ok"
    assert isinstance(detailed["workers"], list) and detailed["workers"]  # the in-process worker answered
