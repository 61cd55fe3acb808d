"""The environment of a switchboard child process started by a test (worker, CLI, demo)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def child_env(**settings: str) -> dict[str, str]:
    """This process's environment without its SWITCHBOARD_ settings (the tests' own
    SWITCHBOARD_TEST_* service addresses excepted), plus ``settings``: a child sees exactly
    what the test gives it. The agents use the offline rules unless the test chooses a provider."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SWITCHBOARD_", "OTEL_")) or k.startswith("SWITCHBOARD_TEST_")}  # fmt: skip
    env.update({f"SWITCHBOARD_{agent}_PROVIDER": "offline" for agent in ("WATCHER", "ANALYST", "ADVISOR")})
    env.update(settings)
    return env


def worker_env(
    database_url: str, redis_url: str, data_dir: Path, *, prefix: str | None = None, **settings: str
) -> dict[str, str]:
    """`child_env` on the test database and broker, with its own queue prefix and data directory."""
    return child_env(
        SWITCHBOARD_DATABASE_URL=database_url,
        SWITCHBOARD_BROKER_URL=redis_url,
        SWITCHBOARD_QUEUE_PREFIX=prefix or f"c{uuid.uuid4().hex[:6]}.",
        SWITCHBOARD_DATA_DIR=str(data_dir),
        **settings,
    )
