"""The Celery application: queues, routes, reliability defaults and signal-hook wiring.

Every setting below is deliberate; the comments say why. Workers start with
``switchboard worker --queues critical,high`` (reserved capacity) or ``default,low``.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from switchboard.broker import transport_for
from switchboard.settings import QUEUE_LEVELS, Settings, get_settings

# Modules that define tasks; a worker imports them all at start.
TASK_MODULES = [
    "switchboard.tasks.probe",
    "switchboard.tasks.steps",
    "switchboard.tasks.watch",
    "switchboard.tasks.actions",
    "switchboard.tasks.orchestrator",
    "switchboard.tasks.integrations",
    "switchboard.tasks.evals",
    "switchboard.tasks.ingest",
    "switchboard.tasks.backfill",
    "switchboard.tasks.knowledge",
]

# Redis message priorities (0 is most urgent) and the kombu steps that keep them apart.
DISPATCHER_PRIORITY = 0
PRIORITY_STEPS = [0, 1, 3, 5, 7, 9]

# Task name patterns → queue level. Agent steps are not routed here: the orchestrator picks
# their queue per run from severity and SLA slack and passes it explicitly.
ROUTES_BY_LEVEL = {
    # The dispatcher must never wait behind agent work: it rides the critical queue at
    # DISPATCHER_PRIORITY, ahead of every agent step (critical runs start at priority 1).
    "switchboard.tasks.orchestrator.*": "critical",
    "switchboard.tasks.actions.*": "high",  # a human is waiting on an approved action
    "switchboard.tasks.watch.*": "default",
    "switchboard.tasks.ingest.*": "default",
    "switchboard.tasks.integrations.*": "default",
    "switchboard.tasks.backfill.*": "low",
    "switchboard.tasks.knowledge.*": "low",  # re-embedding is background work
    "switchboard.tasks.evals.*": "low",
}


def build_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for ``settings`` (a plain dict, so tests can inspect it)."""
    exchange = Exchange(f"{settings.queue_prefix}switchboard", type="direct")
    queues = [
        Queue(settings.queue_name(level), exchange, routing_key=settings.queue_name(level)) for level in QUEUE_LEVELS
    ]
    return {
        "broker_url": settings.broker_url,
        "broker_transport": transport_for(settings.broker_url),
        "result_backend": settings.result_backend,
        "task_queues": queues,
        "task_default_queue": settings.queue_name("default"),
        "task_default_exchange": exchange.name,
        "task_default_routing_key": settings.queue_name("default"),
        "task_routes": {
            pattern: {
                "queue": settings.queue_name(level),
                **(
                    {"priority": DISPATCHER_PRIORITY} if "orchestrator" in pattern and settings.queue_priorities else {}
                ),
            }
            for pattern, level in ROUTES_BY_LEVEL.items()
        },
        # JSON only: messages carry pydantic contracts dumped to JSON or ids, never pickles
        # (a pickle from the broker is remote code execution).
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # At-least-once: acknowledge after the task finishes, and re-queue the message when
        # the worker process dies mid-task (SIGKILL, OOM). Side effects are made effect-once
        # by idempotency keys, so a redelivery is safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A task that *raised* is acknowledged: retries are explicit (self.retry), so a poison
        # message ends as a recorded failure instead of a redelivery loop.
        "task_acks_on_failure_or_timeout": True,
        # One message per slot (thread or process): agent steps are slow LLM calls, and a
        # message prefetched beyond the free slots would sit behind one while another worker idles.
        "worker_prefetch_multiplier": 1,
        # Redis priorities: 0 is most urgent. Within one queue, urgent runs go first.
        "task_default_priority": 5,
        "broker_transport_options": {
            # Redis re-delivers an unacked message after this; it must exceed the longest task
            # and the longest countdown/ETA (ETA messages stay unacked in the worker).
            "visibility_timeout": settings.visibility_timeout_s,
            # A worker listening on several queues drains them in the listed order
            # (critical before high, default before low) instead of round-robin.
            "queue_order_strategy": "priority",
            # One Redis list per step: 0 the dispatcher, 1 critical runs, 3 high, 5 default, 7 low
            # (kombu rounds a priority down to its step, so the defaults 0/3/6/9 would merge 0 and 1).
            "priority_steps": PRIORITY_STEPS,
            # How often a worker sweeps for messages whose visibility timeout ran out (left
            # unacked by a worker that died): a tenth of the timeout, at most every 10 s.
            "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 10)),
            "unacked_restore_throttle": 1,
        },
        "result_backend_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "result_expires": settings.result_expires_s,
        # A result write that meets a Redis restart is retried (exponential backoff, up to ~20 s)
        # instead of failing a task whose work is already done.
        "result_backend_always_retry": True,
        "result_backend_max_retries": 12,
        "result_backend_max_sleep_between_retries_ms": 4000,
        "task_time_limit": settings.task_time_limit_s,
        # Celery enforces both limits on prefork only; the task base keeps the soft one on every
        # pool (switchboard/timelimit.py).
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        # Events feed Flower's live view.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        # Publishing (a run's first step, the next link of a chain, a retry) rides out a broker
        # restart or failover of up to ~30 s instead of failing after Celery's default ~0.6 s: a
        # retry that cannot be published is rejected, and its run fails (bench/chaos.py saw it).
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 20,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 2.0,
        },
        # Workers start before the broker in docker-compose and after a Redis restart: keep
        # trying instead of exiting.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # Let a task that is running when the broker connection drops finish, and ack it over
        # the new connection. Cancelling it (the Celery 6 default) loses it on Redis: the cancel
        # path acknowledges the terminated request, and the message never comes back (bench/chaos.py
        # lost runs that way on a Redis restart). A message whose ack does not arrive is restored
        # after the visibility timeout; the step's stored output makes that second delivery a no-op.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.concurrency,
        "worker_hijack_root_logger": False,
        # Undecodable messages are recorded in dead_letters before Celery acknowledges them.
        "worker_consumer": "switchboard.dead_letters:DeadLetterConsumer",
        "timezone": "UTC",
        "enable_utc": True,
        "include": TASK_MODULES,
    }


def create_celery(settings: Settings) -> Celery:
    """A configured Celery app with the beat table and signal hooks attached."""
    from switchboard import dead_letters
    from switchboard.beat_schedule import beat_config, build_beat_schedule
    from switchboard.hooks import connect_hooks

    celery = Celery("switchboard")
    celery.conf.update(build_config(settings))
    celery.conf.beat_schedule = build_beat_schedule(settings)
    celery.conf.update(beat_config(settings))
    connect_hooks()
    dead_letters.connect()
    return celery


app = create_celery(get_settings())
