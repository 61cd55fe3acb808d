"""Scale-out: workers on separate "machines" (network namespaces with their own addresses) share
one Postgres and one Redis, and the work spreads across them.

This is the README's "several machines" section, done for real: each namespace only reaches
the services through its link to the host (10.213.N.1), sets SWITCHBOARD_DATABASE_URL and
SWITCHBOARD_BROKER_URL to that host and runs `switchboard worker --queues default,low`.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from switchboard.settings import get_settings
from switchboard.tasks.runs import dispatch_insight
from tests.integration.test_orchestrator import _insert, _insight_rows
from tests.support.env import child_env
from tests.support.netns import Namespace, TcpForwarder, namespace, require_netns
from tests.support.runs import empty_tables, wait_for_runs

VENV_SWITCHBOARD = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "switchboard")
MACHINES = 2
RUNS = 40
STEP_DONE = re.compile(r"switchboard\.agents\.(watcher|analyst|advisor)\[[0-9a-f-]+\] succeeded")


def _via(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced (credentials, path and query kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{credentials}{host}:{port}"))


@pytest.fixture()
def machines() -> Iterator[list[Namespace]]:
    require_netns()
    with ExitStack() as stack:
        yield [stack.enter_context(namespace(index)) for index in range(1, MACHINES + 1)]


def _wait_ready(log: Path, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if " ready." in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"worker not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def test_workers_on_separate_network_namespaces_share_the_work(
    machines: list[Namespace], database_url: str, redis_url: str, tmp_path: Path
) -> None:
    empty_tables(database_url)
    prefix = f"n{uuid.uuid4().hex[:6]}."  # queues only these workers consume
    settings = get_settings().model_copy(update={"queue_prefix": prefix})
    pg, rd = urlsplit(database_url), urlsplit(redis_url)
    base_env = child_env()
    forwarders: list[TcpForwarder] = []
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for index, machine in enumerate(machines, start=1):
            pg_forward = TcpForwarder(machine.host_address, 0, pg.hostname or "127.0.0.1", pg.port or 5432)
            rd_forward = TcpForwarder(machine.host_address, 0, rd.hostname or "127.0.0.1", rd.port or 6379)
            forwarders += [pg_forward, rd_forward]
            env = {
                **base_env,
                "SWITCHBOARD_DATABASE_URL": _via(database_url, machine.host_address, pg_forward.port),
                "SWITCHBOARD_BROKER_URL": _via(redis_url, machine.host_address, rd_forward.port),
                "SWITCHBOARD_QUEUE_PREFIX": prefix,
                "SWITCHBOARD_DATA_DIR": str(tmp_path / f"machine{index}"),
                "SWITCHBOARD_LOG_FORMAT": "text",
            }
            log = tmp_path / f"machine{index}.log"
            argv = machine.argv(
                VENV_SWITCHBOARD, "worker", "--queues", "default,low", "--concurrency", "2",
                "--name", f"machine{index}@switchboard-test",
            )  # fmt: skip
            with log.open("wb") as out:
                proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            workers.append((proc, log))
        for proc, log in workers:
            _wait_ready(log, proc)

        now = dt.datetime.now(dt.UTC)
        _insert(_insight_rows(RUNS, now, severity="medium"))
        from sqlalchemy import select

        from switchboard.db.models import ProactiveInsight
        from switchboard.db.session import session_scope

        with session_scope() as session:
            insight_ids = list(session.scalars(select(ProactiveInsight.id).order_by(ProactiveInsight.id)))
        run_ids = [dispatch_insight(insight_id, queue=settings.queue_name("default")) for insight_id in insight_ids]
        runs = wait_for_runs(run_ids, timeout_s=180)
        assert sorted({str(run["status"]) for run in runs}) == ["done"], [(r["run_id"], r["error"]) for r in runs]
    finally:
        for proc, _ in workers:
            proc.terminate()
        for proc, _ in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for forwarder in forwarders:
            forwarder.close()

    steps_by_machine = [len(STEP_DONE.findall(log.read_text())) for _, log in workers]
    print(f"agent steps per machine: {steps_by_machine}")
    assert sum(steps_by_machine) == 3 * RUNS, steps_by_machine
    # Work spreads: every machine took a real share (a fair split is 60 each; allow skew).
    assert min(steps_by_machine) >= 0.2 * 3 * RUNS, steps_by_machine
    # Every connection to the shared services came from a namespace's own address.
    for machine, pg_forward, rd_forward in zip(machines, forwarders[::2], forwarders[1::2], strict=True):
        assert pg_forward.peers == {machine.own_address}
        assert rd_forward.peers == {machine.own_address}
