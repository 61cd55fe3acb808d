"""The API in-process, on this test's settings."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from switchboard.api.app import create_app
from switchboard.settings import get_settings
from tests.support.services import free_port


@contextmanager
def api_client(monkeypatch: pytest.MonkeyPatch, **settings: str) -> Iterator[TestClient]:
    """A TestClient of a fresh app with ``settings`` in the environment; afterwards the
    environment and the cached settings are as before."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    with TestClient(create_app(), base_url="http://localhost") as client:
        yield client
    monkeypatch.undo()
    get_settings.cache_clear()


@contextmanager
def serve(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """A real uvicorn server in a thread of this process (sharing the test database, broker and
    in-process worker); yields its base URL."""
    port = free_port()
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uvicorn_server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=20)
