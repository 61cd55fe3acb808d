"""Watcher scans: run the detectors over stored data for some sources and raise insights."""

from __future__ import annotations

import datetime as dt
from typing import Any

from switchboard.agents import watcher
from switchboard.celery_app import app
from switchboard.settings import get_settings


@app.task(name="switchboard.tasks.watch.scan", acks_late=True)
def scan(sources: list[str]) -> dict[str, Any]:
    """Scan ``sources``; returns the insight ids and how many were new. A new critical
    insight triggers the orchestrator at once instead of waiting for its next beat."""
    raised = watcher.scan(sources, dt.datetime.now(dt.UTC), get_settings())
    if any(new and severity == "critical" for _, new, severity in raised):
        from switchboard.tasks.orchestrator import trigger_poll

        trigger_poll()
    return {"insights": [insight_id for insight_id, _, _ in raised], "created": sum(1 for _, new, _ in raised if new)}
