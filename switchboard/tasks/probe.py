"""A probe task: proves a worker consumes a given queue (used by `switchboard probe` and tests)."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import Task

from switchboard.celery_app import app


@app.task(name="switchboard.probe", bind=True)
def probe(self: Task[Any, Any]) -> dict[str, Any]:
    """Report which worker process and queue ran this message."""
    delivery = self.request.delivery_info or {}
    return {
        "hostname": self.request.hostname or socket.gethostname(),
        "pid": os.getpid(),
        "queue": delivery.get("routing_key"),
    }
