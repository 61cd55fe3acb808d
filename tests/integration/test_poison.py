"""Poison messages end in a recorded dead letter or a recorded permanent failure, never in a
redelivery loop: sent raw onto a real queue, consumed by the real worker."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis
from kombu import Connection, Exchange, Producer
from sqlalchemy import select

from switchboard.celery_app import app
from switchboard.db.models import DeadLetter
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from tests.support.runs import empty_tables


def _protocol2(task: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    task_id = str(uuid.uuid4())
    headers = {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
               "group": None, "retries": 0, "eta": None, "expires": None, "argsrepr": "", "kwargsrepr": ""}  # fmt: skip
    body = json.dumps([args, kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    return body, headers


def _dead_letters() -> list[DeadLetter]:
    with session_scope() as session:
        return list(session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


def _wait_dead_letters(count: int, timeout_s: float = 30.0) -> list[DeadLetter]:
    deadline = time.monotonic() + timeout_s
    rows: list[DeadLetter] = []
    while time.monotonic() < deadline:
        rows = _dead_letters()
        if len(rows) >= count:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"expected {count} dead letters, got {[(r.reason, r.task_name) for r in rows]}")


def test_poison_messages_are_dead_lettered_once_and_never_redelivered(
    celery_worker: object, database_url: str, redis_url: str
) -> None:
    empty_tables(database_url)
    with session_scope() as session:
        session.query(DeadLetter).delete()
    settings = get_settings()
    queue = settings.queue_name("default")
    exchange = Exchange(app.conf.task_default_exchange, type="direct")
    secret = "sk_live_" + "9" * 24  # a credential inside a poison body must not reach the row
    unknown_body, unknown_headers = _protocol2("switchboard.no_such_task", [], {"token": secret})
    orphan_body, orphan_headers = _protocol2(
        "switchboard.agents.watcher", [{"schema_version": 1, "bogus": True}], {"run_id": str(uuid.uuid4())}
    )
    with Connection(redis_url) as connection:
        producer = Producer(connection)
        send = {"exchange": exchange, "routing_key": queue, "declare": [], "content_encoding": "utf-8"}
        producer.publish(b"{not json at all " + secret.encode(), content_type="application/json",
                         headers={"task": "switchboard.probe", "id": "undecodable-1"}, **send)  # fmt: skip
        producer.publish(b"\x80\x04K\x01.", content_type="application/x-python-serialize",
                         headers={"task": "switchboard.probe", "id": "pickled-1"}, **send)  # fmt: skip
        producer.publish(unknown_body, content_type="application/json", headers=unknown_headers, **send)
        producer.publish(orphan_body, content_type="application/json", headers=orphan_headers, **send)

    rows = _wait_dead_letters(4)
    reasons = {row.task_id: row.reason for row in rows}
    assert "undecodable message" in reasons["undecodable-1"]
    # A pickle is refused before decoding (accept_content is JSON only), then dead-lettered.
    assert "ContentDisallowed" in reasons["pickled-1"] and "x-python-serialize" in reasons["pickled-1"]
    assert reasons[unknown_headers["id"]].startswith("unknown task 'switchboard.no_such_task'")
    assert "unknown run" in reasons[orphan_headers["id"]] and "ContractViolation" in reasons[orphan_headers["id"]]
    for row in rows:
        assert secret not in (row.body_excerpt or "") and secret not in json.dumps(row.headers)

    # Acknowledged, not parked: nothing waits in the queue or in the unacked index for redelivery,
    # and a while later there is still exactly one record per message.
    client = redis.Redis.from_url(redis_url)
    time.sleep(2)
    assert sum(client.llen(key) for key in client.scan_iter(f"{queue}*")) == 0
    unacked = [json.loads(raw)[0] for raw in client.hvals("unacked")]
    assert not [m for m in unacked if m.get("headers", {}).get("id") in reasons], unacked
    client.close()
    assert len(_dead_letters()) == 4

    # Operators see them: `switchboard dead-letters --json` lists exactly these four.
    from typer.testing import CliRunner

    from switchboard.cli import cli

    listed = CliRunner().invoke(cli, ["dead-letters", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {row["task_id"] for row in json.loads(listed.stdout)} == set(reasons)
