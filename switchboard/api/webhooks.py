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
import time
from typing import Any

import stripe
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from switchboard.api.events import (
    EventAccepted,
    EventIn,
    ascii_int,
    load_json,
    processing,
    reject_nul,
    store_events,
    whole_number,
)
from switchboard.settings import get_settings

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])
HUBSPOT_WINDOW_MS = 300_000
MAX_ID = 2**63 - 1
LATEST_S = int(dt.datetime(9998, 12, 31, tzinfo=dt.UTC).timestamp())  # what an event's time may be


def _moment(seconds: int, what: str) -> dt.datetime:
    if not 0 <= seconds <= LATEST_S:
        raise HTTPException(400, f"{what} is not a Unix time between 1970 and 9998")
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _event(**fields: Any) -> EventIn:
    try:
        return EventIn(**fields)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise HTTPException(400, f"the event cannot be stored: {where}: {first['msg']}") from None


def parse_stripe(body: bytes, signature: str | None, secret: str, tolerance_s: int) -> EventIn:
    """A signed Stripe webhook body as the event to store, or the 4xx that says why not."""
    if not signature:
        raise HTTPException(400, "the Stripe-Signature header is missing")
    try:
        stripe.WebhookSignature.verify_header(body.decode("utf-8", errors="replace"), signature, secret, tolerance_s)
    except stripe.SignatureVerificationError as error:
        raise HTTPException(400, f"invalid Stripe signature: {error.user_message or error}") from None
    except (ValueError, TypeError) as error:  # a header the library cannot even split
        raise HTTPException(400, f"invalid Stripe signature header: {error}") from None
    data = load_json(body)
    if not isinstance(data, dict):
        raise HTTPException(400, "not a Stripe event: a JSON object is required")
    reject_nul(body)
    if not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise HTTPException(400, "not a Stripe event: id and type are required strings")
    inner = data.get("data", {})
    if not isinstance(inner, dict) or not isinstance(inner.get("object", {}), dict):
        raise HTTPException(400, "not a Stripe event: data and data.object must be objects")
    created = whole_number(data.get("created", 0))
    if created is None:
        raise HTTPException(400, "not a Stripe event: created must be a Unix time (an integer)")
    occurred = _moment(created, "created") if "created" in data else None
    return _event(source="stripe", external_id=data["id"], type=data["type"], payload=data, occurred_at=occurred)


def _an_id(value: Any) -> str | None:
    """A HubSpot id as text: a whole number from 0 to 2**63 - 1, or a non-empty string; else None."""
    number = whole_number(value)
    if number is not None:
        return str(number) if 0 <= number <= MAX_ID else None
    return value if isinstance(value, str) and value != "" else None


def parse_hubspot(
    body: bytes, signature: str | None, timestamp: str | None, secret: str, method: str, uri: str, now_ms: float
) -> list[EventIn]:
    """A signed HubSpot webhook body (an array of events) as the events to store, or the 4xx."""
    stamp = ascii_int(timestamp)
    if not signature or stamp is None:
        raise HTTPException(400, "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp (milliseconds) are required")
    if abs(now_ms - stamp) > HUBSPOT_WINDOW_MS:
        raise HTTPException(400, "stale HubSpot request: the timestamp is more than 5 minutes away")
    expected = hubspot_signature(secret, method, uri, body, str(timestamp))
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", errors="replace")):
        raise HTTPException(400, "invalid HubSpot signature")
    items = load_json(body)
    reject_nul(body)
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise HTTPException(400, "not HubSpot events: expected a non-empty array of objects")
    events = []
    for index, item in enumerate(items):
        event_id = _an_id(item.get("eventId"))
        if event_id is None:
            raise HTTPException(400, f"not HubSpot events: [{index}].eventId is required (a number or a string)")
        kind = item.get("subscriptionType")
        if not isinstance(kind, str) or not kind:
            raise HTTPException(400, f"not HubSpot events: [{index}].subscriptionType is required (a string)")
        if "objectId" in item:
            object_id = _an_id(item["objectId"])
            if object_id is None or len(object_id) > 255:
                raise HTTPException(
                    400, f"not HubSpot events: [{index}].objectId must be a number or a string of up to 255 characters"
                )
            if isinstance(item["objectId"], float):  # 128.0 is object 128
                item = {**item, "objectId": int(object_id)}
        for name in ("propertyName", "propertyValue"):
            if not isinstance(item.get(name, ""), str):
                raise HTTPException(400, f"not HubSpot events: [{index}].{name} must be a string")
        occurred = None
        if "occurredAt" in item:
            value = whole_number(item["occurredAt"])
            if value is None:
                raise HTTPException(400, f"not HubSpot events: [{index}].occurredAt must be Unix milliseconds")
            if value > LATEST_S * 1000:
                raise HTTPException(400, f"[{index}].occurredAt is not a Unix time between 1970 and 9998")
            occurred = _moment(value // 1000, f"[{index}].occurredAt")
        events.append(_event(source="hubspot", external_id=event_id, type=kind, occurred_at=occurred,
                             payload=item))  # fmt: skip
    return events


SIGNATURE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad signature, stale timestamp, or a body that is not a storable event"},
    422: {"description": "The event cannot be stored (a NUL character)"},
}


def _signed(headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request of a signed webhook: its signature headers and its JSON body."""
    parameters = [
        {"name": name, "in": "header", "required": True, "description": description, "schema": {"type": "string"}}
        for name, description in headers.items()
    ]
    return {
        "parameters": parameters,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
    }


STRIPE_REQUEST = _signed(
    {"Stripe-Signature": "t=<unix time>,v1=<HMAC-SHA256 of `t.body` with the endpoint's signing secret>"},
    {
        "type": "object",
        "description": "A Stripe event (any type; types Switchboard does not store are kept as `ignored`)",
        "required": ["id", "type"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 255},
            "type": {"type": "string", "minLength": 1, "maxLength": 128},
            "created": {"type": "integer", "minimum": 0, "maximum": LATEST_S},
            "data": {"type": "object", "properties": {"object": {"type": "object"}}},
        },
    },
)
# HubSpot ids are numbers; a string of up to 255 characters is taken too (stored as the event's id)
_ID = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": MAX_ID},
        {"type": "string", "minLength": 1, "maxLength": 255},
    ]
}
HUBSPOT_REQUEST = _signed(
    {
        "X-HubSpot-Signature-v3": "base64 HMAC-SHA256 of method + URI + body + timestamp with the app's client secret",
        "X-HubSpot-Request-Timestamp": "Unix milliseconds, within 5 minutes of now",
    },
    {
        "type": "array",
        "description": "HubSpot webhook events",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["eventId", "subscriptionType"],
            "properties": {
                "eventId": _ID,
                "subscriptionType": {"type": "string", "minLength": 1, "maxLength": 128},
                "objectId": _ID,
                "occurredAt": {"type": "integer", "minimum": 0, "maximum": LATEST_S * 1000, "description": "Unix ms"},
                "propertyName": {"type": "string"},
                "propertyValue": {"type": "string"},
            },
        },
    },
)


@router.post(
    "/stripe",
    status_code=202,
    responses={
        **SIGNATURE_ERRORS,
        200: {"model": EventAccepted, "description": "A redelivered event: accepted, not stored again"},
        202: {"model": EventAccepted, "description": "Accepted"},
        403: {"description": "Stripe webhooks are not configured"},
    },
    openapi_extra=STRIPE_REQUEST,
)
async def stripe_webhook(request: Request) -> JSONResponse:
    settings = get_settings()
    if settings.stripe_webhook_secret is None:
        raise HTTPException(403, "Stripe webhooks are not configured: set SWITCHBOARD_STRIPE_WEBHOOK_SECRET")
    body = await request.body()
    event = parse_stripe(body, request.headers.get("stripe-signature"),
                         settings.stripe_webhook_secret.get_secret_value(), settings.webhook_tolerance_s)  # fmt: skip
    [accepted] = store_events([event])
    processing.add([accepted.id] if accepted.id is not None else [])
    return JSONResponse(accepted.model_dump(), status_code=200 if accepted.duplicate else 202)


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 request signature."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


class HubSpotAccepted(BaseModel):
    accepted: int = Field(description="Events stored now")
    duplicates: int = Field(description="Events stored before (redelivered)")


@router.post(
    "/hubspot",
    status_code=202,
    response_model=HubSpotAccepted,
    responses={**SIGNATURE_ERRORS, 403: {"description": "HubSpot webhooks are not configured"}},
    openapi_extra=HUBSPOT_REQUEST,
)
async def hubspot_webhook(request: Request) -> JSONResponse:
    settings = get_settings()
    if settings.hubspot_client_secret is None:
        raise HTTPException(403, "HubSpot webhooks are not configured: set SWITCHBOARD_HUBSPOT_CLIENT_SECRET")
    body = await request.body()
    events = parse_hubspot(
        body, request.headers.get("x-hubspot-signature-v3"), request.headers.get("x-hubspot-request-timestamp"),
        settings.hubspot_client_secret.get_secret_value(), request.method, str(request.url), time.time() * 1000,
    )  # fmt: skip
    accepted = store_events(events)
    processing.add([a.id for a in accepted if a.id is not None])
    return JSONResponse(
        {
            "accepted": sum(1 for a in accepted if not a.duplicate),
            "duplicates": sum(1 for a in accepted if a.duplicate),
        },
        status_code=202,
    )
