"""RAG prep: what becomes knowledge-base text, and keeping it in step with its source.

Documents: a call's summary, key points, outline and transcript (Gong extensive data and
transcript monologues, as stored on the call record); a HubSpot note's body and a deal's,
contact's or company's description; the Analyst's `Analysis` of every run that reached `done`.
Each is stored under a source reference — knowledge_base `source` (calls | hubspot | analysis)
and `source_ref` "<object type>:<id>", with (source, object type, id) in its metadata and the
chunk index on each row — and re-embedded only when its content hash changes (the old chunks
are replaced). A source whose content disappears loses its chunks.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, exists, literal, select
from sqlalchemy.orm import Session

from switchboard.agents.memory import remove_document, upsert_document
from switchboard.contracts import Analysis
from switchboard.db.locks import lock_names
from switchboard.db.models import AgentRun, AgentStep, KnowledgeChunk, SourceRecord

RAG_SOURCES = ("calls", "hubspot")
ANALYSIS_SOURCE = "analysis"
_TAG = re.compile(r"<[^>]+>")
_BLOCK_TAG = re.compile(r"</?(p|div|br|li|ul|ol|h[1-6])\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class Document:
    source: str
    object_type: str
    object_id: str
    content: str  # empty: the object has nothing worth indexing (any old chunks are removed)
    entity_type: str | None = None
    entity_id: str | None = None
    extra: dict[str, Any] | None = None

    @property
    def source_ref(self) -> str:
        return f"{self.object_type}:{self.object_id}"


def plain_text(value: Any) -> str:
    """HubSpot rich text (HTML) as plain paragraphs."""
    if not isinstance(value, str):
        return ""
    text = _BLOCK_TAG.sub("\n\n", value)
    text = html.unescape(_TAG.sub("", text))
    return "\n\n".join(" ".join(line.split()) for line in text.split("\n\n") if line.strip())


def _texts(items: Any, *keys: str) -> list[str]:
    out: list[str] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and item.strip():
            out.append(item.strip())
        elif isinstance(item, dict):
            out += [str(item[k]).strip() for k in keys if isinstance(item.get(k), str) and item[k].strip()]
    return out


def _transcript(call: dict[str, Any]) -> list[str]:
    """One paragraph per monologue ("Speaker: sentences"), from Gong's `transcript` monologues
    (`speakerId`, `sentences[].text`) or a plain-text transcript."""
    transcript = call.get("transcript")
    if isinstance(transcript, str):
        return [p.strip() for p in transcript.split("\n\n") if p.strip()]
    names = {
        str(party.get("speakerId")): str(party.get("name") or party.get("speakerId"))
        for party in call.get("parties") or []
        if isinstance(party, dict) and party.get("speakerId")
    }
    paragraphs = []
    for monologue in transcript if isinstance(transcript, list) else []:
        if not isinstance(monologue, dict):
            continue
        spoken = " ".join(_texts(monologue.get("sentences"), "text"))
        if spoken:
            speaker = names.get(str(monologue.get("speakerId")), f"Speaker {monologue.get('speakerId', '?')}")
            paragraphs.append(f"{speaker}: {spoken}")
    return paragraphs


def call_document(call_id: str, call: dict[str, Any]) -> Document:
    """A call's summary, key points, outline and transcript (empty when it has none of them)."""
    found = call.get("content")
    content: dict[str, Any] = found if isinstance(found, dict) else {}
    parts: list[str] = []
    summary = content.get("brief") or call.get("summary")
    if isinstance(summary, str) and summary.strip():
        parts.append(f"Summary: {summary.strip()}")
    key_points = _texts(content.get("keyPoints"), "text")
    if key_points:
        parts.append("Key points: " + "; ".join(key_points))
    for section in content.get("outline") or []:
        if isinstance(section, dict):
            items = _texts(section.get("items"), "text")
            if items:
                parts.append(f"{section.get('section') or 'Outline'}: " + "; ".join(items))
    parts += _transcript(call)
    if not parts:
        return Document("calls", "call", call_id, "", "call", call_id)
    people = [
        f"{party.get('name')} ({party.get('affiliation') or 'Unknown'})"
        for party in call.get("parties") or []
        if isinstance(party, dict) and party.get("name")
    ]
    header = f"Call {call.get('title') or call_id} on {call.get('started') or 'an unknown date'}"
    if people:
        header += " with " + ", ".join(people)
    return Document("calls", "call", call_id, "\n\n".join([header, *parts]), "call", call_id)


def hubspot_document(object_type: str, object_id: str, data: dict[str, Any]) -> Document:
    """A note's body, or a deal's, contact's or company's description (empty when absent)."""
    found = data.get("properties")
    properties: dict[str, Any] = found if isinstance(found, dict) else {}
    if object_type == "note":
        body = plain_text(properties.get("hs_note_body"))
        when = properties.get("hs_timestamp") or data.get("createdAt") or ""
        content = f"HubSpot note {when}".strip() + f"\n\n{body}" if body else ""
    else:
        description = plain_text(properties.get("description"))
        person = " ".join(str(properties.get(k) or "") for k in ("firstname", "lastname")).strip()
        name = properties.get("dealname") or properties.get("name") or person or object_id
        content = f"HubSpot {object_type} {name}\n\n{description}" if description else ""
    return Document("hubspot", object_type, object_id, content, object_type, object_id)


def record_document(record: SourceRecord) -> Document | None:
    """The document of a stored source record, or None for objects that carry no knowledge."""
    if record.source == "calls" and record.object_type == "call":
        return call_document(record.object_id, record.data)
    if record.source == "hubspot" and record.object_type in ("note", "deal", "contact", "company"):
        return hubspot_document(record.object_type, record.object_id, record.data)
    return None


def analysis_document(analysis: Analysis) -> Document:
    alert = analysis.alert
    entity = f"{alert.entity.source} {alert.entity.type} {alert.entity.id}"
    content = "\n\n".join(filter(None, [
        f"Resolved analysis of {alert.title} ({alert.kind}) on {entity}",
        f"Root cause: {analysis.root_cause} (confidence {analysis.confidence:.2f})",
        analysis.narrative,
        "Evidence: " + ", ".join(analysis.evidence_ids) if analysis.evidence_ids else "",
    ]))  # fmt: skip
    return Document(ANALYSIS_SOURCE, "run", analysis.run_id, content, alert.entity.type, alert.entity.id,
                    {"insight_kind": alert.kind, "root_cause": analysis.root_cause})  # fmt: skip


def store_document(session: Session, document: Document) -> str:
    """Write one document's chunks: "indexed", "unchanged", "removed" or "empty"."""
    if not document.content:
        removed = remove_document(session, source=document.source, source_ref=document.source_ref)
        return "removed" if removed else "empty"
    meta = {"source": document.source, "object_type": document.object_type, "object_id": document.object_id,
            **(document.extra or {})}  # fmt: skip
    written = upsert_document(session, source=document.source, source_ref=document.source_ref,
                              content=document.content, entity_type=document.entity_type,
                              entity_id=document.entity_id, meta=meta)  # fmt: skip
    return "indexed" if written else "unchanged"


def index_records(session: Session, keys: list[tuple[str, str, str]]) -> dict[str, int]:
    """Bring the knowledge base in step with these source records; returns counts per outcome."""
    # Locked before reading, so a slower worker holding an older read never overwrites newer chunks.
    lock_names(session, (f"knowledge:{source}:{object_type}:{object_id}" for source, object_type, object_id in keys))
    counts: dict[str, int] = {}
    for source, object_type, object_id in sorted(set(keys)):
        record = session.scalars(
            select(SourceRecord).where(SourceRecord.source == source, SourceRecord.object_type == object_type,
                                       SourceRecord.object_id == object_id)
        ).first()  # fmt: skip
        document = record_document(record) if record is not None else None
        outcome = store_document(session, document) if document is not None else "skipped"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def unindexed_analyses(session: Session, *, limit: int = 200) -> list[tuple[str, dict[str, Any]]]:
    """(run id, Analyst output) of runs that reached done and whose analysis is not indexed yet."""
    indexed = exists().where(
        KnowledgeChunk.source == ANALYSIS_SOURCE, KnowledgeChunk.source_ref == literal("run:") + AgentRun.id
    )
    rows = session.execute(
        select(AgentRun.id, AgentStep.output)
        .join(AgentStep, and_(AgentStep.run_id == AgentRun.id, AgentStep.step == "analyst"))
        .where(AgentRun.status == "done", AgentStep.status == "done", AgentStep.output.is_not(None), ~indexed)
        .order_by(AgentRun.finished_at.desc(), AgentRun.id)  # newest first: an old bad row cannot starve them
        .limit(limit)
    ).all()
    return [(str(row.id), dict(row.output)) for row in rows]


def index_analyses(session: Session, *, limit: int = 200) -> dict[str, int]:
    """Index the analyses of finished runs not indexed yet; returns counts per outcome."""
    counts: dict[str, int] = {}
    pending = unindexed_analyses(session, limit=limit)
    lock_names(session, (f"knowledge:{ANALYSIS_SOURCE}:run:{run_id}" for run_id, _ in pending))
    for _run_id, output in pending:
        try:
            analysis = Analysis.model_validate(output)
        except ValidationError:
            outcome = "invalid"  # a stored output from an older contract: nothing to index
        else:
            outcome = store_document(session, analysis_document(analysis))
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def recently_changed(session: Session, since: dt.datetime, *, limit: int = 2000) -> list[tuple[str, str, str]]:
    """Keys of the call and HubSpot records changed since ``since`` (the sweep re-checks them)."""
    rows = session.execute(
        select(SourceRecord.source, SourceRecord.object_type, SourceRecord.object_id)
        .where(SourceRecord.source.in_(RAG_SOURCES), SourceRecord.updated_at >= since)
        .order_by(SourceRecord.updated_at.desc())
        .limit(limit)
    ).all()
    return [(str(r.source), str(r.object_type), str(r.object_id)) for r in rows]
