"""Both webhook parsers, fuzzed with valid signatures over random bodies and headers
(hypothesis): every input is either events to store — valid as EventIn — or a 4xx with a
reason. Nothing else may come out: any other exception would be a 500 for the sender.

The suite runs 2,000 inputs per provider; `SWITCHBOARD_TEST_FUZZ_EXAMPLES=20000 .venv/bin/pytest -s
tests/unit/test_webhook_fuzz.py` runs the full 20,000 (about three minutes) and prints the counts."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

from fastapi import HTTPException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard.api.events import EventIn
from switchboard.api.webhooks import hubspot_signature, parse_hubspot, parse_stripe

SECRET = "whsec_fuzz_0123456789"
CLIENT_SECRET = "hubspot-client-secret-fuzz"
URI = "http://testserver/api/webhooks/hubspot"
EXAMPLES = int(os.environ.get("SWITCHBOARD_TEST_FUZZ_EXAMPLES", "2000"))
seen = {"stripe": {"stored": 0, "refused": 0}, "hubspot": {"stored": 0, "refused": 0}}

# JSON-ish values, including what breaks naive parsers: huge and negative numbers, unicode
# digits, long strings, NUL and lone surrogates, deep nesting.
odd_text = st.one_of(
    st.text(max_size=20), st.text(min_size=250, max_size=320), st.sampled_from(["²", "١٢٣", "", "\x00", "\ud800", "0"])
)
odd_number = st.one_of(
    st.integers(), st.integers(min_value=10**12, max_value=10**20), st.integers(max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
)  # fmt: skip
scalar = st.one_of(st.none(), odd_number, odd_text)
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
                     max_leaves=12)  # fmt: skip


def _text(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


plain = st.text(min_size=1, max_size=40)
clean = st.dictionaries(st.text(max_size=10), st.one_of(plain, st.integers()), max_size=3)
stamp = st.integers(min_value=0, max_value=4_000_000_000)
stripe_event = st.fixed_dictionaries(
    {"id": st.one_of(plain, plain, plain, odd_text, odd_number, st.none()),
     "type": st.one_of(plain, plain, plain, odd_text, st.none(), odd_number)},
    optional={"created": st.one_of(stamp, stamp, stamp, odd_number, odd_text, st.none()), "object": st.just("event"),
              "data": st.one_of(clean, clean, st.dictionaries(odd_text, value, max_size=3))},
)  # fmt: skip
hubspot_item = st.fixed_dictionaries(
    {"eventId": st.one_of(st.integers(min_value=0), plain, odd_number, odd_text, st.none()),
     "subscriptionType": st.one_of(plain, plain, plain, odd_text, odd_number, st.none())},
    optional={"occurredAt": st.one_of(stamp.map(lambda s: s * 1000), stamp, odd_number, odd_text, st.none()),
              "objectId": st.one_of(st.integers(min_value=0), st.integers(min_value=0), odd_number, odd_text),
              "propertyName": st.one_of(plain, plain, odd_text, odd_number)},
)  # fmt: skip
# Well-formed bodies too, so a good share of the inputs must come out as events
stripe_good = st.fixed_dictionaries(
    {"id": plain.map(lambda s: "evt_" + s), "object": st.just("event"), "created": stamp,
     "type": st.sampled_from(["charge.succeeded", "invoice.payment_failed", "charge.dispute.created"]),
     "data": st.fixed_dictionaries({"object": clean})},
)  # fmt: skip
hubspot_good = st.fixed_dictionaries(
    {"eventId": st.integers(min_value=1, max_value=2**62), "subscriptionType": st.sampled_from(
        ["deal.creation", "deal.propertyChange", "contact.creation", "company.propertyChange"]),
     "occurredAt": stamp.map(lambda s: s * 1000), "objectId": st.integers(min_value=1, max_value=2**62)},
    optional={"propertyName": plain, "propertyValue": plain},
)  # fmt: skip


def _raw(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    encoded = strategy.map(lambda v: _text(v).encode("utf-8", errors="surrogatepass"))
    deep = st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n)
    tricks = st.sampled_from([b"1e400", b"NaN", b"[]", b'"x"', b"null", b"1", b"", b"\xff\xfe", b'{"id": "\\u0000"}'])
    loose = value.map(lambda v: _text(v).encode("utf-8", "surrogatepass"))
    return st.one_of(encoded, encoded, encoded, encoded, encoded, encoded, loose, deep, tricks, st.binary(max_size=64))


def _outcome(provider: str, parse: Any) -> None:
    try:
        events = parse()
    except HTTPException as error:
        assert 400 <= error.status_code < 500 and error.detail, error
        seen[provider]["refused"] += 1
        return
    for event in events if isinstance(events, list) else [events]:
        assert isinstance(event, EventIn)
        EventIn.model_validate(event.model_dump())  # storable as the contract says
    seen[provider]["stored"] += 1


@settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(
    body=st.one_of(_raw(stripe_event), _raw(stripe_good)),
    skew=st.sampled_from([0, 0, 0, -10, 400]),
    extra=st.sampled_from(["", "", ",v0=abc", ",t=²"]),
)
def test_stripe_parser_answers_every_signed_body_with_an_event_or_a_4xx(body: bytes, skew: int, extra: str) -> None:
    timestamp = int(time.time()) - skew
    payload = body.decode("utf-8", errors="replace")
    digest = hmac.new(SECRET.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    _outcome("stripe", lambda: parse_stripe(body, f"t={timestamp},v1={digest}{extra}", SECRET, 300))


@settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(
    body=st.one_of(
        _raw(st.lists(hubspot_item, min_size=1, max_size=4)),
        _raw(hubspot_item),
        _raw(st.lists(hubspot_good, min_size=1, max_size=3)),
    ),
    stamp=st.sampled_from(["now", "now", "now", "²", "١٢٣", "", "-5", "stale", "9" * 30]),
)
def test_hubspot_parser_answers_every_signed_body_with_events_or_a_4xx(body: bytes, stamp: str) -> None:
    now_ms = time.time() * 1000
    timestamp = {"now": str(int(now_ms)), "stale": str(int(now_ms) - 10 * 60_000)}.get(stamp, stamp)
    signature = hubspot_signature(CLIENT_SECRET, "POST", URI, body, timestamp)
    _outcome("hubspot", lambda: parse_hubspot(body, signature, timestamp, CLIENT_SECRET, "POST", URI, now_ms))


def test_the_fuzzing_stored_and_refused_both() -> None:
    """Runs after the two above (file order): the inputs reached both outcomes, so the property
    was not satisfied by refusing everything."""
    for provider in ("stripe", "hubspot"):
        counts = seen[provider]
        assert counts["stored"] + counts["refused"] >= EXAMPLES, counts
        assert counts["stored"] >= EXAMPLES // 200 and counts["refused"] >= EXAMPLES // 200, counts
        print(
            f"{provider}: {counts['stored'] + counts['refused']} signed inputs, {counts['stored']} stored, "
            f"{counts['refused']} refused with a 4xx, 0 other outcomes"
        )
