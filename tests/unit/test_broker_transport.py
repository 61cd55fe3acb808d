"""The Redis transport shares one client per channel pool; other brokers keep kombu's choice."""

from __future__ import annotations

import threading

from kombu import Connection

from switchboard.broker import TRANSPORT, transport_for
from switchboard.processes import worker_commands
from switchboard.settings import Settings


def test_redis_urls_get_the_shared_client_transport_and_others_keep_kombus() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") == TRANSPORT
    assert transport_for("rediss://h:6380/0") == TRANSPORT
    assert transport_for("redis+socket:///tmp/r.sock") == TRANSPORT
    assert transport_for("amqp://guest@localhost//") is None
    assert transport_for("sentinel://h:26379") is None


def test_one_client_per_pool_serves_many_threads(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as connection:
        channel = connection.default_channel
        client = channel._create_client()
        assert channel._create_client() is client
        queue = connection.SimpleQueue("switchboard-broker-test")
        errors: list[BaseException] = []

        def publish(n: int) -> None:
            try:
                for k in range(50):
                    queue.put({"n": n, "k": k})
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        got = sorted((m.payload["n"], m.payload["k"]) for m in (queue.get(timeout=5) for _ in range(400)))
        assert got == sorted((n, k) for n in range(8) for k in range(50))
        queue.clear()
        queue.close()
        channel._disconnect_pools()  # after a fork: a new pool, so a new client
        assert channel._create_client() is not client


def test_the_worker_runs_one_named_node_per_process_on_threads_and_one_on_prefork() -> None:
    settings = Settings(worker_processes=3)
    commands = worker_commands(settings, ["default", "low"], name="w@box")
    hostnames = [argv[argv.index("--hostname") + 1] for _, argv in commands]
    assert hostnames == ["w-1@box", "w-2@box", "w-3@box"]
    assert all(argv[argv.index("--concurrency") + 1] == "32" for _, argv in commands)
    assert all(argv[argv.index("--pool") + 1] == "threads" for _, argv in commands)
    prefork = worker_commands(Settings(), ["low"], name="w@box", pool="prefork")
    assert [argv[argv.index("--hostname") + 1] for _, argv in prefork] == ["w@box"]
    assert Settings(worker_pool="threads").processes >= 1
