"""Celery signal handlers: cross-cutting bookkeeping stays out of task bodies."""

from __future__ import annotations

from switchboard.hooks import lifecycle, runs

_connected = False


def connect_hooks() -> None:
    """Connect every signal handler once per process."""
    global _connected
    if not _connected:
        lifecycle.connect()
        runs.connect()
        _connected = True
