"""Live reads from the source systems as Celery tasks: fetch one object and store it in
`source_records` (what the detectors and the Analyst's tools read). Transient failures re-queue
the task with the integration policy's delay; an open circuit or a spent rate budget defers it
without calling the API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import Task

from switchboard.celery_app import app
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.integrations.resilience import CallContext
from switchboard.tasks.base import SwitchboardTask, real_retries

HUBSPOT_TYPES = {"deal": "deals", "contact": "contacts", "company": "companies"}


@app.task(name="switchboard.tasks.integrations.fetch", base=SwitchboardTask, bind=True, acks_late=True, max_retries=8)
def fetch(self: Task[Any, Any], source: str, object_type: str, object_id: str) -> dict[str, Any]:
    """Fetch one object from its source system and store it; returns a short summary."""
    data = _fetch(source, object_type, object_id, CallContext(attempt=real_retries(self) + 1))
    with session_scope() as session:
        upsert_records(session, [RecordIn(source, object_type, object_id, dt.datetime.now(dt.UTC), data)])
    return {"source": source, "object_type": object_type, "object_id": object_id, "stored": True}


def _fetch(source: str, object_type: str, object_id: str, context: CallContext) -> dict[str, Any]:
    if source == "hubspot" and object_type in HUBSPOT_TYPES:
        from switchboard.integrations.hubspot import HubSpotClient

        return HubSpotClient(context=context).get(HUBSPOT_TYPES[object_type], object_id)
    from switchboard.errors import Permanent

    raise Permanent(f"cannot fetch {source} {object_type}: no live client for it")
