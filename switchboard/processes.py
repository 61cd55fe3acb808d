"""Command lines of the real programs Switchboard runs: Celery worker/beat/flower and uvicorn.

The CLI wrappers exec these, `standalone` supervises them, and docker-compose runs the same
`switchboard …` commands, so there is one definition of each process.
"""

from __future__ import annotations

import os
import socket
import sys

from switchboard.settings import Settings

CELERY_APP = "switchboard.celery_app:app"


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus the resolved URLs, so children agree with the parent
    even when their working directory or defaults would differ."""
    env = dict(os.environ)
    env["SWITCHBOARD_DATA_DIR"] = str(settings.data_dir)
    env["SWITCHBOARD_DATABASE_URL"] = settings.database_url
    env["SWITCHBOARD_BROKER_URL"] = settings.broker_url
    env["SWITCHBOARD_RESULT_BACKEND"] = settings.result_backend
    return env


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", CELERY_APP, *args]


def worker_argv(
    settings: Settings,
    queue_levels: list[str],
    *,
    name: str | None = None,
    concurrency: int | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """`celery worker` consuming the given queue levels (critical, high, default, low)."""
    queues = ",".join(settings.queue_name(level) for level in queue_levels)
    node = name or f"{'-'.join(queue_levels)}@{socket.gethostname()}"
    argv = _celery("worker", "--queues", queues, "--hostname", node, "--loglevel", settings.log_level)
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    return argv + list(extra or [])


def beat_argv(settings: Settings, extra: list[str] | None = None) -> list[str]:
    """`celery beat` with its schedule state kept under the data directory."""
    schedule = settings.data_dir / "celerybeat-schedule"
    return _celery("beat", "--schedule", str(schedule), "--loglevel", settings.log_level) + list(extra or [])


def api_argv(settings: Settings, extra: list[str] | None = None) -> list[str]:
    """uvicorn serving the API factory on the configured host and port."""
    return [
        sys.executable, "-m", "uvicorn", "switchboard.api.app:create_served_app", "--factory",
        "--host", settings.api_host, "--port", str(settings.api_port),
        "--log-level", settings.log_level.lower(),
        *(extra or []),
    ]  # fmt: skip


def flower_command(settings: Settings, extra: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Flower's argv and extra environment: persistent state, and basic auth when configured.

    The credentials travel in FLOWER_BASIC_AUTH, not argv, so `ps` never shows them.
    """
    argv = _celery(
        "flower",
        f"--port={settings.flower_port}",
        "--persistent=True",
        f"--db={settings.data_dir / 'flower.db'}",
    )
    env = {}
    if settings.flower_basic_auth is not None:
        env["FLOWER_BASIC_AUTH"] = settings.flower_basic_auth.get_secret_value()
    return argv + list(extra or []), env
