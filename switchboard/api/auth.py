"""Who may call what: two key scopes, sent only in a header (`Authorization: Bearer <key>` or
`X-API-Key`), held as SHA-256 digests and compared in constant time.

- **operator** keys (`SWITCHBOARD_OPERATOR_KEYS`, plus the local key that `switchboard api` and
  `standalone` make when none is configured): the dashboard, runs, approvals, replay, metrics
  and the details of health.
- **ingest** keys (`SWITCHBOARD_INGEST_KEYS`): events and backfills.

A key of one scope gets 403 on the other. With no operator key at all (the app served by hand,
without the CLI), operator routes answer only loopback clients that did not come through a
proxy. Cross-site browser requests are refused before any of this (`api/security.py`).
"""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from functools import lru_cache

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import SecretStr

from switchboard.settings import Settings, get_settings

LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1"})
# A request that carries one of these came through a proxy: its peer address says nothing.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


class KeyScope(StrEnum):
    OPERATOR = "operator"
    INGEST = "ingest"


WHAT_A_SCOPE_MAY_DO = {
    KeyScope.OPERATOR: "use the dashboard, approvals, replay and metrics",
    KeyScope.INGEST: "send events and start backfills",
}
WHERE_KEYS_ARE_SET = {KeyScope.OPERATOR: "SWITCHBOARD_OPERATOR_KEYS", KeyScope.INGEST: "SWITCHBOARD_INGEST_KEYS"}


@lru_cache(maxsize=8)
def _digests(operator: tuple[str, ...], ingest: tuple[str, ...]) -> dict[KeyScope, tuple[bytes, ...]]:
    def digest(keys: tuple[str, ...]) -> tuple[bytes, ...]:
        return tuple(hashlib.sha256(key.encode()).digest() for key in keys)

    return {KeyScope.OPERATOR: digest(operator), KeyScope.INGEST: digest(ingest)}


def _secrets(keys: list[SecretStr]) -> tuple[str, ...]:
    return tuple(key.get_secret_value() for key in keys)


def key_digests(settings: Settings | None = None) -> dict[KeyScope, tuple[bytes, ...]]:
    """The configured keys' digests by scope (the local operator key counts as an operator key)."""
    settings = settings or get_settings()
    local = [settings.local_operator_key] if settings.local_operator_key else []
    return _digests(_secrets(settings.operator_keys + local), _secrets(settings.ingest_keys))


def operator_key_required() -> bool:
    """Whether operator routes need a key (else they answer loopback clients only)."""
    return bool(key_digests()[KeyScope.OPERATOR])


def _presented(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")


def _scope_of(presented: str) -> KeyScope | None:
    candidate = hashlib.sha256(presented.encode()).digest()
    found: KeyScope | None = None
    for scope, digests in key_digests().items():
        for digest in digests:  # every digest is compared: the time does not depend on which one matched
            if hmac.compare_digest(candidate, digest):
                found = scope
    return found


def _is_direct_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    return host in LOOPBACK_CLIENTS and not any(name in request.headers for name in FORWARDING_HEADERS)


def _require(request: Request, scope: KeyScope) -> None:
    presented = _presented(request)
    found = _scope_of(presented) if presented else None
    if found is not None and found != scope:
        raise HTTPException(
            403, f"this is an {found} key: it may {WHAT_A_SCOPE_MAY_DO[found]}; this route needs an {scope} key"
        )
    if found == scope:
        return
    if scope is KeyScope.OPERATOR and not operator_key_required():
        if _is_direct_loopback(request):
            return
        raise HTTPException(
            401,
            "no operator keys are configured: this API answers only this machine's loopback clients "
            "(not through a proxy); set SWITCHBOARD_OPERATOR_KEYS to use it from elsewhere",
            headers=CHALLENGE,
        )
    if not key_digests()[scope]:
        raise HTTPException(
            401, f"no {scope} keys are configured: set {WHERE_KEYS_ARE_SET[scope]} to use this route", headers=CHALLENGE
        )
    if not presented:
        raise HTTPException(
            401, f"an {scope} key is required (Authorization: Bearer <key> or X-API-Key)", headers=CHALLENGE
        )
    raise HTTPException(401, "invalid API key", headers=CHALLENGE)


# The two ways to present a key, as OpenAPI security schemes (the document's `securitySchemes`
# and each operation's `security` come from these); `_presented` reads the headers itself.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="Authorization: Bearer <key>")
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="X-API-Key: <key>")


def require_operator(
    request: Request, _bearer: object = Security(BEARER), _key: object = Security(API_KEY_HEADER)
) -> None:
    """FastAPI dependency: an operator key (or, with none configured, a direct loopback client)."""
    _require(request, KeyScope.OPERATOR)


def require_ingest(
    request: Request, _bearer: object = Security(BEARER), _key: object = Security(API_KEY_HEADER)
) -> None:
    """FastAPI dependency: an ingest key."""
    _require(request, KeyScope.INGEST)


def presents_operator_key(request: Request) -> bool:
    """Whether the request carries a valid operator key (the loopback allowance aside)."""
    presented = _presented(request)
    return bool(presented) and _scope_of(presented) is KeyScope.OPERATOR
