"""Signed webhooks: `POST /api/webhooks/stripe` and `POST /api/webhooks/hubspot`.

Stripe: the `Stripe-Signature` header is verified with the stripe library
(`stripe.Webhook.construct_event`, 300 s tolerance). HubSpot: the v3 signature
(`X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body + timestamp with the app's
client secret) and `X-HubSpot-Request-Timestamp` within 5 minutes. A bad or stale signature is a
400 and nothing is stored; a redelivered event is a duplicate, accepted and not stored again.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

import stripe
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from switchboard.api.events import EventIn, processing, reject_nul, store_events
from switchboard.settings import get_settings

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
HUBSPOT_WINDOW_MS = 300_000


@router.post(
    "/stripe",
    status_code=202,
    responses={
        400: {"description": "Bad signature, stale timestamp or not an event"},
        422: {"description": "The event cannot be stored (a NUL character)"},
        403: {"description": "Stripe webhooks are not configured"},
        413: {"description": "Too large"},
    },
)
async def stripe_webhook(request: Request) -> JSONResponse:
    settings = get_settings()
    if settings.stripe_webhook_secret is None:
        raise HTTPException(403, "Stripe webhooks are not configured: set SWITCHBOARD_STRIPE_WEBHOOK_SECRET")
    body = await request.body()
    if len(body) > settings.ingest_max_body_bytes:
        raise HTTPException(413, f"body exceeds the limit of {settings.ingest_max_body_bytes} bytes")
    signature = request.headers.get("stripe-signature")
    if not signature:
        raise HTTPException(400, "the Stripe-Signature header is missing")
    try:
        event = stripe.Webhook.construct_event(
            body.decode("utf-8", errors="replace"),
            signature,
            settings.stripe_webhook_secret.get_secret_value(),
            tolerance=settings.webhook_tolerance_s,
        )
    except stripe.SignatureVerificationError as error:
        raise HTTPException(400, f"invalid Stripe signature: {error.user_message or error}") from None
    except ValueError as error:
        raise HTTPException(400, f"not a Stripe event: {error}") from None
    reject_nul(body)
    data: dict[str, Any] = json.loads(str(event))
    if not data.get("id") or not data.get("type"):
        raise HTTPException(400, "not a Stripe event: id and type are required")
    created = data.get("created")
    [accepted] = store_events(
        [
            EventIn(
                source="stripe",
                external_id=str(data["id"]),
                type=str(data["type"]),
                payload=data,
                occurred_at=dt.datetime.fromtimestamp(int(created), dt.UTC) if isinstance(created, int) else None,
            )
        ]
    )
    processing.add([accepted.id] if accepted.id is not None else [])
    return JSONResponse(accepted.model_dump(), status_code=200 if accepted.duplicate else 202)


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 request signature."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


@router.post(
    "/hubspot",
    status_code=202,
    responses={
        400: {"description": "Bad signature, stale timestamp or not HubSpot events"},
        422: {"description": "The events cannot be stored (a NUL character)"},
        403: {"description": "HubSpot webhooks are not configured"},
        413: {"description": "Too large"},
    },
)
async def hubspot_webhook(request: Request) -> JSONResponse:
    settings = get_settings()
    if settings.hubspot_client_secret is None:
        raise HTTPException(403, "HubSpot webhooks are not configured: set SWITCHBOARD_HUBSPOT_CLIENT_SECRET")
    body = await request.body()
    if len(body) > settings.ingest_max_body_bytes:
        raise HTTPException(413, f"body exceeds the limit of {settings.ingest_max_body_bytes} bytes")
    signature = request.headers.get("x-hubspot-signature-v3")
    timestamp = request.headers.get("x-hubspot-request-timestamp", "")
    if not signature or not timestamp.isdigit():
        raise HTTPException(400, "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp headers are required")
    if abs(time.time() * 1000 - int(timestamp)) > HUBSPOT_WINDOW_MS:
        raise HTTPException(400, "stale HubSpot request: the timestamp is more than 5 minutes away")
    expected = hubspot_signature(
        settings.hubspot_client_secret.get_secret_value(), request.method, str(request.url), body, timestamp
    )
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise HTTPException(400, "invalid HubSpot signature")
    reject_nul(body)
    try:
        items = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"body is not valid JSON: {error}") from None
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(i, dict) and i.get("eventId") is not None for i in items)
    ):
        raise HTTPException(400, "not HubSpot events: expected a non-empty array of objects with eventId")
    events = [
        EventIn(
            source="hubspot",
            external_id=str(item["eventId"]),
            type=str(item.get("subscriptionType") or "unknown"),
            occurred_at=dt.datetime.fromtimestamp(int(item["occurredAt"]) / 1000, dt.UTC)
            if str(item.get("occurredAt", "")).isdigit()
            else None,
            payload=item,
        )
        for item in items
    ]
    accepted = store_events(events)
    processing.add([a.id for a in accepted if a.id is not None])
    return JSONResponse(
        {
            "accepted": sum(1 for a in accepted if not a.duplicate),
            "duplicates": sum(1 for a in accepted if a.duplicate),
        },
        status_code=202,
    )
