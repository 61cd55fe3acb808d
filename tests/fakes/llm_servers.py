"""Local fake LLM servers speaking the real wire formats, for the real SDKs to call over HTTP.

- `FakeAnthropic`: `POST /v1/messages` (Anthropic Messages API: content blocks, `tool_use`,
  `stop_reason`, `usage.input_tokens/output_tokens`; errors as `{"type": "error", "error":
  {"type": ..., "message": ...}}` with `retry-after` / `retry-after-ms` headers).
- `FakeGemini`: `POST /v1[beta]/models/{model}:generateContent` (candidates with `parts`,
  `functionCall`, `finishReason`, `usageMetadata.promptTokenCount/candidatesTokenCount`; errors
  as `{"error": {"code", "message", "status"}}`).

A scripted "brain" answers each agent (recognised by its system prompt) with valid JSON, calling
a tool first when tools are offered. Faults are queued per agent: the next matching request
gets a 429 (with Retry-After), a 529 overload, a 500, a malformed body, or a malformed answer.
Every successful response's usage is recorded, so tests can compare it with what was stored.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROOT_CAUSE_BY_KIND = {
    "stripe_payout_mismatch": "reconciliation_gap",
    "hubspot_deal_without_owner": "crm_data_hygiene",
    "hubspot_contact_without_owner": "crm_data_hygiene",
    "hubspot_closed_won_without_payment": "sync_gap",
    "calls_connect_rate_drop": "list_quality",
    "calls_short_call_ratio": "rep_performance",
}


@dataclass(frozen=True)
class Fault:
    """What the next matching request gets instead of a normal answer."""

    # "rate_limit" | "overloaded" | "server_error" | "malformed_body" | "answer" | "normal" |
    # "tool_call" (Anthropic: call a tool again, when tools may be called)
    kind: str
    retry_after: str | None = None  # Retry-After header value (seconds or HTTP date)
    retry_after_ms: str | None = None  # Anthropic's retry-after-ms
    text: str = ""  # for kind="answer": the model's (possibly malformed) text


@dataclass
class Served:
    """One request the fake answered."""

    agent: str
    status: int
    tokens_in: int = 0
    tokens_out: int = 0
    tool_use: bool = False
    request: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


TOOL_CHOICES = ("auto", "any", "tool", "none")


def _messages_request_problem(request: dict[str, Any]) -> str | None:
    """What the Messages API refuses in a request's tool use, in its own words, or None.

    The rules of the tool-use guide (platform.claude.com, agents-and-tools/tool-use): a request
    whose messages hold `tool_use` or `tool_result` blocks must define `tools` (to stop the
    model calling them, keep them and send `tool_choice: {"type": "none"}`); `tool_choice.type`
    is one of auto, any, tool, none; every `tool_result` answers a `tool_use` id of the
    assistant turn just before it."""
    blocks = [
        (index, block)
        for index, message in enumerate(request.get("messages") or [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict)
    ]
    if any(block.get("type") in ("tool_use", "tool_result") for _, block in blocks) and not request.get("tools"):
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    choice = request.get("tool_choice")
    if choice is not None and (not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES):
        return f"tool_choice.type: Input should be one of {', '.join(TOOL_CHOICES)}"
    messages = request.get("messages") or []
    for index, block in blocks:
        if block.get("type") != "tool_result":
            continue
        before = messages[index - 1] if index > 0 else {}
        asked = {
            b.get("id") for b in (before.get("content") if isinstance(before.get("content"), list) else [])
            if isinstance(b, dict) and b.get("type") == "tool_use"
        }  # fmt: skip
        if before.get("role") != "assistant" or block.get("tool_use_id") not in asked:
            return (
                f"messages.{index}: `tool_result` block(s) provided when previous message does not have "
                f"matching `tool_use` block(s): {block.get('tool_use_id')}"
            )
    return None


def agent_of(system: str) -> str:
    for agent in ("Watcher", "Analyst", "Advisor"):
        if f"You are the {agent}" in system:
            return agent.lower()
    return "unknown"


def first_json_object(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        return {}
    value, _ = json.JSONDecoder().raw_decode(text, start)
    return value if isinstance(value, dict) else {}


def count_tokens(payload: Any) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, len(json.dumps(payload, sort_keys=True)) // 4)


def answer_for(agent: str, first_user_text: str, tools_offered: bool, tool_results_seen: bool) -> dict[str, Any]:
    """The brain: a tool call ({"tool": name, "input": ...}) or an answer ({"text": json})."""
    document = first_json_object(first_user_text)
    if agent == "watcher":
        return {"text": json.dumps({"summary": f"{document.get('severity')}: {document.get('title')}", "rank": 1})}
    if agent == "analyst":
        entity = document.get("entity") or {}
        if tools_offered and not tool_results_seen:
            lookup = {"source": entity.get("source"), "object_type": entity.get("type"), "object_id": entity.get("id")}
            return {"tool": "get_record", "input": lookup}
        answer = {
            "root_cause": ROOT_CAUSE_BY_KIND.get(str(document.get("kind")), "unknown"),
            "narrative": f"Fake analysis of {document.get('title')}.",
            "evidence_ids": list(document.get("evidence_ids") or [])[:3],
            "confidence": 0.5,
        }
        return {"text": "```json\n" + json.dumps(answer) + "\n```"}
    if agent == "advisor":
        alert = (document.get("alert") or {}) if document else {}
        entity = alert.get("entity") or {"source": "stripe", "type": "account", "id": "unknown"}
        action = {
            "type": "flag_finance_review",
            "summary": f"Review: {alert.get('title')}",
            "entities": [entity],
            "reason": "fake model plan",
        }
        return {"text": json.dumps({"actions": [action], "rationale": "Flag it for a human review."})}
    return {"text": "{}"}


class _FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 with per-agent fault queues and a usage ledger."""

    name = "fake"

    def __init__(self) -> None:
        self.served: list[Served] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                status, headers, payload = outer.handle(self.path, dict(self.headers.items()), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-{self.name}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> _FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> _FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, agent: str, *faults: Fault) -> None:
        """The next len(faults) requests of `agent` get these faults, in order."""
        with self._lock:
            self._faults[agent].extend(faults)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.served.clear()

    def usage(self, agent: str | None = None) -> tuple[int, int]:
        """(input tokens, output tokens) of every successful answer (optionally of one agent)."""
        with self._lock:
            rows = [s for s in self.served if s.status == 200 and (agent is None or s.agent == agent)]
        return sum(s.tokens_in for s in rows), sum(s.tokens_out for s in rows)

    def _next_fault(self, agent: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(agent)
            return queue.popleft() if queue else None

    def _record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError


class FakeAnthropic(_FakeServer):
    name = "anthropic"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        lowered = {k.lower(): v for k, v in headers.items()}
        if path.split("?")[0] != "/v1/messages":
            return 404, {}, _anthropic_error("not_found_error", f"no route {path}")
        # SDK 2.x sends the key as `Authorization: Bearer`; older SDKs and curl use `x-api-key`.
        if not lowered.get("x-api-key") and not lowered.get("authorization", "").startswith("Bearer "):
            return 401, {}, _anthropic_error("authentication_error", "x-api-key header is required")
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            return 400, {}, _anthropic_error("invalid_request_error", "body is not JSON")
        for required in ("model", "max_tokens", "messages"):
            if required not in request:
                return 400, {}, _anthropic_error("invalid_request_error", f"{required}: Field required")
        system = request.get("system") or ""
        agent = agent_of(system if isinstance(system, str) else json.dumps(system))
        invalid = _messages_request_problem(request)
        if invalid is not None:  # as the Messages API answers it, before any model work
            self._record(Served(agent, 400, request=request, headers=lowered))
            return 400, {}, _anthropic_error("invalid_request_error", invalid)
        fault = self._next_fault(agent)
        served = Served(agent, 200, request=request, headers=lowered)
        if fault is not None and fault.kind not in ("answer", "normal", "tool_call"):
            return self._fault(fault, served)
        again = fault is not None and fault.kind == "tool_call"
        if fault is not None and fault.kind in ("normal", "tool_call"):
            fault = None
        messages = request["messages"]
        first_text = _anthropic_text(messages[0]["content"]) if messages else ""
        tool_results_seen = any(
            isinstance(m.get("content"), list) and any(b.get("type") == "tool_result" for b in m["content"])
            for m in messages
        )
        tools_callable = bool(request.get("tools")) and (request.get("tool_choice") or {}).get("type") != "none"
        if fault is not None:
            decision: dict[str, Any] = {"text": fault.text}
        else:
            decision = answer_for(agent, first_text, tools_callable, tool_results_seen and not again)
        if "tool" in decision:
            self._calls += 1
            content: list[dict[str, Any]] = [
                {"type": "text", "text": "Let me look that up."},
                {"type": "tool_use", "id": f"toolu_fake{self._calls:04d}", "name": decision["tool"],
                 "input": decision["input"]},
            ]  # fmt: skip
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": decision["text"]}]
            stop = "end_turn"
        served.tokens_in, served.tokens_out, served.tool_use = (
            count_tokens(request),
            count_tokens(content),
            "tool" in decision,
        )
        self._record(served)
        return 200, {"request-id": f"req_fake{len(self.served)}"}, {
            "id": f"msg_fake{len(self.served):04d}", "type": "message", "role": "assistant",
            "model": request["model"], "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": served.tokens_in, "output_tokens": served.tokens_out,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }  # fmt: skip

    def _fault(self, fault: Fault, served: Served) -> tuple[int, dict[str, str], Any]:
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = fault.retry_after_ms
        if fault.kind == "rate_limit":
            status, payload = (
                429,
                _anthropic_error("rate_limit_error", "Number of request tokens has exceeded your rate limit"),
            )
        elif fault.kind == "overloaded":
            status, payload = 529, _anthropic_error("overloaded_error", "Overloaded")
        elif fault.kind == "server_error":
            status, payload = 500, _anthropic_error("api_error", "Internal server error")
        else:  # malformed_body: a 200 whose body is not JSON
            status, payload = 200, b'{"id": "msg_broken", "content": [tr'
        served.status = status if fault.kind != "malformed_body" else 599
        self._record(served)
        return status, headers, payload


def _anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _anthropic_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


class FakeGemini(_FakeServer):
    name = "gemini"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        lowered = {k.lower(): v for k, v in headers.items()}
        route = path.split("?")[0]
        # google-genai 3.x calls /v1/ by default; earlier releases (and GOOGLE_GENAI_API_VERSION=beta) /v1beta/.
        prefix = next((p for p in ("/v1/models/", "/v1beta/models/") if route.startswith(p)), None)
        suffix = ":generateContent"
        if prefix is None or not route.endswith(suffix):
            return 404, {}, _gemini_error(404, "NOT_FOUND", f"no route {path}")
        model = route[len(prefix) : -len(suffix)]
        if not lowered.get("x-goog-api-key"):
            return 403, {}, _gemini_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.")
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            return 400, {}, _gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        contents = request.get("contents") or []
        system_parts = ((request.get("systemInstruction") or {}).get("parts")) or []
        agent = agent_of("".join(p.get("text", "") for p in system_parts))
        fault = self._next_fault(agent)
        served = Served(agent, 200, request=request, headers=lowered)
        if fault is not None and fault.kind not in ("answer", "normal"):
            headers_out = {"retry-after": fault.retry_after} if fault.retry_after is not None else {}
            if fault.kind == "rate_limit":
                status, payload = 429, _gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted")
            elif fault.kind in ("overloaded", "server_error"):
                status, payload = 503, _gemini_error(503, "UNAVAILABLE", "The model is overloaded.")
            else:
                status, payload = 200, b'{"candidates": [{"content": '
            served.status = status if fault.kind != "malformed_body" else 599
            self._record(served)
            return status, headers_out, payload
        first_text = "".join(p.get("text", "") for p in (contents[0].get("parts") or [])) if contents else ""
        tool_results_seen = any("functionResponse" in p for c in contents for p in (c.get("parts") or []))
        mode = ((request.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
        if fault is not None and fault.kind == "normal":
            fault = None
        if fault is not None:
            decision: dict[str, Any] = {"text": fault.text}
        else:
            decision = answer_for(agent, first_text, bool(request.get("tools")) and mode != "NONE", tool_results_seen)
        if "tool" in decision:
            parts: list[dict[str, Any]] = [{"functionCall": {"name": decision["tool"], "args": decision["input"]}}]
        else:
            parts = [{"text": decision["text"]}]
        served.tokens_in, served.tokens_out, served.tool_use = (
            count_tokens(request),
            count_tokens(parts),
            "tool" in decision,
        )
        self._record(served)
        return 200, {}, {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": served.tokens_in, "candidatesTokenCount": served.tokens_out,
                              "totalTokenCount": served.tokens_in + served.tokens_out},
            "modelVersion": model,
            "responseId": f"fake-{len(self.served)}",
        }  # fmt: skip


def _gemini_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}
