"""Enrichment and RAG prep through the real worker on Postgres + Redis: events in → cross-system
links (Stripe customer ↔ HubSpot contact by email, ↔ company by domain, call ↔ deal), idempotent
and re-linked on change; calls, notes and finished runs' analyses → knowledge-base chunks,
embedded once per content hash, replaced when the content changes."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery.result import AsyncResult
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text

from switchboard.agents.memory import chunk_text
from switchboard.agents.rag_prep import call_document
from switchboard.agents.tools import ANALYST_TOOLS
from switchboard.celery_app import app
from switchboard.db.models import AgentConversation, EntityLink, Event, KnowledgeChunk
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import get_engine, session_scope
from switchboard.enrichment import linked_entities
from switchboard.tasks.ingest import process_events
from switchboard.tasks.knowledge import sweep
from switchboard.tasks.runs import dispatch_insight
from switchboard.tasks.watch import scan
from tests.fakes.gong import FakeGong
from tests.support.api import api_client
from tests.support.runs import wait_for_runs

API_KEY = "sbk_" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TIMEOUT_S = 30


@pytest.fixture()
def client(database_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with api_client(monkeypatch, SWITCHBOARD_INGEST_KEYS=API_KEY) as test_client:
        yield test_client


def _post(client: TestClient, events: list[dict[str, Any]]) -> None:
    response = client.post("/api/events/batch", json={"events": events}, headers=AUTH)
    assert response.status_code == 202 and response.json()["accepted"] == len(events), response.text


def _wait_processed(external_ids: set[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        with session_scope() as session:
            rows = session.execute(select(Event.external_id, Event.status, Event.error)
                                   .where(Event.external_id.in_(external_ids))).all()  # fmt: skip
        if len(rows) == len(external_ids) and all(row.status != "received" for row in rows):
            assert all(row.status == "processed" for row in rows), rows
            return
        time.sleep(0.05)
    raise AssertionError(f"events not processed after {TIMEOUT_S} s: {external_ids}")


def _links(link_type: str | None = None) -> set[tuple[str, str, str, str, str]]:
    """The cross-system links (or, with ``link_type="identity"``, what each object is known by)."""
    query = select(EntityLink).where(
        EntityLink.link_type == link_type if link_type else EntityLink.link_type != "identity"
    )
    with session_scope() as session:
        return {(r.from_kind, r.from_id, r.to_kind, r.to_id, r.link_type) for r in session.scalars(query)}


def _link_rows() -> list[tuple[int, str, float, dt.datetime]]:
    with session_scope() as session:
        rows = session.scalars(select(EntityLink).order_by(EntityLink.id)).all()
        return [(r.id, f"{r.from_id}>{r.to_id}:{r.link_type}", r.confidence, r.updated_at) for r in rows]


def _hubspot(kind: str, object_id: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A HubSpot object as a backfill snapshot event carries it (what `GET /crm/v3/objects` returns)."""
    obj = {"id": object_id, "properties": properties, "updatedAt": "2026-11-20T00:00:00.000Z", **extra}
    return {"source": "hubspot", "external_id": f"hubspot:{kind}:{object_id}:{uuid.uuid4().hex[:6]}",
            "type": f"{kind}.snapshot", "payload": {"objectId": object_id, "object": obj}}  # fmt: skip


def _customer(customer_id: str, email: str) -> dict[str, Any]:
    obj = {"id": customer_id, "object": "customer", "email": email, "created": int(time.time()) - 3600}
    return {"source": "stripe", "external_id": f"evt_{customer_id}_{uuid.uuid4().hex[:6]}", "type": "customer.created",
            "payload": {"id": f"evt_{customer_id}", "type": "customer.created", "data": {"object": obj}}}  # fmt: skip


FIRST_TRANSCRIPT = [
    {"speakerId": "s1", "topic": "Pricing", "sentences": [
        {"start": 0, "end": 4000, "text": "Thanks for joining."},
        {"start": 4000, "end": 9000, "text": "Shall we go over the renewal?"}]},
    {"speakerId": "s2", "topic": "Pricing", "sentences": [
        {"start": 9000, "end": 15000, "text": "Our finance team flagged a duplicate invoice for the quartz plan."}]},
]  # fmt: skip


@pytest.fixture()
def gong() -> Iterator[FakeGong]:
    """A Gong account holding one external call with Dana, its CRM context naming deal d-ctx."""
    with FakeGong() as fake:
        assert isinstance(fake, FakeGong)
        _add_call(fake)
        yield fake


def _add_call(gong: FakeGong) -> None:
    call = {"id": "call-1", "title": "Acme renewal", "started": "2026-11-24T15:00:00Z", "duration": 900,
            "primaryUserId": "rep-1", "direction": "Conference"}  # fmt: skip
    gong.calls.append(call)
    gong.details["call-1"] = {
        "parties": [{"id": "p2", "emailAddress": "Dana@Acme.example", "name": "Dana Ray", "affiliation": "External",
                     "speakerId": "s2"}],
        "context": [{"system": "HubSpot", "objects": [{"objectType": "Deal", "objectId": "d-ctx"}]}],
        "content": {"brief": "Renewal call; the customer asked about a duplicate invoice.",
                    "keyPoints": [{"text": "Duplicate invoice on the quartz plan"}]},
    }  # fmt: skip
    gong.transcripts["call-1"] = FIRST_TRANSCRIPT


def _call_event(gong: FakeGong, call_id: str = "call-1") -> dict[str, Any]:
    """The call's extensive data (and transcript) exactly as the fake Gong API serves them."""
    [call] = [c for c in gong.calls if c["id"] == call_id]
    payload = {**gong.extensive(call), "transcript": gong.transcripts.get(call_id, [])}
    return {"source": "calls", "external_id": f"call:{call_id}:{uuid.uuid4().hex[:6]}", "type": "call.extensive",
            "payload": payload}  # fmt: skip


def test_events_link_customers_and_calls_across_systems_idempotently(client: TestClient, gong: FakeGong) -> None:
    events = [
        _hubspot("contact", "c1", {"email": "dana@acme.example", "firstname": "Dana", "hubspot_owner_id": "o1"}),
        _hubspot("company", "co1", {"name": "Acme", "domain": "https://www.Acme.example/"}),
        _hubspot("company", "co2", {"name": "Gmail", "domain": "gmail.com"}),
        _hubspot("deal", "d1", {"dealname": "Acme expansion", "dealstage": "contractsent"},
                 associations={"contacts": {"results": [{"id": "c1", "type": "deal_to_contact"}]}}),
        _customer("cus_1", "DANA@acme.example"),
        _customer("cus_2", "dana@other.example"),
        _customer("cus_3", "someone@gmail.com"),  # a free-mail domain links to no company
        _call_event(gong),
    ]  # fmt: skip
    _post(client, events)
    _wait_processed({e["external_id"] for e in events})
    expected = {
        ("stripe:customer", "cus_1", "hubspot:contact", "c1", "email"),
        ("stripe:customer", "cus_1", "hubspot:company", "co1", "domain"),
        ("stripe:customer", "cus_1", "hubspot:deal", "d1", "email"),
        ("calls:call", "call-1", "hubspot:deal", "d-ctx", "crm_context"),
        ("calls:call", "call-1", "hubspot:contact", "c1", "email"),
        ("calls:call", "call-1", "hubspot:deal", "d1", "email"),
    }
    assert _links() == expected
    assert {(link[1], link[2], link[3]) for link in _links("identity")} == {
        ("cus_1", "email", "dana@acme.example"), ("cus_1", "domain", "acme.example"),
        ("cus_2", "email", "dana@other.example"), ("cus_2", "domain", "other.example"),
        ("cus_3", "email", "someone@gmail.com"),  # a free-mail domain identifies no company
        ("call-1", "email", "dana@acme.example"),  # the external participant only
    }  # fmt: skip

    # what the Analyst sees about the customer (context and the linked_entities tool)
    with session_scope() as session:
        seen = linked_entities(session, "stripe:customer", "cus_1")
    assert [(item["kind"], item["id"], item["link_type"], item["confidence"]) for item in seen] == [
        ("hubspot:contact", "c1", "email", 0.95), ("hubspot:company", "co1", "domain", 0.8),
        ("hubspot:deal", "d1", "email", 0.75),
    ]  # fmt: skip
    assert seen[0]["summary"] == {"email": "dana@acme.example", "firstname": "Dana", "hubspot_owner_id": "o1"}
    assert seen[2]["evidence"] == {"email": "dana@acme.example", "via_contact": "c1"}
    tool = ANALYST_TOOLS["linked_entities"].run({"source": "hubspot", "object_type": "deal", "object_id": "d1"})
    assert {(item["kind"], item["id"], item["direction"]) for item in tool["links"]} == {
        ("stripe:customer", "cus_1", "from"), ("calls:call", "call-1", "from"),
    }  # fmt: skip

    # processing the same events again (a redelivered message; then their re-processing) changes nothing
    ids = _event_ids()
    before = _link_rows()
    assert process_events.delay(ids).get(timeout=TIMEOUT_S)["skipped"] == len(ids)
    with get_engine().begin() as connection:
        connection.execute(text("UPDATE events SET status = 'received', processed_at = NULL"))
    again = process_events.delay(ids).get(timeout=TIMEOUT_S)
    assert (again["processed"], again["links_changed"]) == (len(ids), 0)
    assert _link_rows() == before

    # the contact's email changes: cus_1 and the call lose it (and its deal), cus_2 gains them
    change = {"source": "hubspot", "external_id": "hs-email-change", "type": "contact.propertyChange",
              "payload": {"objectId": "c1", "propertyName": "email",
                          "propertyValue": "Dana@Other.example"}}  # fmt: skip
    _post(client, [change])
    _wait_processed({"hs-email-change"})
    assert _links() == {
        ("stripe:customer", "cus_1", "hubspot:company", "co1", "domain"),  # cus_1's own email did not change
        ("calls:call", "call-1", "hubspot:deal", "d-ctx", "crm_context"),
        ("stripe:customer", "cus_2", "hubspot:contact", "c1", "email"),
        ("stripe:customer", "cus_2", "hubspot:deal", "d1", "email"),
    }


def _event_ids() -> list[int]:
    with session_scope() as session:
        return list(session.scalars(select(Event.id).order_by(Event.id)))


def _insert_event(event: dict[str, Any]) -> int:
    with get_engine().begin() as connection:
        return int(connection.execute(insert(Event).values(**event).returning(Event.id)).scalar_one())


def _process(event: dict[str, Any]) -> dict[str, Any]:
    """Store one event and process it through the worker, waiting for the RAG prep it queued."""
    counts = process_events.delay([_insert_event(event)]).get(timeout=TIMEOUT_S)
    assert counts["processed"] == 1, counts
    indexing = counts.get("indexing")
    assert indexing, counts
    result: dict[str, Any] = AsyncResult(indexing, app=app).get(timeout=TIMEOUT_S)
    return result


def _chunks(source: str, source_ref: str) -> list[tuple[int, int, str, str, dt.datetime, dict[str, Any] | None]]:
    with session_scope() as session:
        rows = session.scalars(select(KnowledgeChunk).where(KnowledgeChunk.source == source,
                                                            KnowledgeChunk.source_ref == source_ref)
                               .order_by(KnowledgeChunk.chunk_index)).all()  # fmt: skip
        return [(r.id, r.chunk_index, r.content, r.content_hash, r.updated_at, r.meta) for r in rows]


def test_call_transcripts_and_notes_become_chunks_once_and_are_replaced_on_change(
    client: TestClient, gong: FakeGong
) -> None:
    gong.transcripts["call-1"] = FIRST_TRANSCRIPT + [
        {"speakerId": "s1", "sentences": [{"start": 15000 + n, "end": 16000 + n, "text": f"Detail number {n} " * 12}]}
        for n in range(8)
    ]  # a long call: several chunks
    assert _process(_call_event(gong)) == {"indexed": 1}
    first = _chunks("calls", "call:call-1")
    with session_scope() as session:
        record_data = session.execute(text("SELECT data FROM source_records WHERE object_id = 'call-1'")).scalar_one()
    expected_pieces = chunk_text(call_document("call-1", record_data).content)
    assert len(first) == len(expected_pieces) > 1
    assert [c[1] for c in first] == list(range(len(first)))
    assert [c[2] for c in first] == expected_pieces
    assert "Dana Ray: Our finance team flagged a duplicate invoice for the quartz plan." in first[0][2]
    assert first[0][5] == {"source": "calls", "object_type": "call", "object_id": "call-1"}
    assert len({c[3] for c in first}) == 1  # one content hash per source object

    # the identical call re-delivered (a new delivery id, a backfill): nothing is re-embedded
    assert _process(_call_event(gong)) == {"unchanged": 1}
    assert _chunks("calls", "call:call-1") == first
    # a later bare listing of the call (no transcript) keeps the stored details: still unchanged
    listed = {"source": "calls", "external_id": "call:call-1:listed", "type": "call.listed",
              "payload": dict(gong.calls[0])}  # fmt: skip
    assert _process(listed) == {"unchanged": 1}
    assert _chunks("calls", "call:call-1") == first

    # a corrected transcript replaces every old chunk
    gong.transcripts["call-1"] = [
        {"speakerId": "s2", "sentences": [{"start": 0, "end": 5000, "text": "We will churn unless the zeppelin "
                                                                          "discount is honoured."}]},
    ]  # fmt: skip
    assert _process(_call_event(gong)) == {"indexed": 1}
    second = _chunks("calls", "call:call-1")
    assert len(second) == 1 and not {c[0] for c in second} & {c[0] for c in first}
    assert "zeppelin discount" in second[0][2] and "Our finance team" not in second[0][2]
    assert second[0][3] != first[0][3]

    # a HubSpot note (HTML body) and a deal description become chunks too
    note = _hubspot("note", "n1", {"hs_note_body": "<p>Dana asked for a <b>refund</b> of the duplicate invoice.</p>",
                                   "hs_timestamp": "2026-11-24T16:00:00Z"})  # fmt: skip
    assert _process(note) == {"indexed": 1}
    [note_chunk] = _chunks("hubspot", "note:n1")
    assert note_chunk[2] == "HubSpot note 2026-11-24T16:00:00Z\n\nDana asked for a refund of the duplicate invoice."
    assert note_chunk[5] == {"source": "hubspot", "object_type": "note", "object_id": "n1"}
    deal = _hubspot("deal", "d9", {"dealname": "Acme", "description": "Multi-year deal, procurement via a reseller."})
    assert _process(deal) == {"indexed": 1}
    assert _chunks("hubspot", "deal:d9")[0][2] == "HubSpot deal Acme\n\nMulti-year deal, procurement via a reseller."

    # the Analyst's search_knowledge tool finds the transcript
    found = ANALYST_TOOLS["search_knowledge"].run({"query": "zeppelin discount churn", "k": 3})
    assert found["hits"][0]["source"] == "calls" and found["hits"][0]["source_ref"] == "call:call-1"
    assert "zeppelin discount" in found["hits"][0]["content"]


def test_a_finished_runs_analysis_becomes_a_chunk_and_the_analyst_saw_the_links(client: TestClient) -> None:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, [
            RecordIn("hubspot", "owner", "o1", now, {"id": "o1", "email": "ana@rev.example"}),
            RecordIn("hubspot", "contact", "c7", now, {"id": "c7", "properties": {
                "email": "lee@globex.example", "hubspot_owner_id": "o1"}}),
            RecordIn("hubspot", "deal", "d7", now, {"id": "d7", "properties": {
                "dealname": "Globex pilot", "amount": "1200.00", "dealstage": "contractsent", "hubspot_owner_id": None},
                "associations": {"contacts": ["c7"]}}),
        ])  # fmt: skip
    _post(client, [_customer("cus_7", "lee@globex.example")])  # the event links cus_7 to c7 and to deal d7
    _wait_processed(set(_external_ids()))
    assert _links() == {("stripe:customer", "cus_7", "hubspot:contact", "c7", "email"),
                        ("stripe:customer", "cus_7", "hubspot:deal", "d7", "email")}  # fmt: skip

    outcome = scan.delay(["hubspot"]).get(timeout=TIMEOUT_S)
    [run] = wait_for_runs([dispatch_insight(insight_id) for insight_id in outcome["insights"]])
    assert (run["insight_kind"], run["status"]) == ("hubspot_deal_without_owner", "done")
    run_id = str(run["run_id"])
    with session_scope() as session:
        prompt = session.scalars(select(AgentConversation.content).where(
            AgentConversation.run_id == run_id, AgentConversation.agent == "analyst",
            AgentConversation.role == "user").order_by(AgentConversation.id)).first()  # fmt: skip
    assert prompt is not None and "Linked in other systems:" in prompt
    assert '"kind": "stripe:customer", "id": "cus_7", "direction": "from"' in prompt

    assert sweep.delay().get(timeout=TIMEOUT_S)["analyses"] == {"indexed": 1}
    [chunk] = _chunks("analysis", f"run:{run_id}")
    assert chunk[2].startswith("Resolved analysis of Deal 'Globex pilot' has ")
    assert "Root cause: crm_data_hygiene (confidence 0.85)" in chunk[2]
    assert chunk[5] == {"source": "analysis", "object_type": "run", "object_id": run_id,
                        "insight_kind": "hubspot_deal_without_owner", "root_cause": "crm_data_hygiene"}  # fmt: skip
    # the next sweep finds nothing new and rewrites nothing
    assert sweep.delay().get(timeout=TIMEOUT_S)["analyses"] == {}
    assert _chunks("analysis", f"run:{run_id}") == [chunk]
    with session_scope() as session:
        total = session.scalar(select(func.count()).select_from(KnowledgeChunk)
                               .where(KnowledgeChunk.source == "analysis"))  # fmt: skip
    assert total == 1


def _external_ids() -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(Event.external_id)))


def test_the_sweep_indexes_records_whose_indexing_message_never_came(client: TestClient) -> None:
    # stored without an event (demo seeding; an indexing message lost with the broker)
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        upsert_records(session, [
            RecordIn("calls", "call", "lost-1", now, {"id": "lost-1", "title": "Lost", "started": now.isoformat(),
                                                      "content": {"brief": "A walrus-themed onboarding call."}}),
            RecordIn("calls", "call", "bare-1", now, {"id": "bare-1", "started": now.isoformat()}),
        ])  # fmt: skip
    assert sweep.delay().get(timeout=TIMEOUT_S)["records"] == {"indexed": 1, "empty": 1}
    [chunk] = _chunks("calls", "call:lost-1")
    assert "Summary: A walrus-themed onboarding call." in chunk[2]
    assert _chunks("calls", "call:bare-1") == []
    assert sweep.delay().get(timeout=TIMEOUT_S)["records"] == {"unchanged": 1, "empty": 1}
    assert _chunks("calls", "call:lost-1") == [chunk]
