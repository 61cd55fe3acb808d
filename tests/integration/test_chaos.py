"""The short chaos run: the bench's scenario (bench/chaos.py) at a size the suite can afford.

Workers SIGKILLed and restarted every 2 s, Redis (append-only, fsync always) restarted once,
Postgres stopped for 10 s once — then every run is terminal, none is lost, no action ran twice
(counted at the fake HubSpot, per idempotency token) and every outcome is written.
"""

from __future__ import annotations

from bench.chaos import run_chaos


def test_runs_survive_worker_kills_a_redis_restart_and_a_postgres_outage() -> None:
    result = run_chaos(
        60, workers=3, kill_every_s=2.0, chaos_for_s=24.0, redis_restart_at_s=6.0, postgres_stop_at_s=12.0,
        postgres_down_s=10.0, timeout_s=240.0, visibility_timeout_s=20,
    )  # fmt: skip
    print(result)
    assert result.worker_kills >= 8
    assert (result.lost, result.duplicated_actions, result.unfinished, result.unwritten) == (0, 0, 0, 0), result
    assert result.statuses == {"done": 60}, result.statuses
    assert result.hubspot_tasks == 60
