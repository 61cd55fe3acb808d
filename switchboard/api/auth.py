"""API keys: configured in SWITCHBOARD_API_KEYS, held only as SHA-256 digests in memory, and
compared in constant time. Sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from fastapi import HTTPException, Request

from switchboard.settings import get_settings


@lru_cache(maxsize=8)
def _digests(fingerprint: str) -> tuple[bytes, ...]:
    settings = get_settings()
    return tuple(hashlib.sha256(key.get_secret_value().encode()).digest() for key in settings.api_keys)


def key_digests() -> tuple[bytes, ...]:
    settings = get_settings()
    # keyed by a digest of the configuration, so a settings reload (tests) is picked up
    fingerprint = hashlib.sha256("\0".join(k.get_secret_value() for k in settings.api_keys).encode()).hexdigest()
    return _digests(fingerprint)


def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries a configured API key."""
    digests = key_digests()
    if not digests:
        raise HTTPException(401, "no API keys are configured: set SWITCHBOARD_API_KEYS to use this endpoint")
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not presented:
        raise HTTPException(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)")
    candidate = hashlib.sha256(presented.encode()).digest()
    matched = False
    for digest in digests:  # every digest is compared: the time does not depend on which one matched
        matched |= hmac.compare_digest(candidate, digest)
    if not matched:
        raise HTTPException(401, "invalid API key")
