"""Beat's scheduler: RedBeat (`celery-redbeat`), which keeps the schedule and a leader lock in
Redis, riding out what a Redis restart does to them.

RedBeat alone stops for good when Redis loses its keys (a restart without persistence, a
failover): extending the vanished lock raises and beat exits, and a restarted beat would find
no schedule until `setup_schedule` ran again. Here a lost lock is taken back when it is free (or
beat waits as a standby when another beat took it), a vanished schedule is written again from
the beat table, and a Redis that does not answer is retried every second instead of ending beat.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis

log = logging.getLogger("switchboard.beat")
RETRY_S = 1.0


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if self.lock is not None and not self._leading():
                return float(self.max_interval)  # a standby: another beat holds the lock
            if not get_redis(self.app).exists(self.app.redbeat_conf.schedule_key):
                log.warning("beat: the schedule is gone from Redis (restarted without persistence?): stored again")
                self.setup_schedule()
            return float(super().tick(*args, **kwargs))
        except (redis.ConnectionError, redis.TimeoutError) as error:
            log.warning("beat: Redis does not answer (%s): trying again in %.0f s", type(error).__name__, RETRY_S)
            return RETRY_S
        except redis.exceptions.LockError:  # lost between the check and the extension: look again
            return RETRY_S

    def _leading(self) -> bool:
        """Whether this beat holds the lock — taking it back when it vanished and nobody has it."""
        if self.lock.owned():
            return True
        if self.lock.acquire(blocking=False):
            log.warning("beat: the leader lock had lapsed or vanished: this beat holds it again")
            return True
        return False
