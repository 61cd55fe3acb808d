"""Enrichment and RAG-prep document building on SQLite (the standalone database): the JSON-path
and text pre-filter queries are portable, links reconcile idempotently, documents are stable."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select

from switchboard.agents.rag_prep import call_document, hubspot_document, plain_text
from switchboard.db import migrate
from switchboard.db.models import EntityLink
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.enrichment import enrich, linked_entities, normalise_domain, normalise_email

NOW = dt.datetime(2026, 11, 24, tzinfo=dt.UTC)


def _links(url: str) -> set[tuple[str, str, str, str]]:
    with session_scope(url) as session:
        rows = session.scalars(select(EntityLink).where(EntityLink.link_type != "identity"))
        return {(r.from_id, r.to_kind, r.to_id, r.link_type) for r in rows}


def test_links_on_sqlite_reconcile_and_follow_changes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'enrich.db'}"
    migrate.upgrade(url)
    records = [
        RecordIn("hubspot", "contact", "c1", NOW, {"id": "c1", "properties": {"email": "Kim_O@Initech.example"}}),
        RecordIn("hubspot", "company", "co1", NOW, {"id": "co1", "properties": {"domain": "initech.example"}}),
        RecordIn("hubspot", "deal", "d1", NOW, {"id": "d1", "properties": {"dealname": "Initech"},
                                                "associations": {"contacts": [1, "c1"]}}),
        RecordIn("stripe", "customer", "cus_1", NOW, {"id": "cus_1", "object": "customer",
                                                      "email": "kim_o@initech.example"}),
        RecordIn("calls", "call", "k1", NOW, {"id": "k1", "parties": [
            {"emailAddress": "kim_o@initech.example", "affiliation": "External"},
            {"emailAddress": "rep@us.example", "affiliation": "Internal"}],
            "context": [{"system": "Salesforce", "objects": [{"objectType": "Opportunity", "objectId": "o9"}]}]}),
    ]  # fmt: skip
    with session_scope(url) as session:
        upsert_records(session, records)
        counts = enrich(session, records)
    assert counts["relinked"] == 2 and counts["removed"] == 0
    assert _links(url) == {
        ("cus_1", "hubspot:contact", "c1", "email"), ("cus_1", "hubspot:company", "co1", "domain"),
        ("cus_1", "hubspot:deal", "d1", "email"), ("k1", "hubspot:contact", "c1", "email"),
        ("k1", "hubspot:deal", "d1", "email"),  # a Salesforce opportunity is not a HubSpot deal
    }  # fmt: skip
    with session_scope(url) as session:
        assert enrich(session, records) == {"relinked": 2, "added": 0, "updated": 0, "removed": 0}
        assert [link["id"] for link in linked_entities(session, "hubspot:contact", "c1")] == ["cus_1", "k1"]

    # the deal drops the contact: the customer and the call lose the deal, nothing else
    changed = RecordIn("hubspot", "deal", "d1", NOW, {"id": "d1", "properties": {}, "associations": {"contacts": []}})
    with session_scope(url) as session:
        upsert_records(session, [changed])
        assert enrich(session, [changed]) == {"relinked": 2, "added": 0, "updated": 0, "removed": 2}
    assert ("cus_1", "hubspot:deal", "d1", "email") not in _links(url)
    assert ("cus_1", "hubspot:contact", "c1", "email") in _links(url)


def test_normalising_and_documents() -> None:
    assert normalise_email(" Ann@Example.COM ") == "ann@example.com"
    assert normalise_email("not-an-email") is None and normalise_email("a@b") is None
    assert normalise_domain("https://www.Example.com/about") == "example.com"
    assert plain_text("<p>One &amp; two</p><p>three<br>four</p>") == "One & two\n\nthree\n\nfour"
    assert call_document("x", {"id": "x", "title": "Bare"}).content == ""  # metadata alone is no knowledge
    call = {"id": "x", "title": "Demo", "started": "2026-11-24T10:00:00Z",
            "parties": [{"name": "Ann", "affiliation": "External", "speakerId": "9"}],
            "content": {"brief": "Short.", "keyPoints": [{"text": "A"}, {"text": "B"}]},
            "transcript": [{"speakerId": "9", "sentences": [{"text": "Hello."}, {"text": "Bye."}]}]}  # fmt: skip
    doc = call_document("x", call)
    assert doc.content == ("Call Demo on 2026-11-24T10:00:00Z with Ann (External)\n\nSummary: Short.\n\n"
                           "Key points: A; B\n\nAnn: Hello. Bye.")  # fmt: skip
    assert (doc.source, doc.source_ref) == ("calls", "call:x")
    assert hubspot_document("contact", "c1", {"properties": {"email": "a@b.example"}}).content == ""
