"""The Redis broker transport, with one client per channel instead of one per command.

kombu's Redis channel builds a new `redis.Redis` object for every publish, ack and delivery
(`Channel.conn_or_acquire` -> `_create_client`). redis-py 8's constructor costs ~140 us of Python
(more than the round trip it serves), paid under the GIL by the worker's consumer loop and
every pool thread: with 64 threads it was an eighth of the process's GIL time (py-spy --gil),
and bench/llm_bound.py went from 19.7 to 22.8 runs/s on one process when it was reused. A
`redis.Redis` is safe to share between threads (each command checks a connection out of the
channel's pool), so one per pool does the same work. Subclassing the transport is kombu's own
extension point (`broker_transport` takes a class path); nothing else of it changes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from kombu.transport import redis as kombu_redis

# Schemes kombu serves with its plain Redis transport (Sentinel has its own channel class).
REDIS_SCHEMES = ("redis", "rediss", "redis+socket")
TRANSPORT = "switchboard.broker:Transport"


class Channel(kombu_redis.Channel):
    _shared: tuple[Any, Any] | None = None  # (pool, client): a new pool (after fork) gets a new client

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's BRPOP/LISTEN connections stay kombu's own
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        if self._shared is None or self._shared[0] is not pool:
            self._shared = (pool, super()._create_client())  # type: ignore[no-untyped-call]
        return self._shared[1]


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """The transport class for ``broker_url``: this one for Redis, kombu's choice otherwise."""
    return TRANSPORT if urlparse(broker_url).scheme in REDIS_SCHEMES else None
