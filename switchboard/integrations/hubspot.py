"""HubSpot through the official `hubspot-api-client`: deals, contacts, companies, owners, search
with paging, and task creation (an Advisor action) de-duplicated by our idempotency key.

Every HTTP exchange goes through `resilience.call` (shared rate budget adjusted from HubSpot's
`X-HubSpot-RateLimit-*` headers, shared circuit breaker, one tool-call row per attempt).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import urllib3
from hubspot import HubSpot
from urllib3.util.retry import Retry

from switchboard.db import toolcalls
from switchboard.errors import ConfigurationError
from switchboard.integrations.resilience import CallContext, CallFailure, RateLimiter, call, policy_for, shared_redis
from switchboard.settings import Settings, get_settings

OBJECT_APIS = {"deals": "deals", "contacts": "contacts", "companies": "companies"}
PAGE_SIZE = 100
# Tasks carry this token in their body so a retried creation finds the task it already made.
KEY_TOKEN_PREFIX = "sbkey"


def key_token(idempotency_key: str) -> str:
    return KEY_TOKEN_PREFIX + "".join(ch for ch in idempotency_key.split(":")[-1] if ch.isalnum())[:32]


_clients: dict[tuple[str, str], HubSpot] = {}


def _sdk_client(token: str, base: str) -> HubSpot:
    """One SDK client per process and configuration (its API clients keep connection pools)."""
    key = (token, base.rstrip("/"))
    if key not in _clients:
        # retry=Retry(total=0): urllib3 must not retry; Celery owns retries (resilience.py).
        _clients[key] = HubSpot(access_token=token, retry=Retry(total=0, redirect=0), host=key[1])
    return _clients[key]


class HubSpotClient:
    def __init__(self, settings: Settings | None = None, context: CallContext | None = None) -> None:
        self.settings = settings or get_settings()
        if self.settings.hubspot_access_token is None:
            raise ConfigurationError("SWITCHBOARD_HUBSPOT_ACCESS_TOKEN is not set")
        self.context = context or CallContext()
        self.timeout = policy_for("hubspot", self.settings).timeout_s
        self._api = _sdk_client(self.settings.hubspot_access_token.get_secret_value(), self.settings.hubspot_api_base)
        self.account = "default"
        self._limiter = RateLimiter(shared_redis(self.settings), "hubspot", self.account, policy_for("hubspot"))

    def _call(self, operation: str, arguments: dict[str, Any], fn: Callable[[], Any]) -> Any:
        def exchange() -> Any:
            try:
                data, _status, headers = fn()
            except urllib3.exceptions.HTTPError as error:
                raise CallFailure(None, f"{type(error).__name__}: {error}") from None
            except Exception as error:
                status = getattr(error, "status", None)
                if not isinstance(status, int) or status == 0:
                    raise
                headers = dict(getattr(error, "headers", None) or {})
                body = getattr(error, "body", None)
                raise CallFailure(status, _error_message(body, getattr(error, "reason", "")), headers) from None
            self._limiter.adjust_from_hubspot(dict(headers or {}))
            return data

        return call(
            "hubspot", self.account, operation, arguments, exchange,
            context=self.context, summarise=_summary, on_headers=self._limiter.adjust_from_hubspot,
            settings=self.settings,
        )  # fmt: skip

    # ------------------------------------------------------------------ reads

    def get(self, object_type: str, object_id: str, properties: list[str] | None = None) -> dict[str, Any]:
        api = getattr(self._api.crm, OBJECT_APIS[object_type]).basic_api
        result = self._call(
            f"{object_type}.get",
            {"id": object_id},
            lambda: api.get_by_id_with_http_info(object_id, properties=properties, _request_timeout=self.timeout),
        )
        return _plain(result)

    def owners(self) -> Iterator[dict[str, Any]]:
        after: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "_request_timeout": self.timeout}
            if after:
                kwargs["after"] = after
            owners_api = self._api.crm.owners.owners_api
            page = self._call(
                "owners.list", {"after": after}, functools.partial(owners_api.get_page_with_http_info, **kwargs)
            )
            yield from (_plain(item) for item in page.results or [])
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return

    def search(
        self, object_type: str, filters: list[dict[str, Any]], properties: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every object matching `filters` (one filter group, ANDed), paging with `after`."""
        after: str | None = None
        while True:
            results, after = self.search_page(object_type, filters, properties, after)
            yield from results
            if not after:
                return

    def search_page(
        self,
        object_type: str,
        filters: list[dict[str, Any]],
        properties: list[str] | None = None,
        after: str | None = None,
        sorts: list[dict[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a search and the `after` cursor of the next page (None after the last)."""
        api = self._search_api(object_type)
        request: dict[str, Any] = {"filterGroups": [{"filters": filters}], "limit": PAGE_SIZE,
                                   "properties": properties or []}  # fmt: skip
        if sorts:
            request["sorts"] = sorts
        if after:
            request["after"] = after
        search = functools.partial(
            api.do_search_with_http_info, public_object_search_request=request, _request_timeout=self.timeout
        )
        page = self._call(f"{object_type}.search", request, search)
        next_after = page.paging.next.after if page.paging and page.paging.next else None
        return [_plain(item) for item in page.results or []], next_after

    def _search_api(self, object_type: str) -> Any:
        if object_type == "tasks":
            return self._api.crm.objects.tasks.search_api
        return getattr(self._api.crm, OBJECT_APIS[object_type]).search_api

    # ------------------------------------------------------------------ writes

    def create_task(
        self,
        *,
        idempotency_key: str,
        subject: str,
        body: str,
        owner_id: str | None,
        due_at_ms: int,
        associations: list[dict[str, Any]],
        may_exist: bool = True,
    ) -> dict[str, Any]:
        """Create a task once per idempotency key: HubSpot has no idempotency header, so the
        key travels in the task body, and when an earlier attempt may have created it
        (`may_exist`) the task is looked up first."""
        token = key_token(idempotency_key)
        arguments = {"idempotency_key": idempotency_key, "subject": subject}
        if may_exist and self.context.run_id is not None:
            made, may_exist = toolcalls.earlier_attempts(
                self.context.run_id, self.context.step, "hubspot:tasks.create", arguments,
                lookup=("hubspot:tasks.search", token),
            )  # fmt: skip
            # An earlier attempt created it and its answer was recorded (the attempt failed after):
            # that is the task. HubSpot's search may not list a task created seconds ago.
            if made is not None and made.get("id"):
                return {**made, "deduplicated": True}
            # Otherwise only an earlier attempt that was not refused with a 4xx can have created it.
        if may_exist:
            existing = list(self.search("tasks", [{"propertyName": "hs_task_body", "operator": "CONTAINS_TOKEN",
                                                    "value": token}], ["hs_task_subject"]))  # fmt: skip
            if existing:
                return {**existing[0], "deduplicated": True}
        properties = {
            "hs_task_subject": subject,
            "hs_task_body": f"{body}\n\n[{token}]",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            "hs_timestamp": str(due_at_ms),
        }
        if owner_id:
            properties["hubspot_owner_id"] = owner_id
        request = {"properties": properties, "associations": associations}
        api = self._api.crm.objects.tasks.basic_api
        created = self._call(
            "tasks.create",
            arguments,
            lambda: api.create_with_http_info(
                simple_public_object_input_for_create=request, _request_timeout=self.timeout
            ),
        )
        return {**_plain(created), "deduplicated": False}


def _plain(value: Any) -> dict[str, Any]:
    """A JSON-ready dict of an SDK model (its datetimes as ISO strings)."""
    raw = value.to_dict() if hasattr(value, "to_dict") else dict(value or {})
    result: dict[str, Any] = json.loads(
        json.dumps(raw, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
    )
    return result


def _summary(value: Any) -> Any:
    plain = _plain(value) if hasattr(value, "to_dict") else value
    if isinstance(plain, Mapping) and "results" in plain:
        return {"results": len(plain.get("results") or []), "paging": plain.get("paging")}
    return plain


def _error_message(body: Any, reason: str) -> str:
    try:
        parsed = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("message"):
        return str(parsed["message"])
    return str(reason or "HubSpot error")
