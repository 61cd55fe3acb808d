"""A fake HubSpot CRM v3 API: objects (deals, contacts, companies, tasks), owners, search with
`after` paging (filters EQ, CONTAINS_TOKEN, NOT_HAS_PROPERTY and the range operators GT, GTE,
LT, LTE over numbers or dates given as epoch milliseconds or ISO 8601; `sorts`),
`X-HubSpot-RateLimit-*` headers, and HubSpot's error bodies."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

from tests.fakes.http import FakeAPI, Request, Response

OBJECT_TYPES = ("deals", "contacts", "companies", "tasks")


class FakeHubSpot(FakeAPI):
    name = "hubspot"

    def __init__(self, token: str = "pat-na1-00000000-0000-0000-0000-000000000000") -> None:
        super().__init__()
        self.token = token
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TYPES}
        self.owners: list[dict[str, Any]] = []
        self._ids = itertools.count(1001)
        self.remaining_secondly: int | None = None  # when set, reported (and counted down) per response

    def add(self, object_type: str, object_id: str, properties: dict[str, Any], updated_at: str | None = None) -> None:
        self.objects[object_type][object_id] = self._object(object_id, properties, updated_at)

    @staticmethod
    def _object(object_id: str, properties: dict[str, Any], updated_at: str | None = None) -> dict[str, Any]:
        return {"id": object_id, "properties": properties, "createdAt": "2026-11-01T00:00:00.000Z",
                "updatedAt": updated_at or "2026-11-20T00:00:00.000Z", "archived": False}  # fmt: skip

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"status": "error", "message": "Authentication credentials not found.",
                             "correlationId": str(uuid.uuid4()), "category": "INVALID_AUTHENTICATION"}  # fmt: skip
        return None

    def error_body(self, status: int, message: str = "") -> Any:
        if status == 429:
            return {"status": "error", "message": "You have reached your secondly limit.", "errorType": "RATE_LIMIT",
                    "correlationId": str(uuid.uuid4()), "policyName": "SECONDLY"}  # fmt: skip
        category = "OBJECT_NOT_FOUND" if status == 404 else "INTERNAL_ERROR"
        return {"status": "error", "message": message or "internal error", "correlationId": str(uuid.uuid4()),
                "category": category}  # fmt: skip

    def _headers(self) -> dict[str, str]:
        headers = {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
        if self.remaining_secondly is not None:
            headers["X-HubSpot-RateLimit-Secondly"] = "10"
            headers["X-HubSpot-RateLimit-Secondly-Remaining"] = str(max(0, self.remaining_secondly))
            self.remaining_secondly -= 1
        return headers

    def route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:3] == ["crm", "v3", "owners"]:
            return self._page(request, self.owners)
        if parts[:3] != ["crm", "v3", "objects"] or len(parts) < 4 or parts[3] not in OBJECT_TYPES:
            return 404, {}, self.error_body(404, f"no route {request.path}")
        object_type = parts[3]
        store = self.objects[object_type]
        if len(parts) == 5 and parts[4] == "search" and request.method == "POST":
            return self._search(request, list(store.values()))
        if len(parts) == 4 and request.method == "POST":
            body = request.json()
            object_id = str(next(self._ids))
            created = self._object(object_id, dict(body.get("properties") or {}))
            if body.get("associations"):
                created["associations"] = body["associations"]
            with self.lock:
                store[object_id] = created
            return 201, self._headers(), created
        if len(parts) == 4 and request.method == "GET":
            return self._page(request, list(store.values()))
        if len(parts) == 5 and request.method == "GET":
            return 200, self._headers(), store[parts[4]]
        return 405, {}, self.error_body(405, "method not allowed")

    def _page(self, request: Request, items: list[dict[str, Any]]) -> Response:
        limit = int((request.query.get("limit") or ["10"])[0])
        after = int((request.query.get("after") or ["0"])[0])
        page = items[after : after + limit]
        body: dict[str, Any] = {"results": page}
        if after + limit < len(items):
            body["paging"] = {"next": {"after": str(after + limit), "link": "?after=" + str(after + limit)}}
        return 200, self._headers(), body

    def _search(self, request: Request, items: list[dict[str, Any]]) -> Response:
        query = request.json()
        limit, after = int(query.get("limit") or 10), int(query.get("after") or 0)

        def matches(item: dict[str, Any]) -> bool:
            groups = query.get("filterGroups") or []
            if not groups:
                return True
            for group in groups:
                ok = True
                for rule in group.get("filters") or []:
                    value = str(item["properties"].get(rule["propertyName"]) or "")
                    if rule["operator"] == "EQ":
                        ok &= value == str(rule.get("value"))
                    elif rule["operator"] == "CONTAINS_TOKEN":
                        ok &= str(rule.get("value")).strip("*") in value
                    elif rule["operator"] == "NOT_HAS_PROPERTY":
                        ok &= value == ""
                    elif rule["operator"] in RANGE_OPERATORS:
                        have, bound = _comparable(value), _comparable(rule.get("value"))
                        ok &= have is not None and bound is not None and RANGE_OPERATORS[rule["operator"]](have, bound)
                    else:
                        raise ValueError(f"the fake does not support operator {rule['operator']}")
                if ok:
                    return True
            return False

        found = [item for item in items if matches(item)]
        for sort in reversed(query.get("sorts") or []):
            name = sort["propertyName"]
            found.sort(key=lambda item: _comparable(item["properties"].get(name)) or 0.0,
                       reverse=sort.get("direction") == "DESCENDING")  # fmt: skip
        page = found[after : after + limit]
        body: dict[str, Any] = {"total": len(found), "results": page}
        if after + limit < len(found):
            body["paging"] = {"next": {"after": str(after + limit)}}
        return 200, self._headers(), body


RANGE_OPERATORS = {
    "GT": lambda a, b: a > b, "GTE": lambda a, b: a >= b, "LT": lambda a, b: a < b, "LTE": lambda a, b: a <= b,
}  # fmt: skip


def _comparable(value: Any) -> float | None:
    """A number, or a date as epoch milliseconds (HubSpot filters dates with either form)."""
    if value is None or value == "":
        return None
    text = str(value)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp() * 1000
