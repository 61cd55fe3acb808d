"""The ingestion API on Postgres: API keys, idempotent single and batch events (set-based),
4xx with reasons that store nothing, and signed Stripe and HubSpot webhooks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from switchboard.api.webhooks import hubspot_signature
from switchboard.db.models import Event
from switchboard.db.session import get_engine, session_scope
from tests.support.api import api_client
from tests.support.runs import empty_tables

API_KEY = "sbk_" + uuid.uuid4().hex
WHSEC = "whsec_" + uuid.uuid4().hex
HUBSPOT_SECRET = uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture()
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with api_client(
        monkeypatch, SWITCHBOARD_INGEST_KEYS=f"other-key,{API_KEY}", SWITCHBOARD_STRIPE_WEBHOOK_SECRET=WHSEC,
        SWITCHBOARD_HUBSPOT_CLIENT_SECRET=HUBSPOT_SECRET, SWITCHBOARD_INGEST_MAX_BATCH_EVENTS="50",
        SWITCHBOARD_INGEST_MAX_BODY_BYTES="20000",
    ) as test_client:  # fmt: skip
        yield test_client


def _stored() -> list[tuple[str, str, str]]:
    with session_scope() as session:
        return [(e.source, e.external_id, e.type) for e in session.scalars(select(Event).order_by(Event.id))]


def _event(n: int, **extra: Any) -> dict[str, Any]:
    return {"source": "stripe", "external_id": f"evt_{n}", "type": "charge.failed", "payload": {"n": n}, **extra}


def test_api_key_is_required_and_checked(client: TestClient) -> None:
    missing = client.post("/api/events", json=_event(1))
    assert missing.status_code == 401 and "an ingest key is required" in missing.json()["detail"]
    wrong = client.post("/api/events", json=_event(1), headers={"Authorization": "Bearer nope"})
    assert (wrong.status_code, wrong.json()["detail"]) == (401, "invalid API key")
    assert client.post("/api/events", json=_event(1), headers={"X-API-Key": API_KEY}).status_code == 202
    assert _stored() == [("stripe", "evt_1", "charge.failed")]
    assert client.get("/api/health").status_code in (200, 503)  # health needs no key


def test_single_event_is_idempotent(client: TestClient) -> None:
    first = client.post("/api/events", json=_event(7), headers=AUTH)
    again = client.post("/api/events", json=_event(7, type="charge.refunded"), headers=AUTH)
    assert first.status_code == 202 and first.json()["duplicate"] is False and first.json()["id"] == 1
    assert again.status_code == 200 and again.json() == {"id": None, "source": "stripe", "external_id": "evt_7",
                                                         "duplicate": True}  # fmt: skip
    assert _stored() == [("stripe", "evt_7", "charge.failed")]  # the replay changed nothing


def test_batch_is_one_set_based_write_with_duplicates_flagged(client: TestClient, database_url: str) -> None:
    client.post("/api/events", json=_event(1), headers=AUTH)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            statements.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", count)
    try:
        batch = [_event(n) for n in range(0, 40)] + [_event(5)]  # evt_1 stored before, evt_5 twice in the batch
        response = client.post("/api/events/batch", json={"events": batch}, headers=AUTH)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (39, 2)
    assert [e["duplicate"] for e in body["events"]][:2] == [False, True] and body["events"][-1]["duplicate"]
    assert len(statements) == 1  # one round trip for the whole batch
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 40


def test_bad_input_gets_a_4xx_with_the_reason_and_stores_nothing(client: TestClient) -> None:
    not_json = client.post("/api/events", content=b"{nope", headers={**AUTH, "content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["detail"].startswith("body is not valid JSON")
    invalid = client.post("/api/events", json={**_event(1), "source": "salesforce"}, headers=AUTH)
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["source"]
    one_bad = client.post("/api/events/batch", json={"events": [_event(1), {"source": "stripe"}]}, headers=AUTH)
    assert one_bad.status_code == 422 and one_bad.json()["detail"][0]["loc"][:2] == ["events", 1]
    too_many = client.post("/api/events/batch", json={"events": [_event(n) for n in range(51)]}, headers=AUTH)
    assert too_many.status_code == 413 and "exceed the batch limit of 50" in too_many.json()["detail"]
    huge = client.post("/api/events", json=_event(1, payload={"blob": "x" * 30000}), headers=AUTH)
    assert huge.status_code == 413 and "exceeds the limit of 20000 bytes" in huge.json()["detail"]
    empty = client.post("/api/events/batch", json={"events": []}, headers=AUTH)
    assert empty.status_code == 422
    stamp = client.post("/api/events", json=_event(1, occurred_at=1700000000), headers=AUTH)  # not a date-time
    assert stamp.status_code == 422 and stamp.json()["detail"][0]["loc"] == ["occurred_at"]
    nul = client.post("/api/events", json=_event(1, payload={"note": "a\u0000b"}), headers=AUTH)
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"][0]["msg"]
    escaped = client.post("/api/events", json=_event(2, payload={"note": "a\\u0000b"}), headers=AUTH)
    assert escaped.status_code == 202  # a backslash and the text u0000 are fine
    empty_tables()
    assert _stored() == []


def _stripe_payload(event_id: str) -> str:
    return json.dumps({"id": event_id, "object": "event", "type": "charge.dispute.created", "created": int(time.time()),
                       "data": {"object": {"id": "dp_1", "object": "dispute", "amount": 5000}}})  # fmt: skip


def test_stripe_webhook_signed_by_the_stripe_library(client: TestClient) -> None:
    payload = _stripe_payload("evt_wh_1")
    header = stripe.WebhookSignature.generate_signature_header(payload, WHSEC)
    ok = client.post("/api/webhooks/stripe", content=payload, headers={"Stripe-Signature": header})
    assert ok.status_code == 202 and ok.json()["duplicate"] is False
    replay = client.post("/api/webhooks/stripe", content=payload, headers={"Stripe-Signature": header})
    assert replay.status_code == 200 and replay.json()["duplicate"] is True

    sign = stripe.WebhookSignature.generate_signature_header
    other = _stripe_payload("evt_wh_2")
    altered = other.replace("5000", "9000")
    rejected = [
        client.post("/api/webhooks/stripe", content=altered, headers={"Stripe-Signature": sign(other, WHSEC)}),
        client.post("/api/webhooks/stripe", content=other, headers={"Stripe-Signature": sign(other, "whsec_wrong")}),
        client.post("/api/webhooks/stripe", content=other,
                    headers={"Stripe-Signature": sign(other, WHSEC, int(time.time()) - 301)}),
        client.post("/api/webhooks/stripe", content=other),
    ]  # fmt: skip
    assert [r.status_code for r in rejected] == [400, 400, 400, 400]
    assert "invalid Stripe signature" in rejected[2].json()["detail"] and "tolerance" in rejected[2].json()["detail"]
    assert _stored() == [("stripe", "evt_wh_1", "charge.dispute.created")]


def test_hubspot_v3_signature(client: TestClient) -> None:
    url = "http://localhost/api/webhooks/hubspot"
    body = json.dumps([{"eventId": 101, "subscriptionType": "deal.propertyChange", "objectId": 5,
                        "occurredAt": int(time.time() * 1000), "propertyName": "hubspot_owner_id"},
                       {"eventId": 102, "subscriptionType": "contact.creation", "objectId": 6}]).encode()  # fmt: skip

    def send(payload: bytes, secret: str = HUBSPOT_SECRET, age_ms: int = 0) -> Any:
        stamp = str(int(time.time() * 1000) - age_ms)
        signature = hubspot_signature(secret, "POST", url, payload, stamp)
        headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp}
        return client.post("/api/webhooks/hubspot", content=payload, headers=headers)

    ok = send(body)
    assert ok.status_code == 202 and ok.json() == {"accepted": 2, "duplicates": 0}
    assert send(body).json() == {"accepted": 0, "duplicates": 2}
    stamp = str(int(time.time() * 1000))
    altered = client.post("/api/webhooks/hubspot", content=body.replace(b"101", b"999"), headers={
        "X-HubSpot-Signature-v3": hubspot_signature(HUBSPOT_SECRET, "POST", url, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp})  # fmt: skip
    wrong_secret = send(body.replace(b"101", b"998"), secret="not-the-secret")
    stale = send(body.replace(b"101", b"997"), age_ms=301_000)
    assert [altered.status_code, wrong_secret.status_code, stale.status_code] == [400, 400, 400]
    assert stale.json()["detail"].startswith("stale HubSpot request")
    assert sorted(_stored()) == [("hubspot", "101", "deal.propertyChange"), ("hubspot", "102", "contact.creation")]


def test_signed_but_odd_webhook_bodies_get_a_4xx_with_the_reason_and_store_nothing(client: TestClient) -> None:
    """The bodies and headers that reached a 500 before (issue: hostile input at the edge)."""
    sign = stripe.WebhookSignature.generate_signature_header

    def stripe_post(body: str, header: str | None = None) -> Any:
        signature = (header or sign(body, WHSEC)).encode()  # bytes: a header may hold any octet
        return client.post("/api/webhooks/stripe", content=body, headers={"Stripe-Signature": signature})

    def event(**fields: Any) -> str:
        return json.dumps({"id": "evt_odd", "object": "event", "type": "charge.failed", "created": 1_700_000_000,
                           "data": {"object": {"id": "ch_1", "object": "charge"}}, **fields})  # fmt: skip

    odd = {
        "[]": "a JSON object is required", '"x"': "a JSON object is required", "null": "a JSON object is required",
        "1": "a JSON object is required", event(id="e" * 256): "external_id", event(type="t" * 129): "type",
        event(created=253402300800): "created is not a Unix time", event(created=10**13): "created is not a Unix time",
        event(created=-1): "created is not a Unix time", event(created="1700000000"): "created must be a Unix time",
        event(id=7): "id and type are required strings", "1e400": "out of range", '{"id": "\\ud800"}': "surrogate",
    }  # fmt: skip
    for body, reason in odd.items():
        answer = stripe_post(body)
        assert answer.status_code == 400 and reason in answer.json()["detail"], (body[:60], answer.text)
    assert stripe_post(event(), "t=²,v1=abc").status_code == 400
    url = "http://localhost/api/webhooks/hubspot"

    def hubspot_post(items: Any, stamp: str | None = None) -> Any:
        body = json.dumps(items).encode()
        stamp = stamp or str(int(time.time() * 1000))
        headers = {"X-HubSpot-Signature-v3": hubspot_signature(HUBSPOT_SECRET, "POST", url, body, stamp),
                   "X-HubSpot-Request-Timestamp": stamp.encode()}  # fmt: skip
        return client.post("/api/webhooks/hubspot", content=body, headers=headers)

    assert hubspot_post([{"eventId": 1}], stamp="²").status_code == 400  # isdigit() says yes, int() no
    cases = {
        "eventId": [{"eventId": "", "subscriptionType": "deal.creation"}],
        "external_id": [{"eventId": "e" * 300, "subscriptionType": "deal.creation"}],
        "type": [{"eventId": 2, "subscriptionType": "s" * 129}],
        "subscriptionType is required": [{"eventId": 5}],
        "occurredAt is not": [{"eventId": 3, "subscriptionType": "deal.creation", "occurredAt": 10**20}],
        "occurredAt must be": [{"eventId": 4, "subscriptionType": "deal.creation", "occurredAt": "١٢٣"}],
        "objectId must be": [{"eventId": 6, "subscriptionType": "deal.creation", "objectId": -1}],
        "propertyValue must be": [{"eventId": 7, "subscriptionType": "deal.creation", "propertyValue": {}}],
    }  # fmt: skip
    for reason, items in cases.items():
        answer = hubspot_post(items)
        assert answer.status_code == 400 and reason in answer.json()["detail"], (items, answer.text)
    assert _stored() == []


def test_openapi_documents_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = ("/api/health", "/api/events", "/api/events/batch", "/api/webhooks/stripe", "/api/webhooks/hubspot")
    for path in paths:
        assert path in spec["paths"], path
    assert spec["paths"]["/api/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def _wait_processed(count: int, timeout_s: float = 30.0) -> list[Event]:
    deadline = time.monotonic() + timeout_s
    while True:
        with session_scope() as session:
            events = list(session.scalars(select(Event).where(Event.status != "received").order_by(Event.id)))
            session.expunge_all()
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_accepted_events_become_source_records_once(client: TestClient, celery_worker: object) -> None:
    from switchboard.db.models import SourceRecord

    now = int(time.time())
    stripe_events = [
        {"source": "stripe", "external_id": f"evt_dp{n}", "type": "charge.dispute.created",
         "payload": {"id": f"evt_dp{n}", "type": "charge.dispute.created",
                     "data": {"object": {"id": f"dp_{n}", "object": "dispute", "amount": 4000, "created": now - 60 * n,
                                         "status": "needs_response"}}}}
        for n in range(3)
    ]  # fmt: skip
    hubspot_events = [
        {"source": "hubspot", "external_id": "hs1", "type": "deal.creation", "payload": {"objectId": 77}},
        {"source": "hubspot", "external_id": "hs2", "type": "deal.propertyChange",
         "payload": {"objectId": 77, "propertyName": "dealstage", "propertyValue": "closedwon"}},
        {"source": "hubspot", "external_id": "hs3", "type": "workflow.enrolled", "payload": {"objectId": 5}},
        {"source": "hubspot", "external_id": "hs4", "type": "deal.propertyChange", "payload": {"propertyName": "x"}},
    ]  # fmt: skip
    other_stripe = [  # a type Switchboard does not store, and one that carries no object at all
        {"source": "stripe", "external_id": "evt_src", "type": "customer.source.created",
         "payload": {"id": "evt_src", "type": "customer.source.created",
                     "data": {"object": {"id": "card_1", "object": "card", "customer": "cus_1"}}}},
        {"source": "stripe", "external_id": "evt_bare", "type": "charge.failed",
         "payload": {"id": "evt_bare", "data": {}}},
    ]  # fmt: skip
    batch = stripe_events + hubspot_events + other_stripe
    response = client.post("/api/events/batch", json={"events": batch}, headers=AUTH)
    assert response.status_code == 202 and response.json()["accepted"] == 9
    events = _wait_processed(9)
    assert [(e.external_id, e.status) for e in events] == [
        ("evt_dp0", "processed"), ("evt_dp1", "processed"), ("evt_dp2", "processed"),
        ("hs1", "processed"), ("hs2", "processed"), ("hs3", "ignored"), ("hs4", "failed"),
        ("evt_src", "ignored"), ("evt_bare", "failed"),
    ]  # fmt: skip
    errors = {e.external_id: str(e.error) for e in events}
    assert "(workflow.enrolled) is not about a deal, contact, company or note" in errors["hs3"]
    assert "names no objectId" in errors["hs4"]
    assert "(customer.source.created) is about a card, which Switchboard does not store" in errors["evt_src"]
    assert "carries no object with an id and a type" in errors["evt_bare"]
    with session_scope() as session:
        records = {(r.source, r.object_type, r.object_id): r.data for r in session.scalars(select(SourceRecord))}
    assert sorted(records) == [("hubspot", "deal", "77"), ("stripe", "dispute", "dp_0"), ("stripe", "dispute", "dp_1"),
                               ("stripe", "dispute", "dp_2")]  # fmt: skip
    assert records[("hubspot", "deal", "77")]["properties"] == {"dealstage": "closedwon"}
    # the three disputes are critical events: the Watcher scanned Stripe at once and raised the cluster
    from switchboard.db.models import ProactiveInsight

    deadline = time.monotonic() + 30
    kinds: list[str] = []
    while time.monotonic() < deadline and "stripe_dispute_spike" not in kinds:
        with session_scope() as session:
            kinds = list(session.scalars(select(ProactiveInsight.kind)))
        time.sleep(0.2)
    assert kinds == ["stripe_dispute_spike"]
    # a replayed batch is all duplicates: nothing is stored or processed again
    again = client.post("/api/events/batch", json={"events": stripe_events}, headers=AUTH)
    assert again.json() == {**again.json(), "accepted": 0, "duplicates": 3}
