"""The API in-process, on this test's settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from switchboard.api.app import create_app
from switchboard.settings import get_settings


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
