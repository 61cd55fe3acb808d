"""`switchboard worker` and `switchboard flower` start the real programs with our settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest
from celery.exceptions import TimeoutError as CeleryTimeout

from switchboard.tasks.probe import probe
from tests.support.api import free_port
from tests.support.env import child_env
from tests.support.services import DatabaseFactory


@contextmanager
def _running(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _env(redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return child_env(SWITCHBOARD_BROKER_URL=redis_url, SWITCHBOARD_DATABASE_URL=database_url, **extra)


def test_worker_consumes_only_the_levels_it_was_given(redis_url: str, database_url: str, tmp_path: Path) -> None:
    prefix = f"w{uuid.uuid4().hex[:6]}."
    env = _env(redis_url, database_url, SWITCHBOARD_QUEUE_PREFIX=prefix, SWITCHBOARD_DATA_DIR=str(tmp_path))
    argv = [sys.executable, "-m", "switchboard", "worker", "--queues", "critical,high", "--concurrency", "1",
            "--processes", "1"]  # fmt: skip
    with _running(argv, env, tmp_path / "worker.log") as worker:
        for level in ("critical", "high"):
            result = probe.apply_async(queue=f"{prefix}{level}").get(timeout=60)
            assert result["queue"] == f"{prefix}{level}"
            assert result["hostname"] == f"critical-high@{socket.gethostname()}"
        routine = probe.apply_async(queue=f"{prefix}low")
        with pytest.raises(CeleryTimeout):
            routine.get(timeout=3)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    routine.forget()


def test_worker_runs_one_thread_pool_process_per_cpu_and_a_stop_signal_stops_them_all(
    redis_url: str, database_url: str, tmp_path: Path
) -> None:
    """The shipped worker on a machine of N CPUs: N Celery nodes `LEVELS-k@host`, each serving;
    SIGTERM to `switchboard worker` stops every one (warm) and it exits 0."""
    from switchboard.celery_app import app

    prefix = f"w{uuid.uuid4().hex[:6]}."
    env = _env(redis_url, database_url, SWITCHBOARD_QUEUE_PREFIX=prefix, SWITCHBOARD_DATA_DIR=str(tmp_path))
    argv = [sys.executable, "-m", "switchboard", "worker", "--queues", "default", "--processes", "2",
            "--concurrency", "2"]  # fmt: skip
    host = socket.gethostname()
    nodes = {f"default-1@{host}", f"default-2@{host}"}
    with _running(argv, env, tmp_path / "worker.log") as worker:
        deadline = time.monotonic() + 60
        answered: set[str] = set()
        while answered != nodes:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            answered = {name for reply in app.control.ping(destination=sorted(nodes), timeout=1) for name in reply}
        stats = app.control.inspect(destination=sorted(nodes), timeout=5).stats() or {}
        assert {name: body["pool"]["max-concurrency"] for name, body in stats.items()} == dict.fromkeys(nodes, 2)
        served = {probe.apply_async(queue=f"{prefix}default").get(timeout=60)["hostname"] for _ in range(20)}
        assert served <= nodes
        children = [p.pid for p in psutil.Process(worker.pid).children()]
        assert len(children) == 2
        worker.send_signal(signal.SIGTERM)  # the supervisor alone, as `docker stop` does
        assert worker.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        for pid in children:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_worker_rejects_unknown_queue_levels(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "switchboard", "worker", "--queues", "critical,urgent"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "critical, high, default, low" in result.stderr


def test_flower_requires_the_configured_basic_auth(redis_url: str, database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = _env(
        redis_url,
        database_url,
        SWITCHBOARD_FLOWER_PORT=str(port),
        SWITCHBOARD_FLOWER_BASIC_AUTH="ops:s3cret-pass",
        SWITCHBOARD_DATA_DIR=str(tmp_path),
    )
    with _running([sys.executable, "-m", "switchboard", "flower"], env, tmp_path / "flower.log") as flower:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code
            except httpx.HTTPError:
                assert flower.poll() is None, (tmp_path / "flower.log").read_text()
                time.sleep(0.3)
        assert status == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", auth=("ops", "wrong"), timeout=5).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", auth=("ops", "s3cret-pass"), timeout=5).status_code == 200
        cmdline = Path(f"/proc/{flower.pid}/cmdline").read_bytes().decode()
        assert "s3cret-pass" not in cmdline
    assert "s3cret-pass" not in (tmp_path / "flower.log").read_text()


def test_flower_without_basic_auth_listens_on_loopback_only(redis_url: str, database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = _env(redis_url, database_url, SWITCHBOARD_FLOWER_PORT=str(port), SWITCHBOARD_DATA_DIR=str(tmp_path))
    env.pop("SWITCHBOARD_FLOWER_BASIC_AUTH", None)
    with _running([sys.executable, "-m", "switchboard", "flower"], env, tmp_path / "flower.log") as flower:
        deadline = time.monotonic() + 30
        listening: list[str] = []
        while time.monotonic() < deadline and not listening:
            assert flower.poll() is None, (tmp_path / "flower.log").read_text()
            listening = [c.laddr.ip for c in psutil.Process(flower.pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN and c.laddr.port == port]  # fmt: skip
            time.sleep(0.3)
        assert listening == ["127.0.0.1"], listening
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200


def test_read_commands_migrate_the_embedded_default_and_name_the_fix_elsewhere(
    pg_database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    fresh = {
        k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_") or k.startswith("SWITCHBOARD_TEST_")
    }
    fresh["SWITCHBOARD_DATA_DIR"] = str(tmp_path / "data")
    for command in (["runs"], ["failures"], ["approvals", "list"], ["insights"], ["dead-letters"]):
        done = subprocess.run([sys.executable, "-m", "switchboard", *command], env=fresh, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, (command, done.stderr)
        assert "Traceback" not in done.stderr and "no such table" not in done.stderr
    assert (tmp_path / "data" / "switchboard.db").is_file()  # the embedded default migrated itself
    empty = {**fresh, "SWITCHBOARD_DATABASE_URL": pg_database_factory.create()}
    for command in (["runs"], ["insights"], ["runs", "show", "abcd1234"]):
        done = subprocess.run([sys.executable, "-m", "switchboard", *command], env=empty, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "run `switchboard migrate` first" in done.stderr and "Traceback" not in done.stderr
    down = {**fresh, "SWITCHBOARD_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    done = subprocess.run([sys.executable, "-m", "switchboard", "runs"], env=down, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2 and "the database does not answer" in done.stderr and "Traceback" not in done.stderr
