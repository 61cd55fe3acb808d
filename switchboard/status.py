"""`switchboard status`: is this deployment working, and if not, what is missing.

Checks, each with its own verdict: the database (reachable, migrated to this code's head), the
broker (reachable), the workers per queue (Celery's `inspect active_queues`), beat (a periodic
job ran on a worker within a few poll intervals: the workers' task counters move), queue
depths, and the providers each agent uses with which keys are set — never their values.

Exit codes: 0 every check ok; 1 degraded (a queue without a worker, beat not seen, migrations
behind); 2 down (the database or the broker does not answer).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url

from switchboard.settings import QUEUE_LEVELS, Settings

OK, DEGRADED, DOWN = "ok", "degraded", "down"
BEAT_TASK = "switchboard.tasks.orchestrator.poll_insights"


@dataclass
class Check:
    name: str
    verdict: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def _where(url: str) -> str:
    """The database's driver, host and name — no user, no password."""
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return f"sqlite {parsed.database}"
    return f"{parsed.get_backend_name()} {parsed.host or 'localhost'}:{parsed.port or ''}/{parsed.database}"


def check_database(settings: Settings) -> Check:
    from switchboard.db import migrate

    where = _where(settings.database_url)
    try:
        current, head = migrate.current_revision(settings.database_url), migrate.head_revision()
    except Exception as error:
        return Check("database", DOWN, f"{where}: does not answer ({type(error).__name__})")
    if current != head:
        return Check("database", DEGRADED, f"{where}: at revision {current or 'none'}, this code needs {head}: "
                     "run `switchboard migrate`", {"revision": current, "head": head})  # fmt: skip
    return Check("database", OK, f"{where}: migrated (revision {current})", {"revision": current})


def check_broker(settings: Settings) -> Check:
    from switchboard.celery_app import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as error:
        return Check("broker", DOWN, f"does not answer ({type(error).__name__})")
    return Check("broker", OK, "answers")


def _task_totals(inspect: Any) -> dict[str, int]:
    stats = inspect.stats() or {}
    return {worker: int((info.get("total") or {}).get(BEAT_TASK, 0)) for worker, info in stats.items()}


def check_workers_and_beat(settings: Settings, wait_s: float) -> list[Check]:
    from switchboard.celery_app import app

    inspect = app.control.inspect(timeout=1.5)
    active = inspect.active_queues() or {}
    per_queue: dict[str, list[str]] = {settings.queue_name(level): [] for level in QUEUE_LEVELS}
    for worker, queues in active.items():
        for queue in queues or []:
            if queue.get("name") in per_queue:
                per_queue[queue["name"]].append(worker)
    missing = [name for name, workers in per_queue.items() if not workers]
    shown = "; ".join(f"{name}: {', '.join(sorted(workers)) or 'none'}" for name, workers in per_queue.items())
    workers = Check("workers", DEGRADED if missing else OK,
                    (f"no worker consumes {', '.join(missing)} — " if missing else "") + shown,
                    {"per_queue": per_queue})  # fmt: skip
    if not active:
        return [workers, Check("beat", DEGRADED, "unknown: no worker answers, so no periodic job can run")]
    before = _task_totals(inspect)
    time.sleep(wait_s)
    after = _task_totals(inspect)
    ran = sum(after.get(w, 0) - before.get(w, 0) for w in after)
    if ran > 0:
        return [workers, Check("beat", OK, f"periodic jobs arrive ({ran} insight poll(s) in {wait_s:.0f} s)")]
    return [workers, Check("beat", DEGRADED, f"no insight poll ran in {wait_s:.0f} s: is `switchboard beat` running?")]


def check_queues(settings: Settings) -> Check:
    from switchboard.api.metrics import queue_depths

    try:
        depths = queue_depths(settings)
    except Exception as error:
        return Check("queues", DOWN, f"cannot be read ({type(error).__name__})")
    return Check("queues", OK, ", ".join(f"{name} {depth}" for name, depth in depths.items()), {"depths": depths})


def check_providers(settings: Settings) -> Check:
    """Which provider each agent uses and which keys are set (set or not — never a value)."""
    from switchboard.agents.llm import AGENTS

    keys = {
        "SWITCHBOARD_ANTHROPIC_API_KEY": settings.anthropic_api_key,
        "SWITCHBOARD_GEMINI_API_KEY": settings.gemini_api_key,
        "SWITCHBOARD_STRIPE_API_KEY": settings.stripe_api_key,
        "SWITCHBOARD_STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "SWITCHBOARD_HUBSPOT_ACCESS_TOKEN": settings.hubspot_access_token,
        "SWITCHBOARD_HUBSPOT_CLIENT_SECRET": settings.hubspot_client_secret,
        "SWITCHBOARD_CALLS_API_KEY": settings.calls_api_key,
        "SWITCHBOARD_OPERATOR_KEYS": settings.operator_keys or None,
        "SWITCHBOARD_INGEST_KEYS": settings.ingest_keys or None,
    }  # fmt: skip
    present = {name: value is not None for name, value in keys.items()}
    agents = {agent: str(getattr(settings, f"{agent}_provider")) for agent in AGENTS}
    needs = {"anthropic": "SWITCHBOARD_ANTHROPIC_API_KEY", "gemini": "SWITCHBOARD_GEMINI_API_KEY"}
    lacking = sorted({needs[p] for p in agents.values() if p in needs and not present[needs[p]]})
    detail = ", ".join(f"{agent} {provider}" for agent, provider in agents.items())
    detail += "; keys set: " + (", ".join(n.removeprefix("SWITCHBOARD_") for n, s in present.items() if s) or "none")
    if lacking:
        detail += f"; missing for the chosen providers: {', '.join(lacking)}"
    return Check("providers", DEGRADED if lacking else OK, detail, {"agents": agents, "keys_set": present})


def gather(settings: Settings, *, beat_wait_s: float | None = None) -> list[Check]:
    """Every check, in order; a down database or broker skips what needs it."""
    checks = [check_database(settings), check_broker(settings)]
    if checks[1].verdict == OK:
        wait = beat_wait_s if beat_wait_s is not None else min(10.0, settings.poll_insights_interval_s * 2 + 1)
        checks += check_workers_and_beat(settings, wait)
        checks.append(check_queues(settings))
    checks.append(check_providers(settings))
    return checks


def exit_code(checks: list[Check]) -> int:
    verdicts = {check.verdict for check in checks}
    return 2 if DOWN in verdicts else 1 if DEGRADED in verdicts else 0
