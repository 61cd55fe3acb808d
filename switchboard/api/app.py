"""The HTTP API (FastAPI). Routers for ingest, runs, approvals and the dashboard join here."""

from __future__ import annotations

from fastapi import FastAPI

from switchboard import __version__
from switchboard.api import approvals, backfill, dashboard, events, health, metrics, runs, webhooks
from switchboard.api.security import BrowserGuard
from switchboard.settings import get_settings


def create_app() -> FastAPI:
    """Build the API application (uvicorn calls this with --factory)."""
    # No /docs or /redoc: FastAPI's pages load their scripts from a CDN, on the origin whose
    # localStorage holds the operator key. /openapi.json stays for any viewer or client.
    api = FastAPI(title="Switchboard", version=__version__, docs_url=None, redoc_url=None)
    api.add_middleware(BrowserGuard, allowed_hosts=get_settings().allowed_hosts)
    api.include_router(health.router)
    api.include_router(events.router)
    api.include_router(webhooks.router)
    api.include_router(backfill.router)
    api.include_router(runs.router)
    api.include_router(approvals.router)
    api.include_router(dashboard.router)
    api.include_router(metrics.router)
    return api


def create_served_app() -> FastAPI:
    """The app as `switchboard api` serves it: the process's logs (uvicorn's included) in the
    configured format (JSON by default), then the application."""
    import logging

    from switchboard.logs import configure_logging, style_handler

    settings = get_settings()
    configure_logging(settings)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            style_handler(handler, settings)
    return create_app()
