"""A fake Gong-compatible API: `GET /v2/calls`, `POST /v2/calls/extensive` and
`POST /v2/calls/transcript` with cursor paging, Basic auth and Gong's error bodies
(`{"requestId": …, "errors": [...]}`).

Extensive data follows Gong's shape: `metaData`, `parties` (`emailAddress`, `affiliation`,
`speakerId`), `context` (CRM objects: `[{"system": "HubSpot", "objects": [{"objectType": "Deal",
"objectId": …}]}]`) and `content` (`brief`, `keyPoints`); transcripts are monologues
(`speakerId`, `topic`, `sentences[].text`)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.fakes.http import FakeAPI, Request, Response

PAGE = 100


class FakeGong(FakeAPI):
    name = "gong"

    def __init__(self, access_key: str = "key", secret: str = "secret") -> None:
        super().__init__()
        self.credentials = base64.b64encode(f"{access_key}:{secret}".encode()).decode()
        self.calls: list[dict[str, Any]] = []  # Gong "metaData"-shaped calls
        # call id → extra extensive data (parties, context, content) and transcript monologues
        self.details: dict[str, dict[str, Any]] = {}
        self.transcripts: dict[str, list[dict[str, Any]]] = {}

    def extensive(self, call: dict[str, Any]) -> dict[str, Any]:
        """One call's extensive data as `POST /v2/calls/extensive` returns it."""
        details = self.details.get(call["id"], {})
        internal = {"id": "p1", "userId": call.get("primaryUserId"), "affiliation": "Internal", "speakerId": "s1"}
        return {"metaData": call, "parties": [internal, *details.get("parties", [])],
                "context": details.get("context", []),
                "content": details.get("content", {"brief": f"Call {call['id']}"})}  # fmt: skip

    def authenticate(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Basic {self.credentials}":
            return 401, {}, self.error_body(401, "Unauthorized")
        return None

    def error_body(self, status: int, message: str = "") -> Any:
        text = message or {429: "API request limit reached", 404: "Not found"}.get(status, "Internal error")
        return {"requestId": uuid.uuid4().hex[:20], "errors": [text]}

    def _page(self, items: list[dict[str, Any]], cursor: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        start = int(cursor or 0)
        page = items[start : start + PAGE]
        records: dict[str, Any] = {"totalRecords": len(items), "currentPageSize": len(page),
                                   "currentPageNumber": start // PAGE}  # fmt: skip
        if start + PAGE < len(items):
            records["cursor"] = str(start + PAGE)
        return page, records

    def route(self, request: Request) -> Response:
        if request.path == "/v2/calls" and request.method == "GET":
            since, until = request.query["fromDateTime"][0], request.query["toDateTime"][0]
            found = [c for c in self.calls if since <= c["started"] < until]
            if not found:
                return 404, {}, self.error_body(404, "No calls found corresponding to the provided filters")
            page, records = self._page(found, (request.query.get("cursor") or [None])[0])
            return 200, {}, {"requestId": uuid.uuid4().hex[:20], "records": records, "calls": page}
        if request.path == "/v2/calls/extensive" and request.method == "POST":
            body = request.json()
            ids = set((body.get("filter") or {}).get("callIds") or [])
            found = [c for c in self.calls if c["id"] in ids]
            page, records = self._page(found, body.get("cursor"))
            extensive = [self.extensive(c) for c in page]
            return 200, {}, {"requestId": uuid.uuid4().hex[:20], "records": records, "calls": extensive}
        if request.path == "/v2/calls/transcript" and request.method == "POST":
            body = request.json()
            ids = [i for i in (body.get("filter") or {}).get("callIds") or [] if i in self.transcripts]
            found = [{"callId": i, "transcript": self.transcripts[i]} for i in ids]
            page, records = self._page(found, body.get("cursor"))
            return 200, {}, {"requestId": uuid.uuid4().hex[:20], "records": records, "callTranscripts": page}
        return 404, {}, self.error_body(404)
