"""The Stripe, HubSpot and Gong clients through their real SDKs / httpx against local fakes of
each API's wire format, and the resilience primitives on a real Redis."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import select

from switchboard.db.models import AgentDecision
from switchboard.db.session import session_scope
from switchboard.integrations import resilience
from switchboard.integrations.calls import provider_for
from switchboard.integrations.hubspot import HubSpotClient
from switchboard.integrations.resilience import (
    CircuitBreaker,
    IntegrationError,
    IntegrationRejected,
    RateLimiter,
    backoff_s,
    is_transient,
    policy_for,
    retry_after_s,
)
from switchboard.integrations.stripe_client import StripeAPI
from switchboard.settings import get_settings
from tests.fakes.gong import FakeGong
from tests.fakes.http import Fault
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.stripe import FakeStripe
from tests.support.runs import empty_tables

STRIPE_KEY = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"
HUBSPOT_TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"


@pytest.fixture()
def env(database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    empty_tables(database_url)
    client = redis.Redis.from_url(redis_url)
    for key in [*client.scan_iter("switchboard:breaker:*"), *client.scan_iter("switchboard:ratelimit:*")]:
        client.delete(key)
    client.close()
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def _configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"SWITCHBOARD_{name}", value)
    get_settings.cache_clear()


def _rows(tool: str) -> list[tuple[str, int]]:
    with session_scope() as session:
        rows = session.scalars(select(AgentDecision).where(AgentDecision.tool == tool).order_by(AgentDecision.id))
        return [(row.status, row.attempts) for row in rows]


# --------------------------------------------------------------------------- primitives


def test_retry_after_forms_and_transient_statuses() -> None:
    now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=7), usegmt=True)
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"retry-after": later}, now) == 7.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"Retry-After": "soon"}) is None and retry_after_s(None) is None
    assert is_transient(429) and is_transient(503) and is_transient(None) and is_transient(409)
    assert not is_transient(400) and not is_transient(404)
    assert not is_transient(500, {"Stripe-Should-Retry": "false"})
    assert is_transient(400, {"Stripe-Should-Retry": "true"})


def test_backoff_is_full_jitter_under_the_cap() -> None:
    policy = policy_for("stripe")
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** (attempt - 1))
        samples = [backoff_s(attempt, policy, rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # the whole range is used, not a fixed delay


def test_breaker_state_machine_on_redis(env: pytest.MonkeyPatch, redis_url: str) -> None:
    _configure(env, BREAKER_FAILURE_THRESHOLD="2", BREAKER_RESET_TIMEOUT_S="1")
    breaker = CircuitBreaker(resilience.shared_redis(), "stripe", policy_for("stripe"))
    assert breaker.allow() == (True, 0.0)
    assert breaker.record(False) == "closed" and breaker.record(False) == "open"
    # a call let through before it opened answers late, and well: the circuit stays open
    assert breaker.record(True) == "open" and breaker.allow()[0] is False
    allowed, wait = breaker.allow()
    assert not allowed and 0 < wait <= 1.0
    time.sleep(wait + 0.05)
    assert breaker.allow()[0] is True  # the one probe
    assert breaker.allow()[0] is False  # nobody else while it is out
    assert breaker.record(False) == "open"  # the probe failed: open again
    time.sleep(1.05)
    assert breaker.allow()[0] is True and breaker.record(True) == "closed"
    assert breaker.allow() == (True, 0.0)


def test_token_bucket_and_hold_off(env: pytest.MonkeyPatch, redis_url: str) -> None:
    _configure(env, HUBSPOT_RATE_PER_S="10")
    limiter = RateLimiter(resilience.shared_redis(), "hubspot", "acct", policy_for("hubspot"))
    assert limiter.try_acquire() == 0.0
    wait = limiter.try_acquire()
    assert 0.05 < wait <= 0.1
    limiter.adjust_from_hubspot({"X-HubSpot-RateLimit-Secondly-Remaining": "0"})
    assert limiter.try_acquire() > 0.9


# --------------------------------------------------------------------------- Stripe


def test_stripe_pages_writes_idempotently_and_classifies_errors(env: pytest.MonkeyPatch) -> None:
    with FakeStripe(api_key=STRIPE_KEY) as fake:
        for n in range(250):
            fake.add("charges", {"id": f"ch_{n:04d}", "object": "charge", "amount": 100 + n,
                                 "created": 1_700_000_000 + n, "status": "succeeded"})  # fmt: skip
        fake.add("disputes", {"id": "dp_1", "object": "dispute", "amount": 500, "metadata": {}})
        _configure(env, STRIPE_API_KEY=STRIPE_KEY, STRIPE_API_BASE=fake.url)
        api = StripeAPI()

        charges = list(api.list("charge", pace=time.sleep))
        assert len(charges) == 250 and len({c["id"] for c in charges}) == 250
        pages = fake.seen("/v1/charges")
        assert len(pages) == 3 and pages[1].query["starting_after"] == [charges[99]["id"]]
        assert _rows("stripe:charges.list") == [("done", 1)] * 3

        time.sleep(0.1)  # the last page took the bucket's only token (25/s, burst 1): let one accrue
        first = api.flag_dispute_for_review("dp_1", idempotency_key="flag_finance_review:abc:dp_1", note="n")
        time.sleep(0.1)
        again = api.flag_dispute_for_review("dp_1", idempotency_key="flag_finance_review:abc:dp_1", note="n")
        assert first == again and fake.effects == [("disputes", "dp_1")]  # Stripe applied it once
        assert [r.headers["idempotency-key"] for r in fake.seen("/v1/disputes")] == ["flag_finance_review:abc:dp_1"] * 2

        time.sleep(0.1)
        fake.inject(Fault("status", status=500, headers={"Stripe-Should-Retry": "false"}))
        with pytest.raises(IntegrationRejected, match="HTTP 500"):
            api.retrieve("charge", "ch_0001")
        time.sleep(0.1)
        fake.inject(Fault("status", status=429, headers={"Retry-After": "3"}))
        with pytest.raises(IntegrationError, match="HTTP 429") as limited:
            api.retrieve("charge", "ch_0001")
        assert limited.value.retry_after_s is not None and limited.value.retry_after_s >= 3.0
        time.sleep(3.05)
        fake.inject(Fault("malformed"))
        with pytest.raises(IntegrationError, match="unreadable response body"):
            api.retrieve("charge", "ch_0001")
        time.sleep(0.1)
        assert api.retrieve("charge", "ch_0001")["amount"] == 101
        assert all(r.headers["authorization"] == f"Bearer {STRIPE_KEY}" for r in fake.seen())
    statuses = [status for status, _ in _rows("stripe:charges.retrieve")]
    assert statuses == ["failed", "retrying", "retrying", "done"]


# --------------------------------------------------------------------------- HubSpot


def test_hubspot_owners_and_search_page_through_the_sdk(env: pytest.MonkeyPatch) -> None:
    with FakeHubSpot(token=HUBSPOT_TOKEN) as fake:
        fake.owners = [
            {"id": str(n), "email": f"o{n}@x.example", "firstName": "O", "lastName": str(n)} for n in range(130)
        ]
        for n in range(150):
            fake.add("deals", f"d{n}", {"dealname": f"deal {n}", "dealstage": "closedwon" if n % 3 == 0 else "open"})
        _configure(env, HUBSPOT_ACCESS_TOKEN=HUBSPOT_TOKEN, HUBSPOT_API_BASE=fake.url, HUBSPOT_RATE_PER_S="1000")
        client = HubSpotClient()
        owners = list(client.owners())
        assert [o["id"] for o in owners] == [str(n) for n in range(130)]
        won = list(client.search("deals", [{"propertyName": "dealstage", "operator": "EQ", "value": "closedwon"}]))
        assert len(won) == 50 and all(d["properties"]["dealstage"] == "closedwon" for d in won)
        assert len(fake.seen("/crm/v3/owners")) == 2 and len(fake.seen("/crm/v3/objects/deals/search")) == 1
        assert client.get("deals", "d7")["properties"]["dealname"] == "deal 7"
        fake.inject(Fault("status", status=429, headers={"Retry-After": "1"}))
        with pytest.raises(IntegrationError) as limited:
            client.get("deals", "d7")
        assert limited.value.retry_after_s is not None and limited.value.retry_after_s >= 1.0


# --------------------------------------------------------------------------- Gong


def test_gong_lists_with_cursor_and_fetches_extensive_data(env: pytest.MonkeyPatch) -> None:
    with FakeGong(access_key="AK", secret="S3cr3t") as fake:
        start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        fake.calls = [{"id": f"c{n}", "started": (start + dt.timedelta(minutes=n)).isoformat(), "duration": 60 + n,
                       "primaryUserId": "rep1"} for n in range(250)]  # fmt: skip
        _configure(env, CALLS_API_KEY="AK:S3cr3t", CALLS_API_BASE=fake.url, CALLS_RATE_PER_S="1000")
        provider = provider_for()
        calls, cursor, pages = [], None, 0
        while True:
            page, cursor = provider.list_calls(start, start + dt.timedelta(days=1), cursor)
            calls += page
            pages += 1
            if cursor is None:
                break
        assert len(calls) == 250 and pages == 3
        details, _ = provider.call_details(["c1", "c2"])
        assert [d["metaData"]["id"] for d in details] == ["c1", "c2"] and details[0]["parties"]
        fake.inject(Fault("status", status=429, headers={"Retry-After": "2"}))
        with pytest.raises(IntegrationError, match="API request limit reached") as limited:
            provider.call_details(["c1"])
        assert limited.value.retry_after_s is not None and limited.value.retry_after_s >= 2.0
        time.sleep(2.05)  # the 429 put the shared budget on hold for its Retry-After
        env.setenv("SWITCHBOARD_INTEGRATION_TIMEOUT_S", "0.5")
        get_settings.cache_clear()
        fake.inject(Fault("slow", delay_s=1.5))
        started = time.monotonic()
        with pytest.raises(IntegrationError, match="ReadTimeout"):
            provider_for().call_details(["c1"])
        assert time.monotonic() - started < 1.4  # the worker gave up at the timeout
    assert _rows("calls:calls.list") == [("done", 1)] * 3
    assert resilience.redis_url(get_settings()).startswith("redis://")
