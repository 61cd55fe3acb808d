"""Who may read the dashboard, its API and /metrics.

With API keys configured (SWITCHBOARD_API_KEYS) every such request needs one, exactly as the
ingestion routes (`api.auth.require_api_key`: `Authorization: Bearer <key>` or `X-API-Key`).
With none configured, only requests from this machine's loopback address are served — the
embedded `make run` default opens the dashboard at once, and an API bound to a public
interface without keys does not expose run payloads or approval buttons to the network.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from switchboard.api.auth import key_digests, require_api_key

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def require_operator(request: Request) -> None:
    """FastAPI dependency: an API key when keys are configured, else a loopback client."""
    if key_digests():
        require_api_key(request)
        return
    host = request.client.host if request.client else ""
    if host not in LOOPBACK:
        raise HTTPException(
            401, "no API keys are configured: set SWITCHBOARD_API_KEYS to use the dashboard from another machine"
        )
