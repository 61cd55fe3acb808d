"""RAG prep as Celery work on the `low` queue (sent there explicitly: by `queue_indexing` and the
beat entry; a bare `.delay()` lands on `default`): indexing changed source records (queued by event
processing) and a beat sweep that indexes the analyses of runs that reached `done` and re-checks
records changed lately (catching up any indexing message that was lost). Indexing is idempotent:
unchanged content is never re-embedded (switchboard/agents/rag_prep.py)."""

from __future__ import annotations

import datetime as dt
import logging
import time

from sqlalchemy.exc import OperationalError

from switchboard.agents import rag_prep
from switchboard.celery_app import app
from switchboard.db.session import session_scope
from switchboard.settings import get_settings

log = logging.getLogger("switchboard.knowledge")

BATCH = 200  # records per indexing transaction


@app.task(
    name="switchboard.tasks.knowledge.index_records",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def index_records(keys: list[list[str]]) -> dict[str, int]:
    """Index these source records ([source, object type, id] each); returns counts per outcome."""
    started = time.monotonic()
    parsed = [(str(k[0]), str(k[1]), str(k[2])) for k in keys if len(k) == 3]
    counts: dict[str, int] = {}
    for start in range(0, len(parsed), BATCH):
        with session_scope() as session:
            for outcome, n in rag_prep.index_records(session, parsed[start : start + BATCH]).items():
                counts[outcome] = counts.get(outcome, 0) + n
    log.info("indexed %d source record(s) in %.0f ms: %s", len(parsed), (time.monotonic() - started) * 1000, counts)
    return counts


@app.task(
    name="switchboard.tasks.knowledge.sweep",
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def sweep() -> dict[str, dict[str, int]]:
    """Beat job: index finished runs' analyses and re-check records changed in the last three
    sweep intervals; returns counts per outcome."""
    started = time.monotonic()
    settings = get_settings()
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3 * settings.knowledge_sweep_interval_s)
    with session_scope() as session:
        analyses = rag_prep.index_analyses(session)
    with session_scope() as session:
        keys = rag_prep.recently_changed(session, since)
    records: dict[str, int] = {}
    for start in range(0, len(keys), BATCH):
        with session_scope() as session:
            for outcome, n in rag_prep.index_records(session, keys[start : start + BATCH]).items():
                records[outcome] = records.get(outcome, 0) + n
    log.info("knowledge sweep in %.0f ms: analyses %s, records %s", (time.monotonic() - started) * 1000,
             analyses, records)  # fmt: skip
    return {"analyses": analyses, "records": records}


def queue_indexing(keys: list[list[str]]) -> str | None:
    """Queue RAG prep of changed records (returns the task id); if the broker is unreachable the
    sweep catches up."""
    try:
        return str(index_records.apply_async(args=[keys], queue=get_settings().queue_name("low")).id)
    except Exception as error:  # the records are stored: the sweep re-checks recent changes
        log.warning("could not queue indexing of %d record(s) (%s); the sweep will", len(keys), type(error).__name__)
        return None
