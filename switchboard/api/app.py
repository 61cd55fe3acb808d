"""The HTTP API (FastAPI). Routers for ingest, runs, approvals and the dashboard join here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from switchboard import __version__
from switchboard.api import (
    approvals,
    backfill,
    contract,
    dashboard,
    evals,
    events,
    health,
    insights,
    metrics,
    runs,
    webhooks,
)  # fmt: skip
from switchboard.api.security import BodyLimit, BrowserGuard
from switchboard.errors import InvalidState, NotFound
from switchboard.settings import get_settings


def _answer(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def answer(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status)

    return answer


def create_app() -> FastAPI:
    """Build the API application (uvicorn calls this with --factory)."""
    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, on the origin whose
    # localStorage holds the operator key. /openapi.json stays for any viewer or client.
    api = FastAPI(
        title="Switchboard", version=__version__, docs_url=None, redoc_url=None,
        dependencies=[Depends(contract.single_valued_query)],
    )  # fmt: skip
    api.add_middleware(BodyLimit)  # inside the guard: a foreign Host or cross-site write is refused first
    api.add_middleware(BrowserGuard, allowed_hosts=get_settings().allowed_hosts)
    # what a route names may not exist (404) or not allow the request (409): the error says why
    api.add_exception_handler(NotFound, _answer(404))
    api.add_exception_handler(InvalidState, _answer(409))
    api.include_router(health.router)
    api.include_router(events.router)
    api.include_router(webhooks.router)
    api.include_router(backfill.router)
    api.include_router(runs.router)
    api.include_router(runs.records_router)
    api.include_router(approvals.router)
    api.include_router(insights.router)
    api.include_router(evals.router)
    api.include_router(dashboard.router)
    api.include_router(metrics.router)
    contract.install(api)
    return api


def create_served_app() -> FastAPI:
    """The app as `switchboard api` serves it: the process's logs (uvicorn's included) in the
    configured format (JSON by default), then the application."""
    import logging

    from switchboard import tracing
    from switchboard.logs import configure_logging, style_handler

    settings = get_settings()
    configure_logging(settings)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            style_handler(handler, settings)
    tracing.setup("switchboard-api", settings)
    return create_app()
