"""The Analyst: explains an alert — root cause from a closed set, narrative, evidence, confidence.

Context: similar knowledge_base chunks, recent conversations about the entity, the cached
entity context, the objects other systems link to it (a Stripe customer's HubSpot contact,
company and deals), and tools the model calls for facts. Claude by default.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy.orm import Session

from switchboard.agents import answers
from switchboard.agents.context import StepContext
from switchboard.agents.llm import provider_for
from switchboard.agents.llm.base import LLMRequest, Message
from switchboard.agents.memory import (
    KnowledgeHit,
    cached_context_or_record,
    recent_conversation,
    search_knowledge,
    store_context,
)
from switchboard.agents.toolloop import ask, remember_tool_result
from switchboard.agents.tools import ANALYST_TOOLS
from switchboard.contracts import ROOT_CAUSES, Analysis, WatchResult
from switchboard.db.session import session_scope
from switchboard.enrichment import linked_entities
from switchboard.settings import Settings

MAX_LINKS = 20

SYSTEM = (
    "You are the Analyst of a revenue-operations team. Explain the anomaly you are given using "
    "the facts provided and the tools (fetch the records you need). Then call the `answer` tool with "
    '{"root_cause": one of ' + json.dumps(list(ROOT_CAUSES)) + ', "narrative": "2-5 sentences", '
    '"evidence_ids": ["ids of the records that support it"], "confidence": 0.0-1.0}.'
)


def _entity_context(ctx: StepContext, watched: WatchResult, settings: Settings, now: dt.datetime) -> dict[str, Any]:
    alert = watched.alert
    key = f"{alert.entity.source}:{alert.entity.type}:{alert.entity.id}"
    with session_scope(autocommit=True) as session:  # reads and one upsert: no transaction needed
        cached, data = cached_context_or_record(
            session, "entity", key, (alert.entity.source, alert.entity.type, alert.entity.id), now=now
        )
        if cached is None:
            cached = {"found": False} if data is None else {"found": True, "object": data}
            store_context(session, "entity", key, cached, now=now, ttl_s=settings.context_cache_ttl_s)
            # read just now: the model asking for this very record in this step gets it from memory
            remember_tool_result(ctx, "get_record", {"source": alert.entity.source, "object_type": alert.entity.type,
                                                     "object_id": alert.entity.id}, cached)  # fmt: skip
        knowledge = _knowledge(session, watched)
        history = recent_conversation(session, alert.entity.type, alert.entity.id, limit=6)
        return {
            "entity": cached,
            "links": _links(session, alert.entity.source, alert.entity.type, alert.entity.id, cached),
            "knowledge": [{"source_ref": h.source_ref, "content": h.content[:600]} for h in knowledge],
            "history": [{"agent": m.agent, "role": m.role, "content": m.content[:400]} for m in history],
        }


def _knowledge(session: Session, watched: WatchResult, k: int = 4) -> list[KnowledgeHit]:
    """What the knowledge base says about the alert: first what is about its very entity (notes
    on it, past analyses of it), then the closest of everything else."""
    alert = watched.alert
    query = f"{alert.kind.replace('_', ' ')} {alert.title}"
    own = search_knowledge(session, query, k=k // 2, entity=(alert.entity.type, alert.entity.id))
    seen = {(hit.source, hit.source_ref) for hit in own}
    rest = [hit for hit in search_knowledge(session, query, k=k) if (hit.source, hit.source_ref) not in seen]
    return own + rest[: k - len(own)]


def _links(session: Session, source: str, object_type: str, object_id: str, entity: dict[str, Any]) -> list[Any]:
    """What other systems link to the alert's entity — or, for a Stripe object of one customer
    (a charge, an invoice), to that customer."""
    links = linked_entities(session, f"{source}:{object_type}", object_id, limit=MAX_LINKS)
    customer = (entity.get("object") or {}).get("customer") if entity.get("found") else None
    if source == "stripe" and object_type != "customer" and isinstance(customer, str) and customer:
        links += [{**link, "via": f"stripe:customer:{customer}"}
                  for link in linked_entities(session, "stripe:customer", customer, limit=MAX_LINKS)]  # fmt: skip
    return links[:MAX_LINKS]


def analyse(ctx: StepContext, watched: WatchResult, settings: Settings, now: dt.datetime) -> Analysis:
    """Produce a validated Analysis of the watched alert."""
    alert = watched.alert
    ctx.entity_type, ctx.entity_id = alert.entity.type, alert.entity.id
    context = _entity_context(ctx, watched, settings, now)
    prompt = (
        f"Alert:\n{alert.model_dump_json(indent=1)}\n\nKnown entity state:\n{json.dumps(context['entity'])[:3000]}"
        f"\n\nLinked in other systems:\n{json.dumps(context['links'])[:3000]}"
        f"\n\nRelevant knowledge:\n{json.dumps(context['knowledge'])}\n\n"
        f"Earlier conversation about this entity:\n{json.dumps(context['history'])}"
    )
    max_tokens, thinking = settings.model_budget("analyst")
    request = LLMRequest(
        purpose="analyst.analyse",
        system=SYSTEM,
        messages=(Message(role="user", text=prompt),),
        facts={"alert": alert.model_dump(mode="json"), **context},
        max_tokens=max_tokens,
        thinking_budget=thinking,
    )
    provider = provider_for("analyst", settings)

    def validate(answer: dict[str, Any]) -> Analysis:
        return Analysis(
            run_id=watched.run_id,
            insight_id=watched.insight_id,
            alert=alert,
            root_cause=answer.get("root_cause"),
            narrative=answer.get("narrative"),
            evidence_ids=[str(item) for item in answer.get("evidence_ids") or []],
            confidence=answer.get("confidence"),
            provider=ctx.provider or provider.name,
            model=ctx.model or provider.model,
        )

    return ask(ctx, provider, request, ANALYST_TOOLS, answers.ANALYST, validate)
