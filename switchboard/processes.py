"""Command lines of the real programs Switchboard runs: Celery worker/beat/flower and uvicorn.

The CLI wrappers exec these, `standalone` supervises them, and docker-compose runs the same
`switchboard …` commands, so there is one definition of each process.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from typing import Any

from switchboard.errors import ConfigurationError
from switchboard.settings import Settings

CELERY_APP = "switchboard.celery_app:app"


def stop_group(process: subprocess.Popen[Any], grace_s: float = 30.0) -> None:
    """Stop a child started in its own session: SIGTERM its process group (its children too, even
    when the child itself has exited), SIGKILL the group after ``grace_s``."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group is gone
        process.wait()
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus the resolved URLs, so children agree with the parent
    even when their working directory or defaults would differ."""
    env = dict(os.environ)
    env["SWITCHBOARD_DATA_DIR"] = str(settings.data_dir)
    env["SWITCHBOARD_DATABASE_URL"] = settings.database_url
    env["SWITCHBOARD_BROKER_URL"] = settings.broker_url
    env["SWITCHBOARD_RESULT_BACKEND"] = settings.result_backend
    return env


def _celery(*args: str, settings: Settings | None = None) -> list[str]:
    # With JSON logs a service's output is JSON only: Celery's start-up banner (-q) is left out.
    quiet = ["-q"] if settings is not None and settings.log_format == "json" else []
    return [sys.executable, "-m", "celery", "-A", CELERY_APP, *quiet, *args]


def worker_argv(
    settings: Settings,
    queue_levels: list[str],
    *,
    name: str | None = None,
    concurrency: int | None = None,
    pool: str | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """`celery worker` consuming the given queue levels (critical, high, default, low), on the
    configured pool (threads unless SWITCHBOARD_WORKER_POOL or ``pool`` says prefork)."""
    queues = ",".join(settings.queue_name(level) for level in queue_levels)
    node = name or f"{'-'.join(queue_levels)}@{socket.gethostname()}"
    chosen = pool or settings.worker_pool
    slots = concurrency or settings.model_copy(update={"worker_pool": chosen}).concurrency
    argv = _celery("worker", "--queues", queues, "--hostname", node, "--loglevel", settings.log_level,
                   "--pool", chosen, "--concurrency", str(slots), settings=settings)  # fmt: skip
    return argv + list(extra or [])


def worker_commands(
    settings: Settings,
    queue_levels: list[str],
    *,
    name: str | None = None,
    concurrency: int | None = None,
    pool: str | None = None,
    processes: int | None = None,
) -> list[tuple[str, list[str]]]:
    """The Celery worker processes of one `switchboard worker`: (label, argv) each. On the
    thread pool, one per CPU by default (each with its own consumer loop and GIL); node names
    then get `-1`, `-2`, … before the `@` so each is its own node in Flower and in control."""
    chosen = pool or settings.worker_pool
    count = processes or settings.model_copy(update={"worker_pool": chosen}).processes
    node = name or f"{'-'.join(queue_levels)}@{socket.gethostname()}"
    if count == 1:
        return [("worker", worker_argv(settings, queue_levels, name=node, concurrency=concurrency, pool=chosen))]
    base, _, host = node.partition("@")
    return [
        (f"worker-{k}", worker_argv(settings, queue_levels, name=f"{base}-{k}@{host or socket.gethostname()}",
                                    concurrency=concurrency, pool=chosen))
        for k in range(1, count + 1)
    ]  # fmt: skip


def beat_argv(settings: Settings, extra: list[str] | None = None) -> list[str]:
    """`celery beat` with its schedule state kept under the data directory."""
    schedule = settings.data_dir / "celerybeat-schedule"
    return _celery("beat", "--schedule", str(schedule), "--loglevel", settings.log_level, settings=settings) + list(
        extra or []
    )


LOOPBACK_BINDS = ("127.0.0.1", "::1", "localhost")


def api_command(settings: Settings, extra: list[str] | None = None) -> tuple[list[str], dict[str, str], str]:
    """uvicorn serving the API factory: its argv, its extra environment, and the dashboard URL
    to print.

    With no operator key configured the API may bind only to loopback, and gets a random local
    operator key (`SWITCHBOARD_LOCAL_OPERATOR_KEY`) that the URL carries in its fragment: the
    operator's browser keeps it, and a page on another origin has nothing to send. Forwarding
    headers are believed only from SWITCHBOARD_TRUSTED_PROXIES (uvicorn would otherwise trust
    127.0.0.1, or every peer with FORWARDED_ALLOW_IPS=*).
    """
    env: dict[str, str] = {}
    host = f"[{settings.api_host}]" if ":" in settings.api_host else settings.api_host
    url = f"http://{host}:{settings.api_port}/dashboard"
    if not settings.operator_keys:
        if settings.api_host not in LOOPBACK_BINDS:
            raise ConfigurationError(
                f"SWITCHBOARD_API_HOST={settings.api_host} serves the API beyond this machine: "
                "set SWITCHBOARD_OPERATOR_KEYS first (or bind to 127.0.0.1)"
            )
        key = settings.local_operator_key.get_secret_value() if settings.local_operator_key else ""
        key = key or secrets.token_urlsafe(32)
        env["SWITCHBOARD_LOCAL_OPERATOR_KEY"] = key
        url += f"#key={key}"
    if settings.trusted_proxies:
        proxies = ["--proxy-headers", "--forwarded-allow-ips", ",".join(settings.trusted_proxies)]
    else:
        proxies = ["--no-proxy-headers"]
    argv = [
        sys.executable, "-m", "uvicorn", "switchboard.api.app:create_served_app", "--factory",
        "--host", settings.api_host, "--port", str(settings.api_port),
        "--log-level", settings.log_level.lower(), *proxies,
        *(extra or []),
    ]  # fmt: skip
    return argv, env, url


def flower_command(settings: Settings, extra: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Flower's argv and extra environment: persistent state, and basic auth when configured —
    without it, Flower listens on loopback only.

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
    else:  # no credentials: only this machine may see the tasks (and their arguments) and control workers
        argv.append("--address=127.0.0.1")
    return argv + list(extra or []), env
