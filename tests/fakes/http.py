"""A base for local fake APIs: a threaded HTTP server with a request log and programmable faults.

Faults are matched by HTTP method and path prefix and consumed in order: `times` requests get
the fault, then normal answers resume (`times=None`: until `clear_faults()`, e.g. a 5xx storm).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    kind: str  # "status" (an error status with the API's error body) | "slow" | "malformed"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    times: int | None = 1
    method: str | None = None
    path_prefix: str = ""
    path: str | None = None  # exact path (instead of a prefix)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    wall: float = 0.0  # time.time() on arrival (comparable with Redis TIME)
    done_wall: float = 0.0  # time.time() when the answer was ready
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())


Response = tuple[int, dict[str, str], Any]


class FakeAPI:
    """Subclasses implement `route(request) -> (status, headers, payload)` and `error_body`."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                    at=time.monotonic(),
                    wall=time.time(),
                )
                status, headers, payload = outer.dispatch(request)
                request.done_wall = time.time()
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ faults and log

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def reset(self) -> None:
        with self.lock:
            self.faults.clear()
            self.requests.clear()

    def seen(self, path_prefix: str = "", method: str | None = None) -> list[Request]:
        with self.lock:
            return [
                r for r in self.requests if r.path.startswith(path_prefix) and (method is None or r.method == method)
            ]

    def _take_fault(self, request: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                where = (
                    request.path == fault.path if fault.path is not None else request.path.startswith(fault.path_prefix)
                )
                if where and fault.method in (None, request.method):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def dispatch(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(request)
        fault = self._take_fault(request)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
            fault = None
        if fault is not None and fault.kind == "malformed":
            request.status = 200
            return 200, {}, b'{"object": "list", "data": [{"id": '
        if fault is not None:
            request.status = fault.status
            return fault.status, dict(fault.headers), self.error_body(fault.status)
        auth = self.authenticate(request)
        if auth is not None:
            request.status = auth[0]
            return auth
        try:
            status, headers, payload = self.route(request)
        except KeyError as missing:
            status, headers, payload = 404, {}, self.error_body(404, f"no such object: {missing}")
        request.status = status
        return status, headers, payload

    # ------------------------------------------------------------------ per API

    def authenticate(self, request: Request) -> Response | None:
        return None

    def route(self, request: Request) -> Response:
        raise NotImplementedError

    def error_body(self, status: int, message: str = "") -> Any:
        raise NotImplementedError


def max_in_window(times: list[float], window_s: float = 1.0) -> int:
    """The most requests seen in any window of `window_s` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
