"""Chaos: runs on Postgres + Redis across worker processes while workers are SIGKILLed and
restarted every 2 s, Redis is restarted once and Postgres is stopped for 10 s once.

The bench owns its services, so it can stop them for real without touching anything else:
a throw-away PostgreSQL cluster (initdb under a temp dir, its own port) and a redis-server
with an append-only file fsynced on every write (the durability the README asks of a
production broker). HubSpot is the wire-format fake from tests/fakes, so every executed
"create a HubSpot task" action is a real HTTP call whose count per idempotency token proves
effect-once.

Afterwards:
  lost               insights that never got a run, or runs that vanished
  unfinished         runs not in a terminal state (done | failed | awaiting_approval | expired)
  duplicated_actions idempotency keys executed more than once (HubSpot tasks per token, and
                     action_executions rows per key)
  unwritten          terminal runs whose outcome is incomplete (a done run missing a step row,
                     a finished_at, or its insight's status)

Usage: .venv/bin/python bench/chaos.py [--runs 1000] [--workers 3] [--kill-every-s 2]
Last line: runs=… lost=… duplicated_actions=… unfinished=…
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.hubspot import FakeHubSpot

HUBSPOT_TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not come up on port {port} within {timeout_s:.0f} s")


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the Debian package's `postgres` user runs it instead.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class OwnPostgres:
    """A throw-away PostgreSQL cluster on its own port: start, stop (fast shutdown), start again."""

    def __init__(self, root: Path) -> None:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        pg_ctl = candidates[-1] if candidates else shutil.which("pg_ctl")
        if not pg_ctl:
            raise SystemExit("pg_ctl not found: install PostgreSQL (`make services` does)")
        self.bin = Path(pg_ctl).parent
        self.dir = root / "pg"
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            os.chmod(root, 0o755)
        self.data = self.dir / "data"
        self.port = _free_port()
        subprocess.run(
            _as_postgres_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]),
            check=True, capture_output=True,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300"
        subprocess.run(
            _as_postgres_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                               "-l", str(self.dir / "postgres.log"), "-w", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip

    def stop(self) -> None:
        subprocess.run(
            _as_postgres_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip


class OwnRedis:
    """A redis-server with an fsync-always append-only file: a restart loses no message."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir()
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if not server:
            raise SystemExit("redis-server not found: install it (`make services` does)")
        with (self.dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                 "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _wait_port(self.port, 30, "redis-server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


@dataclass
class Workers:
    """Worker processes (each its own process group) that can be killed outright and restarted."""

    env: dict[str, str]
    log_dir: Path
    count: int
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0

    def start(self, slot: int) -> None:
        with (self.log_dir / f"worker-{slot}.log").open("ab") as log:
            self.procs[slot] = subprocess.Popen(
                # the worker as shipped: the thread pool, 64 steps in flight that a SIGKILL takes down
                [sys.executable, "-m", "switchboard", "worker", "--queues", "critical,high,default,low",
                 "--name", f"chaos{slot}@%h"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def start_all(self) -> None:
        for slot in range(self.count):
            self.start(slot)

    def kill_one(self, rng: random.Random) -> None:
        slot = rng.randrange(self.count)
        proc = self.procs[slot]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole worker: main process and pool children
            proc.wait()
            self.kills += 1
        self.start(slot)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass
class ChaosResult:
    runs: int
    lost: int
    duplicated_actions: int
    unfinished: int
    unwritten: int
    statuses: dict[str, int]
    hubspot_tasks: int
    worker_kills: int
    seconds: float


def _insight_rows(count: int, seed: int) -> list[dict[str, object]]:
    # Generous SLAs: this measures delivery under faults, not expiry.
    from bench.common import insight_row

    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    severities = ("critical", "high", "medium", "medium", "low")
    return [insight_row(rng.choice(severities), f"chaos-deal-{n}", now, dt.timedelta(hours=4)) for n in range(count)]


def _count_outcome(url: str) -> dict[str, object]:
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1), pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            q = conn.execute
            out: dict[str, object] = {
                "insights": q(sa.text("SELECT count(*) FROM proactive_insights")).scalar_one(),
                "insights_without_run": q(sa.text(
                    "SELECT count(*) FROM proactive_insights i WHERE NOT EXISTS "
                    "(SELECT 1 FROM agent_runs r WHERE r.insight_id = i.id)")).scalar_one(),
                "statuses": dict(q(sa.text("SELECT status, count(*) FROM agent_runs GROUP BY status")).all()),
                "insight_statuses": dict(q(sa.text(
                    "SELECT status, count(*) FROM proactive_insights GROUP BY status")).all()),
                "duplicate_executions": q(sa.text(
                    "SELECT count(*) FROM (SELECT idempotency_key FROM action_executions "
                    "GROUP BY idempotency_key HAVING count(*) > 1) d")).scalar_one(),
                "unwritten": q(sa.text(
                    "SELECT count(*) FROM agent_runs r WHERE r.status = 'done' AND (r.finished_at IS NULL "
                    "OR (SELECT count(*) FROM agent_steps s WHERE s.run_id = r.id AND s.status = 'done') < 3 "
                    "OR NOT EXISTS (SELECT 1 FROM proactive_insights i WHERE i.run_id = r.id "
                    "AND i.status = 'done'))")).scalar_one(),
            }  # fmt: skip
            return out
    finally:
        engine.dispose()


def run_chaos(
    runs: int,
    *,
    workers: int = 3,
    kill_every_s: float = 2.0,
    redis_restart_at_s: float = 15.0,
    postgres_stop_at_s: float = 30.0,
    postgres_down_s: float = 10.0,
    chaos_for_s: float | None = None,
    timeout_s: float = 900.0,
    seed: int = 7,
    log: bool = True,
    keep_dir: Path | None = None,
    visibility_timeout_s: int = 45,
) -> ChaosResult:
    """Run the whole scenario in a temp dir; returns the counts."""
    from bench.common import bench_env
    from switchboard.db import migrate
    from switchboard.db.session import dispose_engines

    def say(message: str) -> None:
        if log:
            print(f"[chaos {time.monotonic() - t0:6.1f} s] {message}", flush=True)

    rng = random.Random(seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="switchboard-chaos-") as tmp, FakeHubSpot(HUBSPOT_TOKEN) as hubspot:
        root = Path(tmp)
        if keep_dir is not None:  # logs and the database stay for a post-mortem
            root = keep_dir
            root.mkdir(parents=True, exist_ok=True)
        pg, rd = OwnPostgres(root), OwnRedis(root)
        pg.start()
        rd.start()
        say(f"postgres on :{pg.port}, redis (AOF, fsync always) on :{rd.port}, fake HubSpot at {hubspot.url}")
        migrate.upgrade(pg.url)
        import sqlalchemy as sa

        from switchboard.db.models import ProactiveInsight

        engine = sa.create_engine(pg.url.replace("postgresql://", "postgresql+psycopg2://", 1))
        with engine.begin() as conn:
            conn.execute(sa.insert(ProactiveInsight), _insight_rows(runs, seed))
        engine.dispose()
        dispose_engines()

        env = bench_env(pg.url, root / "data")
        env.update(
            SWITCHBOARD_BROKER_URL=rd.url,
            SWITCHBOARD_HUBSPOT_ACCESS_TOKEN=HUBSPOT_TOKEN, SWITCHBOARD_HUBSPOT_API_BASE=hubspot.url,
            SWITCHBOARD_HUBSPOT_RATE_PER_S="1000",
            # Killed workers' in-flight messages come back after the visibility timeout: keep it
            # short here (and the limits it must exceed) so the bench ends in minutes.
            SWITCHBOARD_VISIBILITY_TIMEOUT_S=str(visibility_timeout_s),
            SWITCHBOARD_TASK_TIME_LIMIT_S=str(min(30, visibility_timeout_s - 5)),
            SWITCHBOARD_RETRY_BACKOFF_CAP_S="10", SWITCHBOARD_STALE_DISPATCH_S="60",
            SWITCHBOARD_LOG_FORMAT="text", SWITCHBOARD_LOG_LEVEL="INFO",
        )  # fmt: skip
        pool = Workers(env, root, workers)
        pool.start_all()
        with (root / "beat.log").open("ab") as beat_log:
            beat = subprocess.Popen([sys.executable, "-m", "switchboard", "beat"], env=env, stdout=beat_log,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        say(f"{workers} workers and beat started; {runs} insights waiting for the orchestrator")

        started = time.monotonic()
        redis_restarted = postgres_stopped = False
        postgres_back_at: float | None = None
        next_kill = started + kill_every_s
        chaos_end = started + (chaos_for_s if chaos_for_s is not None else timeout_s)
        deadline = started + timeout_s
        outcome: dict[str, object] = {}
        try:
            while time.monotonic() < deadline:
                now = time.monotonic()
                elapsed = now - started
                if now >= next_kill and now < chaos_end:
                    pool.kill_one(rng)
                    next_kill = now + kill_every_s
                if not redis_restarted and elapsed >= redis_restart_at_s:
                    say("restarting redis")
                    rd.stop()
                    rd.start()
                    redis_restarted = True
                if not postgres_stopped and elapsed >= postgres_stop_at_s:
                    say(f"stopping postgres for {postgres_down_s:.0f} s")
                    pg.stop()
                    postgres_stopped = True
                    postgres_back_at = now + postgres_down_s
                if postgres_back_at is not None:
                    if now < postgres_back_at:
                        time.sleep(0.2)  # workers keep being killed while the database is down
                        continue
                    pg.start()
                    say("postgres is back")
                    postgres_back_at = None
                try:
                    outcome = _count_outcome(pg.url)
                except sa.exc.OperationalError:
                    time.sleep(0.5)
                    continue
                statuses: dict[str, int] = outcome["statuses"]  # type: ignore[assignment]
                terminal = sum(statuses.get(s, 0) for s in ("done", "failed", "awaiting_approval", "expired"))
                if redis_restarted and postgres_stopped and terminal == runs and not outcome["insights_without_run"]:
                    break
                if int(elapsed) % 10 == 0:
                    say(f"runs by status {statuses}, kills so far {pool.kills}")
                time.sleep(0.5)
            say(f"finished: runs by status {outcome.get('statuses')}")
        finally:
            pool.stop_all()
            if beat.poll() is None:
                os.killpg(beat.pid, signal.SIGTERM)
                beat.wait(timeout=30)
            outcome = _count_outcome(pg.url)
            created = [r for r in hubspot.seen("/crm/v3/objects/tasks", "POST") if r.path == "/crm/v3/objects/tasks"]
            if keep_dir is None:
                pg.stop()
            else:
                say(f"kept: {root} (postgres still running at {pg.url})")
            rd.stop()

    per_token = collections.Counter(_token_of(request.json()) for request in created)
    duplicated_tasks = sum(1 for count in per_token.values() if count > 1)
    statuses = dict(outcome["statuses"])  # type: ignore[call-overload]
    terminal = sum(statuses.get(s, 0) for s in ("done", "failed", "awaiting_approval", "expired"))
    total_runs = sum(statuses.values())
    runs_lost = int(outcome["insights_without_run"])  # type: ignore[call-overload]
    return ChaosResult(
        runs=runs,
        lost=runs_lost,
        duplicated_actions=duplicated_tasks + int(outcome["duplicate_executions"]),  # type: ignore[call-overload]
        unfinished=total_runs - terminal,
        unwritten=int(outcome["unwritten"]),  # type: ignore[call-overload]
        statuses=statuses,
        hubspot_tasks=len(created),
        worker_kills=pool.kills,
        seconds=time.monotonic() - t0,
    )


def _token_of(body: object) -> str:
    properties = body.get("properties", {}) if isinstance(body, dict) else {}
    text = str(properties.get("hs_task_body", ""))
    return text.rsplit("[", 1)[-1].rstrip("]") if "[" in text else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every-s", type=float, default=2.0)
    parser.add_argument("--chaos-for-s", type=float, default=None, help="stop killing workers after this long")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="give up waiting after this long")
    parser.add_argument("--keep-dir", type=Path, default=None, help="keep logs and the database here (post-mortem)")
    args = parser.parse_args()

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # runs the cleanup in run_chaos's finally blocks

    signal.signal(signal.SIGTERM, interrupted)
    result = run_chaos(
        args.runs, workers=args.workers, kill_every_s=args.kill_every_s, chaos_for_s=args.chaos_for_s,
        timeout_s=args.timeout_s, keep_dir=args.keep_dir,
    )  # fmt: skip
    print(
        f"{result.worker_kills} worker kills, 1 redis restart, postgres down 10 s; "
        f"{result.hubspot_tasks} HubSpot tasks created; runs by status {result.statuses}; "
        f"unwritten outcomes {result.unwritten}; {result.seconds:.0f} s"
    )
    print(
        f"runs={result.runs} lost={result.lost} duplicated_actions={result.duplicated_actions} "
        f"unfinished={result.unfinished}"
    )


if __name__ == "__main__":
    main()
