"""`switchboard standalone`: API + worker (all four queues) + beat on one machine.

With no configuration it also runs the embedded broker and uses SQLite under the data
directory. Each child runs in its own process group so that Ctrl-C reaches only this
supervisor, which then stops the children in order and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from types import FrameType

from switchboard.db import migrate
from switchboard.embedded import start_embedded_redis
from switchboard.processes import api_command, beat_argv, child_env, worker_argv
from switchboard.settings import QUEUE_LEVELS, Settings

log = logging.getLogger("switchboard.standalone")

STOP_GRACE_S = 20.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


@dataclass
class Supervisor:
    settings: Settings
    children: list[Child] = field(default_factory=list)
    broker: Child | None = None
    stopping: bool = False

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(argv, env=env, start_new_session=True, stdin=subprocess.DEVNULL)
        self.children.append(Child(name, process))
        log.info("started %s (pid %d)", name, process.pid)

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        """Start everything, wait for a stop signal or a crash, stop everything; exit code."""
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        api_argv, api_env, dashboard_url = api_command(self.settings)  # refuses a bad exposure first
        try:
            if self.settings.uses_embedded_broker:
                self.broker = Child("broker", start_embedded_redis(self.settings))
                log.info("embedded broker on %s", self.settings.embedded_redis_socket)
            before, after = migrate.upgrade(self.settings.database_url)
            log.info("database at revision %s (was %s)", after, before)
            env = child_env(self.settings)
            self._spawn("worker", worker_argv(self.settings, list(QUEUE_LEVELS), name="standalone@%h"), env)
            self._spawn("beat", beat_argv(self.settings), env)
            self._spawn("api", api_argv, {**env, **api_env})
            log.info("API on http://%s:%d", self.settings.api_host, self.settings.api_port)
            # printed, not logged: the link may carry the local operator key, which no log line holds
            print(f"Dashboard: {dashboard_url}", flush=True)
            return self._watch()
        finally:
            self._stop_all()

    def _watch(self) -> int:
        while not self.stopping:
            for child in self.children:
                code = child.process.poll()
                if code is not None:
                    log.error("%s exited unexpectedly with code %s: stopping everything", child.name, code)
                    return 1
            if self.broker and self.broker.process.poll() is not None:
                log.error("embedded broker exited with code %s", self.broker.process.returncode)
                return 1
            time.sleep(0.2)
        return 0

    def _stop_all(self) -> None:
        # API first (no new work accepted), then beat, then the worker (warm shutdown lets the
        # running tasks finish or be re-queued), the broker last.
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", child.name, STOP_GRACE_S)
            # Pool processes of the worker live in the same group: make sure none survive.
            child.signal_group(signal.SIGKILL)
            child.process.wait()
        if self.broker is not None:
            self.broker.signal_group(signal.SIGTERM)
            try:
                self.broker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.broker.signal_group(signal.SIGKILL)
                self.broker.process.wait()
        self.children.clear()
        self.broker = None


def run_standalone(settings: Settings) -> int:
    """Run the supervisor until SIGINT/SIGTERM (exit 0) or a child crashes (exit 1)."""
    return Supervisor(settings).run()
