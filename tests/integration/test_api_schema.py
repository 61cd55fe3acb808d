"""schemathesis against `/openapi.json`: the ingestion routes (health, events, webhooks,
backfill) answer every generated request — valid and invalid — without a 5xx and with a
documented status and a body that matches the documented schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from switchboard.api.app import create_app
from switchboard.settings import get_settings
from tests.support.runs import empty_tables

API_KEY = "sbk_" + uuid.uuid4().hex
INGESTION_PATHS = r"^/api/(health|events|webhooks|backfill)"

# PostgreSQL cannot store NUL in text or jsonb, so the API refuses it with a 422
# (test_ingest_api covers that); generated strings leave it out, as schemathesis provides for.
CONFIG = SchemathesisConfig.from_dict({"generation": {"allow-x00": False}})


def _app_answering_schemathesis_host() -> Any:
    """The app with schemathesis's test-client host name allowed (the Host allowlist is read
    when the app is built; nothing else changes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SWITCHBOARD_ALLOWED_HOSTS", asgi.HOST)
        get_settings.cache_clear()
        app = create_app()
    get_settings.cache_clear()
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app_answering_schemathesis_host(), config=CONFIG).include(
    path_regex=INGESTION_PATHS
)


@pytest.fixture(autouse=True)
def configured(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SWITCHBOARD_INGEST_KEYS", API_KEY)
    monkeypatch.setenv("SWITCHBOARD_STRIPE_WEBHOOK_SECRET", "whsec_" + uuid.uuid4().hex)
    monkeypatch.setenv("SWITCHBOARD_HUBSPOT_CLIENT_SECRET", uuid.uuid4().hex)
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()
    empty_tables(database_url)


# Schema-valid requests these routes rightly refuse: a webhook needs a signature only the sender
# can compute, and a backfill window must be in the past and not empty (not expressible in the
# schema). Every other check runs on them; all checks run on the rest.
BEYOND_THE_SCHEMA = ("/api/webhooks/stripe", "/api/webhooks/hubspot", "/api/backfill")


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_ingestion_api_conforms_to_its_openapi_schema(case: Any) -> None:
    excluded = [positive_data_acceptance] if case.operation.path in BEYOND_THE_SCHEMA else []
    case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"}, excluded_checks=excluded)
