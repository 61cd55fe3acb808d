"""A fake Stripe API: list objects with `has_more` / `starting_after` paging (newest first, with
`created[gt|gte|lt|lte]` range filters, as `GET /v1/events` has), retrieve, form-encoded
updates with `Idempotency-Key` replay (`Idempotent-Replayed: true`), and Stripe's error bodies."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.fakes.http import FakeAPI, Request, Response

RESOURCES = ("charges", "payment_intents", "invoices", "payouts", "balance_transactions", "disputes", "events")


class FakeStripe(FakeAPI):
    name = "stripe"

    def __init__(self, api_key: str = "sk_test_fake") -> None:
        super().__init__()
        self.api_key = api_key
        self.objects: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in RESOURCES}
        self.idempotent: dict[str, tuple[int, Any]] = {}
        self.effects: list[tuple[str, str]] = []  # (resource, id) of every update actually applied

    def add(self, resource: str, obj: dict[str, Any]) -> None:
        self.objects[resource][obj["id"]] = obj

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {}, self.error_body(401, "Invalid API Key provided.")
        return None

    def error_body(self, status: int, message: str = "") -> Any:
        if status == 429:
            return {"error": {"type": "invalid_request_error", "code": "rate_limit",
                              "message": "Too many requests hit the API too quickly."}}  # fmt: skip
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
        return {"error": {"type": kind, "message": message or "Something went wrong on Stripe's end."}}

    def route(self, request: Request) -> Response:
        match = re.fullmatch(r"/v1/([a-z_]+)(?:/([A-Za-z0-9_]+))?", request.path)
        if not match or match.group(1) not in RESOURCES:
            return 404, {}, self.error_body(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        resource, object_id = match.group(1), match.group(2)
        store = self.objects[resource]
        if request.method == "GET" and object_id is None:
            return self._list(request, resource, list(store.values()))
        if request.method == "GET":
            if object_id not in store:
                return 404, {}, self.error_body(404, f"No such {resource[:-1]}: '{object_id}'")
            return 200, {}, store[object_id]
        if request.method == "POST" and object_id is not None:
            key = request.headers.get("idempotency-key")
            if key and key in self.idempotent:
                status, body = self.idempotent[key]
                return status, {"Idempotent-Replayed": "true", "Idempotency-Key": key}, body
            if object_id not in store:
                return 404, {}, self.error_body(404, f"No such {resource[:-1]}: '{object_id}'")
            obj = store[object_id]
            for field, values in request.form().items():
                meta = re.fullmatch(r"metadata\[(.+)\]", field)
                if meta:
                    obj.setdefault("metadata", {})[meta.group(1)] = values[0]
            self.effects.append((resource, object_id))
            if key:
                self.idempotent[key] = (200, json.loads(json.dumps(obj)))
            return 200, {"Idempotency-Key": key or ""}, obj
        return 405, {}, self.error_body(405, "method not allowed")

    def _list(self, request: Request, resource: str, items: list[dict[str, Any]]) -> Response:
        limit = int((request.query.get("limit") or ["10"])[0])
        after = (request.query.get("starting_after") or [None])[0]
        items = sorted(items, key=lambda o: (-int(o.get("created") or 0), o["id"]))  # newest first, like Stripe
        for field in ("payout", "customer", "type", "status"):
            if field in request.query:
                items = [o for o in items if str(o.get(field)) == request.query[field][0]]
        # Stripe's range filters: created[gt|gte|lt|lte]=<unix seconds>
        bounds = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
        for op, holds in bounds.items():
            if f"created[{op}]" in request.query:
                limit_ts = int(request.query[f"created[{op}]"][0])
                items = [o for o in items if holds(int(o.get("created") or 0), limit_ts)]
        start = 0
        if after is not None:
            ids = [o["id"] for o in items]
            start = ids.index(after) + 1 if after in ids else len(ids)
        page = items[start : start + limit]
        body = {"object": "list", "url": f"/v1/{resource}", "has_more": start + limit < len(items), "data": page}
        return 200, {"Request-Id": f"req_{len(self.requests)}"}, body
