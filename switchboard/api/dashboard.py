"""The dashboard: `/dashboard` (a static page, its script and stylesheet, shipped in the
package — no CDN) and the JSON it draws its charts from (`/api/dashboard/…`).

The page itself holds no data and is served to anyone; everything it shows comes from the API
behind `require_operator`, so with an operator key required the page asks for it once (or takes
it from the `#key=` fragment of the link `switchboard standalone` prints), keeps it in the
browser's localStorage and sends it as `X-API-Key`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from switchboard.api.auth import operator_key_required, require_operator
from switchboard.db import queries
from switchboard.settings import get_settings

router = APIRouter(tags=["dashboard"])
STATIC_DIR = Path(__file__).with_name("static")
# chart.umd.min.js: Chart.js 4.6.1 from the npm registry, MIT (chart.js-LICENSE.md beside it)
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "favicon.svg": "image/svg+xml",
          "chart.umd.min.js": "text/javascript", "chart.js-LICENSE.md": "text/markdown"}  # fmt: skip
NO_STORE = {"Cache-Control": "no-cache"}


@router.get("/", include_in_schema=False)
async def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard", include_in_schema=False)
@router.get("/dashboard/runs/{run_id}", include_in_schema=False)
@router.get("/dashboard/evals", include_in_schema=False)
@router.get("/dashboard/insights", include_in_schema=False)
async def dashboard_page(run_id: str | None = None) -> FileResponse:
    """The single page; the run page is the same document, routed in the browser."""
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html", headers=NO_STORE)


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def dashboard_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, f"no asset {name}")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name], headers=NO_STORE)


@router.get("/api/dashboard/config", tags=["dashboard"], openapi_extra={"x-uses-database": False})
async def dashboard_config() -> dict[str, Any]:
    """What the page needs before it can ask for data: whether a key is required (and whether it is
    the local one in the link `switchboard standalone` printed), the refresh period."""
    settings = get_settings()
    return {
        "api_key_required": operator_key_required(),
        "local_key": settings.local_operator_key is not None and not settings.operator_keys,
        "refresh_s": settings.dashboard_refresh_s,
    }


def _charts(hours: int, days: int) -> dict[str, Any]:
    from switchboard.api.metrics import queue_depths

    try:
        depths: dict[str, int] | None = queue_depths()
    except Exception:  # the broker is down: the other charts still draw
        depths = None
    return {
        "hours": hours,
        "days": days,
        "latency": queries.latency_percentiles(hours),
        "outcomes": queries.run_outcomes(hours),
        "usage": queries.usage_per_day(days),
        "queues": depths,
    }


@router.get("/api/dashboard/charts", dependencies=[Depends(require_operator)], tags=["dashboard"])
async def charts(
    hours: int = Query(24, ge=1, le=queries.MAX_CHART_HOURS, description="Window of the hourly series"),
    days: int = Query(14, ge=1, le=queries.MAX_CHART_DAYS, description="Window of the daily usage series"),
) -> dict[str, Any]:
    """p50/p95 step latency per agent per hour, runs per hour by outcome with the success rate,
    tokens and estimated cost per day, and the current depth of each queue (null: broker down)."""
    return await run_in_threadpool(_charts, hours, days)


@router.get("/api/dashboard/queues", dependencies=[Depends(require_operator)], tags=["dashboard"])
async def queues() -> dict[str, int]:
    """Messages waiting in each Celery queue now."""
    from switchboard.api.metrics import queue_depths

    try:
        return await run_in_threadpool(queue_depths)
    except Exception as error:
        raise HTTPException(503, f"the broker cannot be read: {type(error).__name__}") from None
