"""The eval under model latency: every scenario through real workers with each model call
taking `--latency-ms` (the offline rules with SWITCHBOARD_OFFLINE_LATENCY_MS, as a real model
would keep a step waiting), in lanes as shipped (SWITCHBOARD_EVAL_CONCURRENCY, 8) against one
lane — scenarios one after another, as the eval ran before — in the same invocation.

Usage: .venv/bin/python bench/eval_latency.py [--latency-ms 2000] [--lanes 8] [--baseline-scenarios N]

The one-lane baseline runs the first N scenarios (default 12) and is scaled to the whole suite
(it grows linearly: each scenario waits on the one before).
Last line: scenarios=… latency_ms=… lanes=… seconds=… baseline_seconds_per_scenario=… speedup=…
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_env, flush_redis, scratch_database
from switchboard.evals.scenarios import load_scenarios


def _eval(env: dict[str, str], *args: str) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "switchboard", "eval", "--provider", "offline", "--json", *args],
                          env=env, capture_output=True, text=True, timeout=3600)  # fmt: skip
    elapsed = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"the eval failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=int, default=2000)
    parser.add_argument("--lanes", type=int, default=8)
    parser.add_argument("--baseline-scenarios", type=int, default=12)
    args = parser.parse_args()
    scenarios = load_scenarios()
    flush_redis()
    with scratch_database("eval") as url, tempfile.TemporaryDirectory() as tmp:
        latency = {"SWITCHBOARD_OFFLINE_LATENCY_MS": str(args.latency_ms)}
        env = bench_env(url, Path(tmp) / "lanes", SWITCHBOARD_EVAL_CONCURRENCY=str(args.lanes), **latency)
        seconds, result = _eval(env)
        scores = result["scores"]
        assert isinstance(scores, dict)
        print(
            f"[lanes={args.lanes}] {len(scenarios)} scenarios in {seconds:.1f} s (CLI wall time), run p50 "
            f"{scores['latency_p50_ms']} ms, p95 {scores['latency_p95_ms']} ms, {scores['scenarios_passed']} passed"
        )
        subset = scenarios[: args.baseline_scenarios]
        one = bench_env(url, Path(tmp) / "one", SWITCHBOARD_EVAL_CONCURRENCY="1", **latency)
        only = [arg for scenario in subset for arg in ("--scenario", scenario.name)]
        baseline, _ = _eval(one, *only)
        per_scenario = baseline / len(subset)
        print(
            f"[lanes=1] {len(subset)} scenarios in {baseline:.1f} s: {per_scenario:.2f} s a scenario, "
            f"{per_scenario * len(scenarios):.0f} s for all {len(scenarios)}"
        )
        speedup = per_scenario * len(scenarios) / seconds
    print(
        f"scenarios={len(scenarios)} latency_ms={args.latency_ms} lanes={args.lanes} seconds={seconds:.1f} "
        f"baseline_seconds_per_scenario={per_scenario:.2f} speedup={speedup:.1f}"
    )


if __name__ == "__main__":
    main()
