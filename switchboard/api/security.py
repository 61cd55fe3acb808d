"""What keeps the API safe at its edge — inside an operator's browser and against any client —
for every route and every mode:

- **Host allowlist** (DNS rebinding): `localhost`, `127.0.0.1`, `[::1]` and
  `SWITCHBOARD_ALLOWED_HOSTS`; any other `Host` gets 400 with the reason.
- **No cross-site writes** (CSRF): a request that is not GET/HEAD/OPTIONS and says it comes
  from a browser on another origin (`Sec-Fetch-Site` other than `same-origin`, or an `Origin`
  that is not this host) gets 403 before any route runs. Servers (event senders, Stripe,
  HubSpot) send neither header and go on to their key or signature check.
- **Security headers** on every response: a CSP that allows only this origin's scripts and
  styles and no framing, `X-Frame-Options: DENY`, `nosniff`, `Referrer-Policy: no-referrer`.

- **Bodies bounded while they stream in** (`BodyLimit`): a `Content-Length` over the route's
  limit gets 413 before any route runs; a chunked body gets 413 as soon as the bytes read pass
  it; a body that has not arrived within SWITCHBOARD_API_BODY_TIMEOUT_S gets 408. The limit is
  SWITCHBOARD_INGEST_MAX_BODY_BYTES on the ingest routes (`/api/events`, `/api/webhooks/…`) and
  64 KiB on every other route, so memory held per request is bounded by the limit.

Pure ASGI middleware rather than Starlette's TrustedHostMiddleware plus a header middleware: the
refusals say what to set, and it adds no per-request task (BaseHTTPMiddleware would, on the
ingest path). Not Starlette's `RequestBodyLimitMiddleware` (FastAPI's `max_body_size`): it
answers only when a route reads the body — a route that takes none (approve, replay) would do
its work and then answer 413 — its 413 does not say the limit, and it has no read deadline.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.settings import get_settings

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
INGEST_PATHS = ("/api/events", "/api/webhooks/")
SMALL_BODY_BYTES = 64 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'; object-src 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def host_name(host_header: str) -> str:
    """The name part of a Host header (`[::1]:8000` → `[::1]`), lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cross_site_reason(headers: Headers) -> str | None:
    """Why a state-changing request must be refused as cross-site, or None."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site}): use the dashboard on this origin"
    origin = headers.get("origin")
    if origin is not None:
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        if not netloc or netloc != headers.get("host", "").lower():
            return f"cross-origin request refused (Origin: {origin}): use the dashboard on this origin"
    return None


class BrowserGuard:
    """ASGI middleware: Host allowlist, cross-site refusal and security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = frozenset((*LOCAL_HOSTS, *(host.lower() for host in allowed_hosts)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        name = host_name(headers.get("host", ""))
        if name not in self.allowed:
            reason = f"host {name or '(none)'!r} is not served here: add it to SWITCHBOARD_ALLOWED_HOSTS"
            await refuse(send, 400, reason)
            return
        if scope["method"] not in SAFE_METHODS:
            cross_site = cross_site_reason(headers)
            if cross_site is not None:
                await refuse(send, 403, cross_site)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def refuse(send: Send, status: int, reason: str) -> None:
    """Answer `status` with `{"detail": reason}` (and the security headers), no route involved."""
    body = json.dumps({"detail": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": body})


def body_limit(path: str) -> int:
    """The most bytes a request body to `path` may have."""
    if path.startswith(INGEST_PATHS):
        return get_settings().ingest_max_body_bytes
    return SMALL_BODY_BYTES


class BodyLimit:
    """ASGI middleware: request bodies refused before (Content-Length) or while (chunked) they
    are read, and given a deadline to arrive."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared_header = Headers(scope=scope).get("content-length")
        if declared_header is not None:
            declared = int(declared_header) if declared_header.isascii() and declared_header.isdigit() else None
            if declared is None:
                await refuse(send, 400, f"Content-Length {declared_header[:32]!r} is not a number of bytes")
                return
            if declared > limit:
                await refuse(send, 413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
                return
        timeout_s = get_settings().api_body_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        received = 0
        complete = False

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: what follows is the disconnect, whenever it comes
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"the body did not arrive within {timeout_s:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send)
