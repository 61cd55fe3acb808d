"""Two `switchboard beat` processes at once (for availability) fire each periodic job once per
tick: RedBeat's leader lock in Redis. Killing the leader hands the schedule to the standby once
the lock lapses — jobs resume, still once per tick."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from tests.support.env import worker_env

POLL_S = 1.0
LOCK_S = 6  # the leader lock's lapse (25 s by default), short so the takeover is quick to watch
POLL_TASK = "switchboard.tasks.orchestrator.poll_insights"


def _sent(client: redis.Redis, queue: str) -> int:
    """Poll messages beat has put on the (unconsumed) critical queue: every priority list of it."""
    names = [key for key in client.scan_iter(match=f"{queue}*") if not key.endswith(b"unacked")]
    return sum(int(client.llen(name)) for name in names if client.type(name) == b"list")


def test_two_beats_fire_each_job_once_and_the_standby_takes_over(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"b{uuid.uuid4().hex[:6]}."
    quiet = {f"SWITCHBOARD_{name}_INTERVAL_S": "3600" for name in ("WATCHER_SCAN", "GAP_DETECTION", "KNOWLEDGE_SWEEP")}
    env = worker_env(database_url, redis_url, tmp_path, prefix=prefix, SWITCHBOARD_LOG_FORMAT="text",
                     SWITCHBOARD_POLL_INSIGHTS_INTERVAL_S=str(POLL_S), SWITCHBOARD_LOG_LEVEL="INFO",
                     SWITCHBOARD_BEAT_LOCK_TIMEOUT_S=str(LOCK_S), **quiet)  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    queue = f"{prefix}critical"
    beats: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for n in (1, 2):
            log = tmp_path / f"beat-{n}.log"
            with log.open("wb") as handle:
                process = subprocess.Popen([sys.executable, "-m", "switchboard", "beat"], env=env, stdout=handle,
                                           stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            beats[process.pid] = (process, log)
            if n == 1:  # the first takes the lock; the second waits for it
                deadline = time.monotonic() + 30
                while "Acquired lock" not in log.read_text():
                    assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
        time.sleep(3)  # both running
        start = _sent(client, queue)
        time.sleep(10)
        both = _sent(client, queue) - start
        print(f"two beats, 10 s at one poll a {POLL_S:.0f} s: {both} polls sent")
        assert 8 <= both <= 12, both  # once per tick, not twice

        leader = next(pid for pid, (_p, log) in beats.items() if "Acquired lock" in log.read_text())
        standby = next(pid for pid in beats if pid != leader)
        assert "Acquired lock" not in beats[standby][1].read_text()
        os.killpg(leader, signal.SIGKILL)  # no release: the lock has to lapse
        beats[leader][0].wait(10)
        killed_at = time.monotonic()
        deadline = killed_at + LOCK_S + 30
        while "Acquired lock" not in beats[standby][1].read_text():
            assert time.monotonic() < deadline, beats[standby][1].read_text()
            time.sleep(0.5)
        took_over_s = time.monotonic() - killed_at
        start = _sent(client, queue)
        time.sleep(6)
        after = _sent(client, queue) - start
        print(f"standby took over {took_over_s:.0f} s after the leader was killed; then {after} polls in 6 s")
        assert took_over_s <= LOCK_S + 5
        assert 4 <= after <= 8, after

        # Redis loses everything (a restart without persistence): the lock and the schedule
        for key in client.scan_iter(match=f"{prefix}redbeat*"):
            client.delete(key)
        time.sleep(LOCK_S)
        start = _sent(client, queue)
        time.sleep(6)
        resumed = _sent(client, queue) - start
        survivor = beats[standby][1].read_text()
        print(f"after Redis lost the schedule and the lock: {resumed} polls in 6 s")
        assert beats[standby][0].poll() is None, survivor[-2000:]
        assert 4 <= resumed <= 8, (resumed, survivor[-2000:])
        assert "the schedule is gone from Redis" in survivor
    finally:
        for process, _log in beats.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(20)
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
