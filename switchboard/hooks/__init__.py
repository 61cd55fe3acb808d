"""Celery signal handlers: cross-cutting bookkeeping stays out of task bodies."""

from __future__ import annotations

from switchboard import tracing
from switchboard.hooks import lifecycle, metrics, runs

_connected = False


def connect_hooks() -> None:
    """Connect every signal handler once per process."""
    global _connected
    if not _connected:
        from switchboard.logs import connect_worker_logging

        lifecycle.connect()
        runs.connect()
        metrics.connect()
        connect_worker_logging()
        tracing.connect()
        _connected = True
