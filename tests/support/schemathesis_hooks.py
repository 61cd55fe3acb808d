"""schemathesis hooks for `tests/integration/test_api_schema.py` (loaded by the CLI through
SCHEMATHESIS_HOOKS): webhook requests that carry their signature header are signed the way
Stripe and HubSpot sign theirs, over the exact bytes sent, so generated valid events get past the
signature check and the routes behind it are fuzzed too. A case without the header (schemathesis
testing a missing required header) stays unsigned."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from typing import Any

import requests
import schemathesis

from switchboard.api.webhooks import hubspot_signature

STRIPE = "/api/webhooks/stripe"
HUBSPOT = "/api/webhooks/hubspot"


def _body(case: Any) -> bytes:
    body = case.body
    if isinstance(body, bytes):
        return body
    if body is None or type(body).__name__ == "NotSet":
        return b""
    return json.dumps(body).encode()


def _has(case: Any, name: str) -> bool:
    return any(key.lower() == name.lower() for key in (case.headers or {}))


def _set(case: Any, name: str, value: str) -> None:
    for key in list(case.headers):
        if key.lower() == name.lower():
            case.headers[key] = value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    if path == STRIPE and _has(case, "Stripe-Signature"):
        body = _body(case)
        stamp = str(int(time.time()))
        secret = os.environ["SWITCHBOARD_STRIPE_WEBHOOK_SECRET"].encode()
        digest = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        _set(case, "Stripe-Signature", f"t={stamp},v1={digest}")
        kwargs["data"] = body
    elif path == HUBSPOT and _has(case, "X-HubSpot-Signature-v3") and _has(case, "X-HubSpot-Request-Timestamp"):
        body = _body(case)
        stamp = str(int(time.time() * 1000))
        url = requests.Request("POST", case.operation.schema.get_base_url().rstrip("/") + case.formatted_path,
                               params=case.query or None).prepare().url  # fmt: skip
        signature = hubspot_signature(os.environ["SWITCHBOARD_HUBSPOT_CLIENT_SECRET"], "POST", str(url), body, stamp)
        _set(case, "X-HubSpot-Signature-v3", signature)
        _set(case, "X-HubSpot-Request-Timestamp", stamp)
        kwargs["data"] = body
