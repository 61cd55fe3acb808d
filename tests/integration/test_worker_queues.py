"""A real in-process worker consumes each of the four queues."""

from __future__ import annotations

import os

from switchboard.settings import QUEUE_LEVELS, get_settings
from switchboard.tasks.probe import probe


def test_probe_routed_to_each_queue_runs_in_the_worker(celery_worker: object) -> None:
    settings = get_settings()
    for level in QUEUE_LEVELS:
        queue = settings.queue_name(level)
        result = probe.apply_async(queue=queue).get(timeout=20)
        assert result["queue"] == queue
        # threads pool: the in-process worker runs in this very process
        assert result["pid"] == os.getpid()
