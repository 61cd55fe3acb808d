"""`switchboard standalone`: API + worker (all four queues) + beat on one machine.

With no configuration it also runs the embedded broker and uses SQLite under the data
directory. Each child runs in its own process group so that Ctrl-C reaches only this
supervisor, which then stops the children in order and leaves nothing behind.
"""

from __future__ import annotations

import logging
import signal
import subprocess

from switchboard.db import migrate
from switchboard.embedded import start_embedded_redis
from switchboard.processes import api_command, beat_argv, child_env, worker_commands
from switchboard.settings import QUEUE_LEVELS, Settings
from switchboard.supervisor import Child, Supervisor

log = logging.getLogger("switchboard.standalone")


def run_standalone(settings: Settings) -> int:
    """Run everything until SIGINT/SIGTERM (exit 0) or a child crashes (exit 1)."""
    supervisor = Supervisor()
    supervisor.install_signals()
    api_argv, api_env, dashboard_url = api_command(settings)  # refuses a bad exposure first
    broker: Child | None = None
    try:
        if settings.uses_embedded_broker:
            broker = Child("broker", start_embedded_redis(settings))
            log.info("embedded broker on %s", settings.embedded_redis_socket)
        before, after = migrate.upgrade(settings.database_url)
        log.info("database at revision %s (was %s)", after, before)
        env = child_env(settings)
        for name, argv in worker_commands(settings, list(QUEUE_LEVELS), name="standalone@%h"):
            supervisor.spawn(name, argv, env)
        supervisor.spawn("beat", beat_argv(settings), env)
        supervisor.spawn("api", api_argv, {**env, **api_env})
        log.info("API on http://%s:%d", settings.api_host, settings.api_port)
        # printed, not logged: the link may carry the local operator key, which no log line holds
        print(f"Dashboard: {dashboard_url}", flush=True)
        return supervisor.watch(also=[broker] if broker else [])
    finally:
        # API first (no new work accepted), then beat, then the workers, the broker last.
        supervisor.stop_all()
        if broker is not None:
            broker.signal(signal.SIGTERM)
            try:
                broker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                broker.signal(signal.SIGKILL)
                broker.process.wait()
