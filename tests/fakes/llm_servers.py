"""Local fake LLM servers speaking the real wire formats, as strict as the real APIs, for the
real SDKs to call over HTTP.

- `FakeAnthropic`: `POST /v1/messages` (content blocks, `tool_use`, thinking blocks with
  signatures, `stop_reason`, `usage` with cache tokens; errors `{"type": "error", "error":
  {"type", "message"}}` with `retry-after` and `anthropic-ratelimit-*` headers).
- `FakeGemini`: `POST /v1[beta]/models/{model}:generateContent` (candidates with `parts`,
  `functionCall` with `thoughtSignature`, `finishReason`, `usageMetadata` with thoughts and
  cached tokens; errors `{"error": {"code", "message", "status"}}`).

Strict: every request is checked against the rules the providers document (the
`_*_problems` functions name their source) and refused with the real API's 400 —
`invalid_request_error` / `INVALID_ARGUMENT`, in its words — before any model work. A refused
request is recorded (status 400), so a test can assert that none was sent.

A scripted "brain" answers each agent (recognised by its system prompt): the Analyst calls a
tool first when it may, then every agent answers through the `answer` tool when it is defined
(as `tool_choice` allows), in JSON text otherwise. `inject(agent, *faults)` scripts what real
models do to the next requests of an agent: prose instead of the answer, JSON in a code fence,
several tool calls in one turn, `max_tokens` with a truncated answer, `refusal`, `pause_turn`,
429 (with the rate-limit headers), 529 overload, 500, an unreadable body; `overload_for(s)`
makes every request a 529 (or 503) for a while. Usage is recorded per answer, so tests compare
it with what Switchboard stored: input billed at the full price, output (thinking included),
cache reads and writes (a prompt-cache simulation over the request's `cache_control` prefixes;
Gemini's implicit cache over a repeated prefix).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

ROOT_CAUSE_BY_KIND = {
    "stripe_payout_mismatch": "reconciliation_gap",
    "hubspot_deal_without_owner": "crm_data_hygiene",
    "hubspot_contact_without_owner": "crm_data_hygiene",
    "hubspot_closed_won_without_payment": "sync_gap",
    "calls_connect_rate_drop": "list_quality",
    "calls_short_call_ratio": "rep_performance",
}
ANSWER = "answer"
PROSE = "The records show the anomaly is real and worth a look."
SIGNING_KEY = b"fake-thinking-signatures"
# Fewest prompt tokens a cache breakpoint caches (the fakes use one figure for every model).
MIN_CACHEABLE = 1024


@dataclass(frozen=True)
class Fault:
    """What the next matching request of an agent gets instead of the brain's normal answer.

    HTTP: "rate_limit" (429), "overloaded" (529; Gemini 503), "server_error" (500),
    "malformed_body" (a 200 that is not JSON). Model behaviour: "answer" (this text instead of
    the answer), "prose" (an explanation without JSON), "fenced" (the JSON answer in a ```json
    fence), "tool_calls" (two tool calls in one turn), "tool_call" (call a tool again),
    "max_tokens" (cut off mid-answer), "refusal", "pause_turn" (Anthropic), "answer_input" (call
    the answer tool with ``input``, valid or not: tool inputs are not checked against the
    schema), "normal" (no fault: lets a later fault hit a later turn). Behaviours that choose
    between text and tools apply where the request lets the model choose (tool_choice auto);
    under a forced tool the API guarantees the call, so they are used up without effect.
    """

    kind: str
    retry_after: str | None = None  # Retry-After header value (seconds or HTTP date)
    retry_after_ms: str | None = None  # Anthropic's retry-after-ms
    text: str = ""  # for kind="answer": the model's (possibly malformed) text
    input: dict[str, Any] | None = None  # for kind="answer_input"
    think_s: float = 0.0  # the model takes this long before it answers (a slow turn)


MODEL_CHOICES = ("answer", "prose", "fenced", "tool_calls", "tool_call", "max_tokens", "refusal", "pause_turn",
                 "answer_input")  # fmt: skip
# What a model can do even when the request forces the answer tool.
UNDER_FORCE = ("max_tokens", "refusal", "answer_input")


def _kind(fault: Fault | None, forced: bool) -> str:
    if fault is None or (forced and fault.kind not in UNDER_FORCE):
        return "normal"
    return fault.kind


@dataclass
class Served:
    """One request the fake answered."""

    agent: str
    status: int
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0
    tool_use: bool = False
    stop: str | None = None
    problem: str | None = None  # why a 400 refused it
    batch: str | None = None  # the Message Batch it came in
    request: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class Usage(NamedTuple):
    tokens_in: int
    tokens_out: int
    cache_read: int
    cache_write: int


def agent_of(system: str) -> str:
    for agent in ("Watcher", "Analyst", "Advisor"):
        if f"You are the {agent}" in system:
            return agent.lower()
    if "You grade" in system:
        return "judge"
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


def answer_for(agent: str, first_user_text: str) -> dict[str, Any]:
    """What the brain answers for an agent, as the `answer` tool's input."""
    document = first_json_object(first_user_text)
    if agent == "watcher":
        return {"summary": f"{document.get('severity')}: {document.get('title')}", "rank": 1}
    if agent == "analyst":
        return {
            "root_cause": ROOT_CAUSE_BY_KIND.get(str(document.get("kind")), "unknown"),
            "narrative": f"Fake analysis of {document.get('title')}.",
            "evidence_ids": list(document.get("evidence_ids") or [])[:3],
            "confidence": 0.5,
        }
    if agent == "judge":  # passes what names a figure, fails the rest: verdicts the eval must store
        figures = any(ch.isdigit() for ch in first_user_text.rsplit("Explanation to grade:", 1)[-1])
        return {"verdicts": {name: {"pass": figures, "reason": "fake judge"}
                             for name in ("explains_cause", "uses_evidence", "actionable")}}  # fmt: skip
    if agent == "advisor":
        alert = (document.get("alert") or {}) if document else {}
        entity = alert.get("entity") or {"source": "stripe", "type": "account", "id": "unknown"}
        action = {"type": "flag_finance_review", "summary": f"Review: {alert.get('title')}", "entities": [entity],
                  "reason": "fake model plan"}  # fmt: skip
        return {"actions": [action], "rationale": "Flag it for a human review."}
    return {}


CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BATCH_ROUTE = re.compile(r"^/v1/messages/batches/([A-Za-z0-9_]+)(/results)?$")
POOR_ROOT_CAUSE = {"stripe": "card_declines", "hubspot": "crm_data_hygiene", "calls": "rep_performance"}


def poor_answer_for(agent: str, first_user_text: str) -> dict[str, Any]:
    """A deliberately poor model: one root cause per source whatever the evidence, and always
    a finance review, whatever the alert."""
    answer = answer_for(agent, first_user_text)
    if agent == "analyst":
        source = str((first_json_object(first_user_text).get("entity") or {}).get("source"))
        answer["root_cause"] = POOR_ROOT_CAUSE.get(source, "unknown")
    return answer


Brain = Callable[[str, str], dict[str, Any]]


def lookup_for(first_user_text: str) -> dict[str, Any]:
    entity = first_json_object(first_user_text).get("entity") or {}
    return {"source": entity.get("source"), "object_type": entity.get("type"), "object_id": entity.get("id")}


def _sign(text: str) -> str:
    return base64.b64encode(hmac.new(SIGNING_KEY, text.encode(), hashlib.sha256).digest()).decode()


class _FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1 with per-agent fault queues and a usage ledger."""

    name = "fake"

    def __init__(self) -> None:
        self.served: list[Served] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._calls = 0
        self._overloaded_until = 0.0
        self._cache: dict[str, float] = {}  # prompt-prefix digest → expiry (monotonic)
        self.rate_limit_headers: dict[str, str] = {}  # sent on every answer (Anthropic)
        self.brain: Brain = answer_for  # what the model answers: (agent, first user text) → answer tool input
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                self._send(*outer.handle(self.path, dict(self.headers.items()), body))

            def do_GET(self) -> None:
                self._send(*outer.handle_get(self.path, dict(self.headers.items())))

            def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", headers.pop("content-type", "application/json"))
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

    def handle_get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        return 404, {}, {"error": f"no route {path}"}

    def inject(self, agent: str, *faults: Fault) -> None:
        """The next len(faults) requests of `agent` get these faults, in order."""
        with self._lock:
            self._faults[agent].extend(faults)

    def overload_for(self, seconds: float) -> None:
        """Every request is refused as overloaded for the next ``seconds``."""
        with self._lock:
            self._overloaded_until = time.monotonic() + seconds

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.served.clear()
            self._cache.clear()
            self._overloaded_until = 0.0
            self.rate_limit_headers = {}
            self.brain = answer_for

    def usage(self, agent: str | None = None) -> Usage:
        """Usage of every answer (optionally of one agent), as billed."""
        with self._lock:
            rows = [s for s in self.served if s.status == 200 and (agent is None or s.agent == agent)]
        return Usage(sum(s.tokens_in for s in rows), sum(s.tokens_out for s in rows),
                     sum(s.cache_read for s in rows), sum(s.cache_write for s in rows))  # fmt: skip

    def rejected(self) -> list[Served]:
        """The requests refused as invalid (400)."""
        with self._lock:
            return [s for s in self.served if s.status == 400]

    def _overloaded(self) -> bool:
        with self._lock:
            return time.monotonic() < self._overloaded_until

    def _next_fault(self, agent: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(agent)
            fault = queue.popleft() if queue else None
        if fault is not None and fault.think_s:
            time.sleep(fault.think_s)
        return fault

    def _record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)

    def _cached(self, digest: str) -> bool:
        """Whether a prompt prefix is in the cache (and keep it there 5 more minutes)."""
        with self._lock:
            hit = self._cache.get(digest, 0.0) > time.monotonic()
            self._cache[digest] = time.monotonic() + 300
            return hit

    def _next_id(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError


# --------------------------------------------------------------------------- Anthropic

TOOL_CHOICES = ("auto", "any", "tool", "none")
# The tool name rule as the issue states it (the Messages API now allows up to 128 characters).
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _messages_request_problems(request: dict[str, Any]) -> str | None:
    """What the Messages API refuses in a request, in its own words, or None.

    Sources: the API reference (required `model`, `max_tokens`, `messages`); the tool-use guide
    (platform.claude.com, agents-and-tools/tool-use: tool blocks need `tools` — to stop tool
    use keep them with `tool_choice: {"type": "none"}`; each `tool_use` is answered by a
    `tool_result` in the next user turn, results first; tool names match
    `^[a-zA-Z0-9_-]{1,64}$`; `input_schema` is an object schema); extended thinking
    (build-with-claude/extended-thinking: `budget_tokens` at least 1024 and below
    `max_tokens`; only `auto`/`none` tool_choice — "Thinking may not be enabled when
    tool_choice forces tool use."; thinking blocks passed back unchanged, a tool-use
    continuation's assistant turn starting with one); prompt caching (at most 4 `cache_control`
    blocks); prefill removed on current models ("This model does not support assistant message
    prefill."), a paused server-tool turn being the one assistant turn that may end a request.
    """
    for required in ("model", "max_tokens", "messages"):
        if required not in request:
            return f"{required}: Field required"
    if not isinstance(request["max_tokens"], int) or request["max_tokens"] < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = request["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    tools = request.get("tools") or []
    names = [tool.get("name") for tool in tools]
    for index, tool in enumerate(tools):
        if not isinstance(tool.get("name"), str) or not TOOL_NAME.match(tool["name"]):
            return f"tools.{index}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        if (tool.get("input_schema") or {}).get("type") != "object":
            return f"tools.{index}.custom.input_schema.type: Input should be 'object'"
    if len(set(names)) != len(names):
        return "tools: Tool names must be unique."
    thinking = request.get("thinking")
    if thinking is not None:
        kind = thinking.get("type")
        if kind not in ("enabled", "disabled", "adaptive"):
            return "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'"
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
            if budget >= request["max_tokens"]:
                return "`max_tokens` must be greater than `thinking.budget_tokens`."
    thinking_on = thinking is not None and thinking.get("type") in ("enabled", "adaptive")
    choice = request.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in TOOL_CHOICES:
            return f"tool_choice.type: Input should be one of {', '.join(TOOL_CHOICES)}"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: tool {choice.get('name')!r} is not defined in tools"
        if thinking_on and choice["type"] in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
    marked = sum(1 for t in tools if "cache_control" in t)
    system = request.get("system")
    if isinstance(system, list):
        marked += sum(1 for b in system if isinstance(b, dict) and "cache_control" in b)
    marked += sum(1 for m in messages for b in _blocks(m) if "cache_control" in b)
    if marked > 4:
        return f"A maximum of 4 blocks with cache_control may be provided. Found {marked}."
    if any(b.get("type") in ("tool_use", "tool_result") for m in messages for b in _blocks(m)) and not tools:
        return "Requests which include `tool_use` or `tool_result` blocks must define tools."
    for index, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if index == 0 and role != "user":
            return 'messages: first message must use the "user" role'
        if index > 0 and role == messages[index - 1].get("role"):
            return (
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" '
                "roles in a row"
            )
        content = message.get("content")
        if not content:
            return f"messages.{index}: all messages must have non-empty content"
        blocks = _blocks(message)
        if role == "user":
            asked = [b.get("id") for b in _blocks(messages[index - 1]) if b.get("type") == "tool_use"] if index else []
            results = [b for b in blocks if b.get("type") == "tool_result"]
            for block in results:
                if block.get("tool_use_id") not in asked:
                    return (f"messages.{index}.content: `tool_result` block(s) provided when previous message does not "
                            f"have matching `tool_use` block(s): {block.get('tool_use_id')}")  # fmt: skip
            answered = {b.get("tool_use_id") for b in results}
            missing = [call_id for call_id in asked if call_id not in answered]
            if missing:
                return (f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                        f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                        "in the next message.")  # fmt: skip
            kinds = [b.get("type") for b in blocks]
            if results and kinds[: len(results)] != ["tool_result"] * len(results):
                return f"messages.{index}.content: `tool_result` blocks must come first in the content"
        else:
            for block in blocks:
                if block.get("type") == "thinking" and block.get("signature") != _sign(str(block.get("thinking"))):
                    return f"messages.{index}.content: Invalid `signature` in `thinking` block"
            uses_tools = any(b.get("type") == "tool_use" for b in blocks)
            if thinking_on and uses_tools and blocks[0].get("type") not in ("thinking", "redacted_thinking"):
                return (f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                        f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must "
                        "start with a thinking block.")  # fmt: skip
    last = messages[-1]
    if last.get("role") == "assistant" and not any(b.get("type") == "server_tool_use" for b in _blocks(last)):
        return "This model does not support assistant message prefill. The conversation must end with a user message."
    return None


LOOKBACK_BLOCKS = 20  # how far before a breakpoint the API looks for an earlier cached prefix


def _anthropic_prefix(request: dict[str, Any]) -> tuple[int, list[tuple[str, int, bool]]]:
    """(prompt tokens, [(digest, tokens, is a breakpoint) of the prefix ending at each block]).
    The prefix order is tools, system, messages (build-with-claude/prompt-caching)."""
    items: list[Any] = [("tool", t) for t in request.get("tools") or []]
    system = request.get("system")
    items += [("system", b) for b in (system if isinstance(system, list) else [system] if system else [])]
    for index, message in enumerate(request["messages"]):
        content = message.get("content")  # a string is one text block, as the API reads it
        for block in content if isinstance(content, list) else [{"type": "text", "text": content}]:
            items.append((f"{index}:{message.get('role')}", block))
    prefixes: list[tuple[str, int, bool]] = []
    running = hashlib.sha256(str(request.get("model")).encode())
    tokens = 0
    for where, item in items:
        plain = {k: v for k, v in item.items() if k != "cache_control"} if isinstance(item, dict) else item
        running.update(json.dumps([where, plain], sort_keys=True).encode())
        tokens += count_tokens(plain)
        prefixes.append((running.copy().hexdigest(), tokens, isinstance(item, dict) and "cache_control" in item))
    # what is not content (model, max_tokens, tool_choice, …) counts too, after any breakpoint
    overhead = count_tokens({k: v for k, v in request.items() if k not in ("tools", "system", "messages")})
    return tokens + overhead, prefixes


class FakeAnthropic(_FakeServer):
    name = "anthropic"

    def __init__(self, batch_delay_s: float = 1.0) -> None:
        super().__init__()
        self.batch_delay_s = batch_delay_s  # a batch stays in_progress this long after creation
        self.batches: dict[str, dict[str, Any]] = {}

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        lowered = {k.lower(): v for k, v in headers.items()}
        route = path.split("?")[0]
        if route not in ("/v1/messages", "/v1/messages/batches"):
            return 404, {}, _anthropic_error("not_found_error", f"no route {path}")
        # SDK 2.x sends the key as `Authorization: Bearer`; older SDKs and curl use `x-api-key`.
        if not lowered.get("x-api-key") and not lowered.get("authorization", "").startswith("Bearer "):
            return 401, {}, _anthropic_error("authentication_error", "x-api-key header is required")
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            return 400, {}, _anthropic_error("invalid_request_error", "body is not JSON")
        if route == "/v1/messages/batches":
            return self._create_batch(request, lowered)
        return self._message(request, lowered)

    # ----------------------------------------------------------------- Message Batches

    def _create_batch(self, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """POST /v1/messages/batches: 1 to 100,000 requests, each a unique custom_id
        (^[a-zA-Z0-9_-]{1,64}$) and non-streaming Messages params. Each request is answered as
        the Messages API would (an invalid one is an `errored` result, as the real batch does),
        and the batch ends `batch_delay_s` later."""
        requests = body.get("requests") if isinstance(body, dict) else None
        problem = None
        if not isinstance(requests, list) or not 1 <= len(requests) <= 100_000:
            problem = "requests: must be a list of 1 to 100000 items"
        else:
            ids = [item.get("custom_id") if isinstance(item, dict) else None for item in requests]
            if any(not isinstance(i, str) or not CUSTOM_ID.match(i) for i in ids):
                problem = "requests.custom_id: must match ^[a-zA-Z0-9_-]{1,64}$"
            elif len(set(ids)) != len(ids):
                problem = "requests.custom_id: must be unique within the batch"
            elif any(not isinstance(item.get("params"), dict) for item in requests):
                problem = "requests.params: Field required"
            elif any(item["params"].get("stream") for item in requests):
                problem = "requests.params.stream: streaming is not supported in a batch"
        if problem is not None:
            self._record(Served("batch", 400, problem=problem, request=body if isinstance(body, dict) else {}))
            return 400, {}, _anthropic_error("invalid_request_error", problem)
        batch_id = f"msgbatch_fake{self._next_id():06d}"
        results = []
        for item in requests:
            status, _, payload = self._message(item["params"], headers, batch=batch_id)
            if status == 200:
                results.append({"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": payload}})
            else:
                results.append({"custom_id": item["custom_id"], "result": {"type": "errored", "error": payload}})
        created = dt.datetime.now(dt.UTC)
        with self._lock:
            self.batches[batch_id] = {"created": created, "results": results, "polls": 0}
        return 200, {}, self._batch_object(batch_id)

    def _batch_object(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            batch = self.batches[batch_id]
            created: dt.datetime = batch["created"]
            ended = dt.datetime.now(dt.UTC) >= created + dt.timedelta(seconds=self.batch_delay_s)
            results = batch["results"]
        succeeded = sum(1 for r in results if r["result"]["type"] == "succeeded")
        stamp = lambda moment: moment.isoformat().replace("+00:00", "Z")  # noqa: E731
        return {
            "id": batch_id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
            "request_counts": {"processing": 0 if ended else len(results), "succeeded": succeeded if ended else 0,
                               "errored": len(results) - succeeded if ended else 0, "canceled": 0, "expired": 0},
            "ended_at": stamp(created + dt.timedelta(seconds=self.batch_delay_s)) if ended else None,
            "created_at": stamp(created), "expires_at": stamp(created + dt.timedelta(days=1)),
            "archived_at": None, "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if ended else None,
        }  # fmt: skip

    def handle_get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        lowered = {k.lower(): v for k, v in headers.items()}
        if not lowered.get("x-api-key") and not lowered.get("authorization", "").startswith("Bearer "):
            return 401, {}, _anthropic_error("authentication_error", "x-api-key header is required")
        match = BATCH_ROUTE.match(path.split("?")[0])
        if match is None or match.group(1) not in self.batches:
            return 404, {}, _anthropic_error("not_found_error", f"no route or batch {path}")
        batch_id, results = match.group(1), match.group(2)
        with self._lock:
            self.batches[batch_id]["polls"] += 0 if results else 1
        batch = self._batch_object(batch_id)
        if not results:
            return 200, {}, batch
        if batch["processing_status"] != "ended":
            return 400, {}, _anthropic_error("invalid_request_error", f"batch {batch_id} has not ended yet")
        lines = "".join(json.dumps(r) + "\n" for r in self.batches[batch_id]["results"])
        return 200, {"content-type": "application/binary"}, lines.encode()

    # ----------------------------------------------------------------- Messages

    def _message(
        self, request: dict[str, Any], lowered: dict[str, str], batch: str | None = None
    ) -> tuple[int, dict[str, str], Any]:
        system = request.get("system") or ""
        agent = agent_of(system if isinstance(system, str) else json.dumps(system))
        invalid = _messages_request_problems(request)
        if invalid is not None:  # as the Messages API answers it, before any model work
            self._record(Served(agent, 400, problem=invalid, request=request, headers=lowered, batch=batch))
            return 400, {}, _anthropic_error("invalid_request_error", invalid)
        served = Served(agent, 200, request=request, headers=lowered, batch=batch)
        if self._overloaded():
            return self._fault(Fault("overloaded"), served)
        fault = self._next_fault(agent)
        if fault is not None and fault.kind not in (*MODEL_CHOICES, "normal"):
            return self._fault(fault, served)
        content, stop = self._turn(agent, request, fault)
        read, write, total = self._cache_usage(request)
        served.tokens_in, served.cache_read, served.cache_write = total - read - write, read, write
        served.tokens_out, served.tool_use, served.stop = count_tokens(content), stop == "tool_use", stop
        self._record(served)
        return 200, {"request-id": f"req_fake{len(self.served)}", **self.rate_limit_headers}, {
            "id": f"msg_fake{len(self.served):04d}", "type": "message", "role": "assistant",
            "model": request["model"], "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": served.tokens_in, "output_tokens": served.tokens_out,
                      "cache_creation_input_tokens": write, "cache_read_input_tokens": read},
        }  # fmt: skip

    def _cache_usage(self, request: dict[str, Any]) -> tuple[int, int, int]:
        """(cache read, cache write, prompt tokens): a breakpoint reads the longest cached prefix
        ending at it or up to 20 blocks before it, and writes what follows up to the last one."""
        total, prefixes = _anthropic_prefix(request)
        marks = [index for index, (_, tokens, marked) in enumerate(prefixes) if marked and tokens >= MIN_CACHEABLE]
        if not marks:
            return 0, 0, total
        with self._lock:
            now = time.monotonic()
            hits = [prefixes[i][1] for mark in marks for i in range(max(0, mark - LOOKBACK_BLOCKS), mark + 1)
                    if self._cache.get(prefixes[i][0], 0.0) > now]  # fmt: skip
            for mark in marks:
                self._cache[prefixes[mark][0]] = now + 300
        read = max(hits, default=0)
        return read, prefixes[marks[-1]][1] - read, total

    def _turn(self, agent: str, request: dict[str, Any], fault: Fault | None) -> tuple[list[dict[str, Any]], str]:
        """The model's content blocks and stop reason for a valid request."""
        messages = request["messages"]
        first_text = _anthropic_text(messages[0]["content"])
        tool_names = {tool["name"] for tool in request.get("tools") or []}
        choice = (request.get("tool_choice") or {}).get("type", "auto")
        forced = choice in ("tool", "any")
        may_call = bool(tool_names) and choice != "none"
        seen_results = any(b.get("type") == "tool_result" for m in messages for b in _blocks(m))
        thinking = request.get("thinking") or {}
        blocks: list[dict[str, Any]] = []
        if thinking.get("type") in ("enabled", "adaptive"):
            thought = f"The {agent} considers the alert before answering."
            blocks.append({"type": "thinking", "thinking": thought, "signature": _sign(thought)})
        kind = _kind(fault, forced)
        answer = self.brain(agent, first_text)
        if kind == "answer_input" and fault is not None:
            given = {"type": "tool_use", "id": self._tool_id(), "name": ANSWER, "input": fault.input}
            return [*blocks, given], "tool_use"
        if kind == "refusal":
            return [*blocks, {"type": "text", "text": "I can't help with that request."}], "refusal"
        if kind == "pause_turn" and messages[-1]["role"] == "user":
            pause = {"type": "server_tool_use", "id": f"srvtoolu_fake{self._next_id():04d}", "name": "web_search",
                     "input": {"query": "revenue operations anomaly"}}  # fmt: skip
            return [*blocks, {"type": "text", "text": "Searching."}, pause], "pause_turn"
        if kind == "max_tokens":
            if may_call and ANSWER in tool_names:
                return [*blocks, {"type": "tool_use", "id": self._tool_id(), "name": ANSWER, "input": {}}], "max_tokens"
            return [*blocks, {"type": "text", "text": json.dumps(answer)[:40]}], "max_tokens"
        if kind == "answer":
            return [*blocks, {"type": "text", "text": fault.text if fault else ""}], "end_turn"
        if kind == "prose":
            return [*blocks, {"type": "text", "text": PROSE}], "end_turn"
        if kind == "fenced":
            return [*blocks, {"type": "text", "text": "```json\n" + json.dumps(answer) + "\n```"}], "end_turn"
        wants_lookup = agent == "analyst" and "get_record" in tool_names and not forced and may_call
        if wants_lookup and (kind in ("tool_call", "tool_calls") or not seen_results):
            lookup = lookup_for(first_text)
            calls = [{"type": "tool_use", "id": self._tool_id(), "name": "get_record", "input": lookup}]
            if kind == "tool_calls" and "linked_entities" in tool_names:
                calls.append({"type": "tool_use", "id": self._tool_id(), "name": "linked_entities", "input": lookup})
            return [*blocks, {"type": "text", "text": "Let me look that up."}, *calls], "tool_use"
        if may_call and ANSWER in tool_names and (choice != "tool" or request["tool_choice"].get("name") == ANSWER):
            return [*blocks, {"type": "tool_use", "id": self._tool_id(), "name": ANSWER, "input": answer}], "tool_use"
        return [*blocks, {"type": "text", "text": json.dumps(answer)}], "end_turn"

    def _tool_id(self) -> str:
        return f"toolu_fake{self._next_id():04d}"

    def _fault(self, fault: Fault, served: Served) -> tuple[int, dict[str, str], Any]:
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            headers["retry-after"] = fault.retry_after
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = fault.retry_after_ms
        if fault.kind == "rate_limit":
            reset = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=float(fault.retry_after or 1))).isoformat()
            headers.update({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "0",
                            "anthropic-ratelimit-requests-reset": reset.replace("+00:00", "Z")})  # fmt: skip
            status, payload = (
                429,
                _anthropic_error("rate_limit_error", "Number of requests has exceeded your rate limit."),
            )
        elif fault.kind == "overloaded":
            headers["x-should-retry"] = "true"
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


# --------------------------------------------------------------------------- Gemini

FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")


def _gemini_request_problems(request: dict[str, Any], issued_signatures: set[str]) -> str | None:
    """What generateContent refuses (400 INVALID_ARGUMENT), in its words, or None.

    Sources: ai.google.dev/gemini-api/docs/function-calling (a model turn's N functionCall
    parts are answered by one user turn of N functionResponse parts, by name; declarations
    with an object `parametersJsonSchema`; `allowedFunctionNames` only with mode ANY), the
    thought-signatures page (signatures returned with function calls are sent back with them:
    "Function call is missing a thought_signature in functionCall parts."), the Gemini 3 page
    (not both `thinkingBudget` and `thinkingLevel`), and 2.5's refusal of a JSON response mime
    type together with function calling."""
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    tools = request.get("tools") or []
    declared = [d for tool in tools for d in tool.get("functionDeclarations") or []]
    for d in declared:
        if not FUNCTION_NAME.match(str(d.get("name"))):
            return (f"* GenerateContentRequest.tools[0].function_declarations: Invalid function name "
                    f"{d.get('name')!r}. Must start with a letter or an underscore.")  # fmt: skip
        schema = d.get("parametersJsonSchema") or d.get("parameters")
        if schema is not None and schema.get("type") not in ("object", "OBJECT"):
            return f"* function_declarations[{d.get('name')}].parameters: must be an object schema"
    names = {d.get("name") for d in declared}
    config = request.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") or {}
    if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
        return "You cannot use both thinking_level and the legacy thinking_budget parameter in the same request."
    if declared and config.get("responseMimeType") == "application/json":
        return "Function calling with a response mime type: 'application/json' is unsupported"
    calling = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
    allowed = calling.get("allowedFunctionNames")
    if allowed and calling.get("mode") != "ANY":
        return "* allowed_function_names: only set when the function calling mode is ANY"
    if any(name not in names for name in allowed or []):
        return f"* allowed_function_names: {allowed} are not all declared"
    for index, content in enumerate(contents):
        role = content.get("role", "user")
        parts = content.get("parts") or []
        if role not in ("user", "model"):
            return f"* GenerateContentRequest.contents[{index}].role: Please use a valid role: user, model."
        if not parts:
            return f"* GenerateContentRequest.contents[{index}].parts: contents.parts must not be empty."
        if index == 0 and role != "user":
            return "Please ensure that multiturn requests start with a user role."
        if index > 0 and role == contents[index - 1].get("role", "user"):
            return "Please ensure that multiturn requests alternate between user and model."
        calls = [p["functionCall"] for p in parts if "functionCall" in p]
        if calls and not declared:
            return "function call turn comes without any declared function"
        if role == "model" and calls:
            first = next(p for p in parts if "functionCall" in p)
            if first.get("thoughtSignature") not in issued_signatures:
                return ("Function call is missing a thought_signature in functionCall parts. This is required for "
                        f"tools to work correctly. Additional data, function call `default_api:{calls[0].get('name')}`"
                        f" , position {index}.")  # fmt: skip
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if responses:
            before = contents[index - 1].get("parts") or [] if index else []
            asked = [p["functionCall"] for p in before if "functionCall" in p]
            if len(asked) != len(responses):
                return ("Please ensure that the number of function response parts is equal to the number of function "
                        "call parts of the function call turn.")  # fmt: skip
            if sorted(str(r.get("name")) for r in responses) != sorted(str(c.get("name")) for c in asked):
                return "Please ensure that function response turn comes immediately after a function call turn."
            ids = {c.get("id") for c in asked if c.get("id")}
            if any(r.get("id") and r.get("id") not in ids for r in responses):
                return "* function_response.id: does not match the id of a function call of the turn before"
    return None


class FakeGemini(_FakeServer):
    name = "gemini"

    def __init__(self) -> None:
        super().__init__()
        self._signatures: set[str] = set()

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._signatures.clear()

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
        system_parts = ((request.get("systemInstruction") or {}).get("parts")) or []
        agent = agent_of("".join(p.get("text", "") for p in system_parts))
        with self._lock:
            issued = set(self._signatures)
        invalid = _gemini_request_problems(request, issued)
        if invalid is not None:
            self._record(Served(agent, 400, problem=invalid, request=request, headers=lowered))
            return 400, {}, _gemini_error(400, "INVALID_ARGUMENT", invalid)
        served = Served(agent, 200, request=request, headers=lowered)
        fault = Fault("overloaded") if self._overloaded() else self._next_fault(agent)
        if fault is not None and fault.kind not in (*MODEL_CHOICES, "normal"):
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
        parts, finish, thoughts = self._turn(agent, request, fault)
        contents = request["contents"]
        prompt = count_tokens(request)
        # the implicit cache: a repeat of everything but the newest turn (and never the whole prompt)
        prefix = {k: request.get(k) for k in ("systemInstruction", "tools")} | {"earlier": contents[:-1]}
        prefix_tokens = count_tokens(prefix)
        digest = hashlib.sha256((model + json.dumps(prefix, sort_keys=True)).encode()).hexdigest()
        cached = prefix_tokens if prefix_tokens >= MIN_CACHEABLE and self._cached(digest) else 0
        candidates_tokens = count_tokens(parts) if parts else 0
        served.tokens_in, served.cache_read = prompt - cached, cached
        served.tokens_out = candidates_tokens + thoughts
        served.tool_use, served.stop = any("functionCall" in p for p in parts), finish
        self._record(served)
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": candidates_tokens,
                 "totalTokenCount": prompt + candidates_tokens + thoughts}  # fmt: skip
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        if cached:
            usage["cachedContentTokenCount"] = cached
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
        if not parts:
            candidate["content"] = {"role": "model"}
        return 200, {}, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model,
                         "responseId": f"fake-{len(self.served)}"}  # fmt: skip

    def _turn(self, agent: str, request: dict[str, Any], fault: Fault | None) -> tuple[list[dict[str, Any]], str, int]:
        """(parts, finishReason, thinking tokens) for a valid request."""
        contents = request["contents"]
        first_text = "".join(p.get("text", "") for p in (contents[0].get("parts") or []))
        names = {d.get("name") for tool in request.get("tools") or [] for d in tool.get("functionDeclarations") or []}
        calling = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = calling.get("mode", "AUTO")
        forced = mode == "ANY"
        may_call = bool(names) and mode != "NONE"
        seen_results = any("functionResponse" in p for c in contents for p in (c.get("parts") or []))
        budget = ((request.get("generationConfig") or {}).get("thinkingConfig") or {}).get("thinkingBudget", -1)
        thoughts = 0 if budget == 0 else 24  # 2.5 Flash thinks by default (a dynamic budget)
        max_out = int((request.get("generationConfig") or {}).get("maxOutputTokens") or 8192)
        kind = _kind(fault, forced)
        answer = self.brain(agent, first_text)
        if kind == "answer_input" and fault is not None:
            return self._signed([{"functionCall": {"name": ANSWER, "args": fault.input}}]), "STOP", thoughts
        if kind == "max_tokens":  # the thinking used the whole budget: no text at all
            return [], "MAX_TOKENS", max_out
        if kind == "refusal":
            return [], "SAFETY", thoughts
        if kind == "answer":
            return [{"text": fault.text if fault else ""}], "STOP", thoughts
        if kind == "prose":
            return [{"text": PROSE}], "STOP", thoughts
        if kind == "fenced":
            return [{"text": "```json\n" + json.dumps(answer) + "\n```"}], "STOP", thoughts
        wants_lookup = agent == "analyst" and "get_record" in names and not forced and may_call
        if wants_lookup and (kind in ("tool_call", "tool_calls") or not seen_results):
            lookup = lookup_for(first_text)
            calls = [{"functionCall": {"name": "get_record", "args": lookup}}]
            if kind == "tool_calls" and "linked_entities" in names:
                calls.append({"functionCall": {"name": "linked_entities", "args": lookup}})
            return self._signed(calls), "STOP", thoughts
        allowed = calling.get("allowedFunctionNames") or list(names)
        if may_call and ANSWER in names and ANSWER in allowed:
            return self._signed([{"functionCall": {"name": ANSWER, "args": answer}}]), "STOP", thoughts
        return [{"text": json.dumps(answer)}], "STOP", thoughts

    def _signed(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Function-call parts, the first carrying a thought signature (as Gemini 2.5+ sends)."""
        signature = base64.b64encode(f"sig-{self._next_id()}".encode()).decode()
        with self._lock:
            self._signatures.add(signature)
        return [{**calls[0], "thoughtSignature": signature}, *calls[1:]]


def _gemini_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}
