"""Children started together and stopped together: `switchboard standalone` (API, worker
processes, beat) and a `switchboard worker` of several Celery processes.

A stop signal (SIGINT/SIGTERM) or any child's exit stops them all: SIGTERM to each (Celery's
warm shutdown lets running tasks finish; a step cut off later is redelivered, acks are late),
then SIGKILL after the grace period. Standalone gives each child its own process group, so
Ctrl-C reaches only the supervisor; a worker's children share the supervisor's group, so a
signal to the whole group (a terminal, `kill -- -PID`, a SIGKILL of the group) reaches every
Celery process, and none outlives it.
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

log = logging.getLogger("switchboard.supervisor")

STOP_GRACE_S = 20.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    own_group: bool = True

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.process.pid, signum)
            else:
                os.kill(self.process.pid, signum)


@dataclass
class Supervisor:
    own_groups: bool = True
    grace_s: float = STOP_GRACE_S
    children: list[Child] = field(default_factory=list)
    stopping: bool = False

    def install_signals(self) -> None:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)

    def _request_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stopping = True

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = subprocess.Popen(argv, env=env, start_new_session=self.own_groups, stdin=subprocess.DEVNULL)
        self.children.append(Child(name, process, self.own_groups))
        log.info("started %s (pid %d)", name, process.pid)

    def watch(self, also: list[Child] | None = None) -> int:
        """Until a stop signal (0) or a child's exit (1)."""
        while not self.stopping:
            for child in [*self.children, *(also or [])]:
                code = child.process.poll()
                if code is not None:
                    log.error("%s exited unexpectedly with code %s: stopping everything", child.name, code)
                    return 1
            time.sleep(0.2)
        return 0

    def stop_all(self) -> None:
        """Last started first (standalone: the API, then beat, then the workers)."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", child.name, self.grace_s)
            if child.own_group or child.process.poll() is None:  # a group may hold pool processes
                child.signal(signal.SIGKILL)
            child.process.wait()
        self.children.clear()


def supervise(commands: list[tuple[str, list[str]]], env: dict[str, str], grace_s: float) -> int:
    """Run ``commands`` in this process group until a stop signal (0) or one exits (1)."""
    supervisor = Supervisor(own_groups=False, grace_s=grace_s)
    supervisor.install_signals()
    try:
        for name, argv in commands:
            supervisor.spawn(name, argv, env)
        return supervisor.watch()
    finally:
        supervisor.stop_all()
