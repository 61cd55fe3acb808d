"""Gong-compatible call intelligence over httpx: `GET /v2/calls` (list, cursor paging) and
`POST /v2/calls/extensive` (parties, content, outcome). Auth is HTTP Basic with the access key
and secret given as `SWITCHBOARD_CALLS_API_KEY=ACCESS_KEY:ACCESS_SECRET`."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import httpx

from switchboard.errors import ConfigurationError
from switchboard.integrations.resilience import CallContext, CallFailure, call, policy_for
from switchboard.settings import Settings

_clients: dict[tuple[str, str, float], httpx.Client] = {}


def _http_client(credentials: str, base: str, timeout: float) -> httpx.Client:
    """One httpx client (and connection pool) per process and configuration."""
    key = (credentials, base.rstrip("/"), timeout)
    if key not in _clients:
        basic = base64.b64encode(credentials.encode()).decode()
        _clients[key] = httpx.Client(
            base_url=key[1], headers={"Authorization": f"Basic {basic}", "Accept": "application/json"}, timeout=timeout
        )
    return _clients[key]


class GongProvider:
    name = "gong"

    def __init__(self, settings: Settings, context: CallContext | None = None) -> None:
        if settings.calls_api_key is None:
            raise ConfigurationError("SWITCHBOARD_CALLS_API_KEY is not set (ACCESS_KEY:ACCESS_SECRET)")
        self.settings, self.context = settings, context or CallContext()
        self._http = _http_client(
            settings.calls_api_key.get_secret_value(), settings.calls_api_base, policy_for("calls", settings).timeout_s
        )
        self.account = "default"

    def _request(self, operation: str, method: str, path: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
        def exchange() -> Any:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as error:
                raise CallFailure(None, f"{type(error).__name__}: {error}") from None
            if response.status_code == 404 and operation == "calls.list":
                # Gong answers an empty window with 404 "No calls found corresponding to the
                # provided filters": for a listing that is an empty page, not a failure.
                return {"calls": [], "records": {}}
            if response.status_code >= 400:
                try:
                    errors = response.json().get("errors") or [response.reason_phrase]
                except ValueError:
                    errors = [response.reason_phrase]
                raise CallFailure(response.status_code, "; ".join(map(str, errors)), dict(response.headers))
            try:
                return response.json()
            except ValueError:
                raise CallFailure(None, "unreadable response body") from None

        return call("calls", self.account, operation, arguments, exchange, context=self.context,
                    summarise=_summary, settings=self.settings)  # fmt: skip

    def list_calls(
        self, since: dt.datetime, until: dt.datetime, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        params = {"fromDateTime": since.isoformat(), "toDateTime": until.isoformat()}
        if cursor:
            params["cursor"] = cursor
        body = self._request("calls.list", "GET", "/v2/calls", params, params=params)
        return list(body.get("calls") or []), (body.get("records") or {}).get("cursor")

    def call_details(self, call_ids: list[str], cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        request: dict[str, Any] = {
            "filter": {"callIds": call_ids},
            "contentSelector": {"exposedFields": {"parties": True, "content": {"brief": True, "outline": True}}},
        }
        if cursor:
            request["cursor"] = cursor
        body = self._request("calls.extensive", "POST", "/v2/calls/extensive", request, json=request)
        return list(body.get("calls") or []), (body.get("records") or {}).get("cursor")


def _summary(value: Any) -> Any:
    if isinstance(value, dict) and "calls" in value:
        return {"calls": len(value.get("calls") or []), "records": value.get("records")}
    return value
