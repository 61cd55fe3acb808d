"""Every periodic job in one readable table (name → task, schedule, queue), and how beat keeps it.

Intervals come from settings. Each entry expires after a few intervals, so a beat that ran
while no worker was up does not leave a pile of identical jobs behind.

Beat runs RedBeat's scheduler (`celery-redbeat`, made to ride out Redis restarts in
`switchboard/beat.py`): the schedule and a leader lock live in the shared Redis. Any number of
`switchboard beat` processes may run for availability; only the one holding the lock sends
jobs, so each fires once per tick. The lock is extended every tick and expires
SWITCHBOARD_BEAT_LOCK_TIMEOUT_S (25 s) after its holder dies, when a waiting beat takes over;
beat wakes at least five times per lock period to extend it.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from switchboard.settings import Settings

WATCHED_SOURCES = ("stripe", "hubspot", "calls")


def beat_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for RedBeat: its Redis (the shared one), keys under the queue prefix."""
    from switchboard.errors import ConfigurationError
    from switchboard.integrations.resilience import redis_url

    try:
        url = redis_url(settings)
    except ConfigurationError:  # no Redis at all: Celery's own scheduler, and one beat only
        return {}
    return {
        "beat_scheduler": "switchboard.beat:Scheduler",
        "beat_max_loop_interval": max(1, int(settings.beat_lock_timeout_s // 5)),
        "redbeat_redis_url": url,
        "redbeat_key_prefix": f"{settings.queue_prefix}redbeat",
        "redbeat_lock_timeout": int(settings.beat_lock_timeout_s),
    }


# The jobs that come round every few seconds or minutes. Their Celery lines ("Sending due task",
# "received", "succeeded") and the lifecycle hook's line for a success are logged at DEBUG
# (`logs.QuietPeriodic`): an idle deployment logs nearly nothing at INFO. What such a job does
# (dispatches, insights raised, gaps found) and any failure still log at INFO or above.
QUIET_TASKS = frozenset({
    "switchboard.tasks.orchestrator.poll_insights", "switchboard.tasks.ingest.sweep_received",
    "switchboard.tasks.backfill.detect_gaps", "switchboard.tasks.knowledge.sweep", "switchboard.tasks.watch.scan",
})  # fmt: skip


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule for ``settings``."""
    poll = settings.poll_insights_interval_s
    scan = settings.watcher_scan_interval_s
    schedule: dict[str, dict[str, Any]] = {
        "orchestrator-poll-insights": {
            "task": "switchboard.tasks.orchestrator.poll_insights",
            "schedule": poll,
            "options": {"expires": poll * 5},
        },
    }
    schedule["ingest-sweep-received"] = {
        "task": "switchboard.tasks.ingest.sweep_received",
        "schedule": 60.0,
        "options": {"expires": 300},
    }
    gaps = settings.gap_detection_interval_s
    schedule["ingest-detect-gaps"] = {
        "task": "switchboard.tasks.backfill.detect_gaps",
        "schedule": gaps,
        "options": {"expires": gaps},
    }
    sweep = settings.knowledge_sweep_interval_s
    schedule["knowledge-sweep"] = {
        "task": "switchboard.tasks.knowledge.sweep",
        "schedule": sweep,
        "options": {"expires": sweep, "queue": settings.queue_name("low")},
    }
    schedule["nightly-eval"] = {
        "task": "switchboard.tasks.evals.nightly",
        "schedule": crontab(hour=settings.eval_cron_hour, minute=settings.eval_cron_minute),
        "args": (settings.eval_nightly_suite,),
        "options": {"expires": 3600},
    }
    for source in WATCHED_SOURCES:
        schedule[f"watcher-scan-{source}"] = {
            "task": "switchboard.tasks.watch.scan",
            "schedule": scan,
            "args": ([source],),
            "options": {"expires": scan},
        }
    return schedule
