"""Tools the Analyst's model may call for facts about the entities behind an alert.

They read the stored source records (kept current by ingestion and backfills), the links
enrichment found between systems, and the knowledge base; each call is logged as a tool-call
row by the tool loop.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from switchboard.agents.llm.base import ToolSpec
from switchboard.agents.memory import search_knowledge
from switchboard.agents.toolloop import Tool
from switchboard.db.models import SourceRecord
from switchboard.db.session import session_scope
from switchboard.enrichment import linked_entities

MAX_FIND = 20

_SOURCE = {"type": "string", "enum": ["stripe", "hubspot", "calls"]}


def get_record(arguments: dict[str, Any], session: Session | None = None) -> dict[str, Any]:
    """One stored object by source, type and id."""
    if session is None:
        with session_scope(autocommit=True) as own:
            return get_record(arguments, own)
    data = session.scalar(
        select(SourceRecord.data).where(
            SourceRecord.source == str(arguments["source"]),
            SourceRecord.object_type == str(arguments["object_type"]),
            SourceRecord.object_id == str(arguments["object_id"]),
        )
    )
    return {"found": False} if data is None else {"found": True, "object": data}


def find_records(arguments: dict[str, Any]) -> dict[str, Any]:
    """Stored objects of one type whose top-level ``field`` equals ``value`` (at most 20)."""
    limit = min(int(arguments.get("limit", MAX_FIND)), MAX_FIND)
    with session_scope() as session:
        rows = session.scalars(
            select(SourceRecord)
            .where(
                SourceRecord.source == str(arguments["source"]),
                SourceRecord.object_type == str(arguments["object_type"]),
                SourceRecord.data[str(arguments["field"])].as_string() == str(arguments["value"]),
            )
            .order_by(SourceRecord.occurred_at)
            .limit(limit)
        ).all()
        return {"count": len(rows), "objects": [row.data for row in rows]}


def knowledge(arguments: dict[str, Any]) -> dict[str, Any]:
    """The knowledge-base chunks most similar to a query."""
    with session_scope() as session:
        entity = (str(arguments["entity_type"]), str(arguments["entity_id"])) if arguments.get("entity_id") else None
        hits = search_knowledge(session, str(arguments["query"]), k=min(int(arguments.get("k", 4)), 8),
                                source=arguments.get("source"), entity=entity)  # fmt: skip
        return {"hits": [{"source": h.source, "source_ref": h.source_ref, "content": h.content,
                          "score": round(h.score, 3)} for h in hits]}  # fmt: skip


def get_links(arguments: dict[str, Any]) -> dict[str, Any]:
    """The objects of other systems linked to one object (e.g. a Stripe customer's HubSpot
    contact, company and deals; a call's deal)."""
    kind = f"{arguments['source']}:{arguments['object_type']}"
    with session_scope() as session:
        links = linked_entities(session, kind, str(arguments["object_id"]), limit=MAX_FIND)
        return {"count": len(links), "links": links}


ANALYST_TOOLS: dict[str, Tool] = {
    "get_record": Tool(
        ToolSpec(
            "get_record",
            "Fetch one Stripe, HubSpot or call object by type and id (e.g. stripe payout po_123).",
            {
                "type": "object",
                "properties": {"source": _SOURCE, "object_type": {"type": "string"}, "object_id": {"type": "string"}},
                "required": ["source", "object_type", "object_id"],
            },
        ),
        get_record,
    ),
    "find_records": Tool(
        ToolSpec(
            "find_records",
            "List objects of one type whose top-level field equals a value "
            "(e.g. stripe balance_transaction where payout = po_123).",
            {
                "type": "object",
                "properties": {
                    "source": _SOURCE,
                    "object_type": {"type": "string"},
                    "field": {"type": "string"},
                    "value": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_FIND},
                },
                "required": ["source", "object_type", "field", "value"],
            },
        ),
        find_records,
    ),
    "linked_entities": Tool(
        ToolSpec(
            "linked_entities",
            "Objects in other systems linked to one object: a Stripe customer's HubSpot contact, company "
            "and deals (by email and domain), a call's HubSpot deal and contacts, or what links to a deal.",
            {
                "type": "object",
                "properties": {"source": _SOURCE, "object_type": {"type": "string"}, "object_id": {"type": "string"}},
                "required": ["source", "object_type", "object_id"],
            },
        ),
        get_links,
    ),
    "search_knowledge": Tool(
        ToolSpec(
            "search_knowledge",
            "Search the team's knowledge base (runbooks, past analyses, call notes); optionally only what is "
            "about one source's object (entity_type and entity_id together).",
            {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "k": {"type": "integer", "minimum": 1, "maximum": 8},
                    "source": {"type": "string", "enum": ["stripe", "hubspot", "calls", "analysis"]},
                    "entity_type": {"type": "string"},
                    "entity_id": {"type": "string"},
                },
                "required": ["query"],
            },
        ),
        knowledge,
    ),
}
