"""A local OTLP/HTTP trace receiver: what a collector, Phoenix or Tempo does with
`POST /v1/traces` — the body decoded as the real protobuf wire format
(`opentelemetry-proto`'s ExportTraceServiceRequest) and answered with an
ExportTraceServiceResponse. As strict as a collector on what it accepts: protobuf content type
(gzip if said), a body that parses; anything else is a 4xx the exporter would see."""

from __future__ import annotations

import gzip
import http.server
import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


@dataclass
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: int
    attributes: dict[str, Any]
    status_code: int
    links: list[tuple[str, str]]


@dataclass
class Receiver:
    """OTLP/HTTP (`POST /v1/traces`), or with `grpc=True` OTLP/gRPC (the TraceService of the
    same protobuf package, on an insecure port)."""

    grpc: bool = False
    spans: list[ReceivedSpan] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None
    grpc_server: Any = None
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Receiver:
        receiver = self
        if self.grpc:
            return self._start_grpc()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                problem = None
                if self.path != "/v1/traces":
                    problem, status = f"no route {self.path}", 404
                elif self.headers.get("Content-Type") != "application/x-protobuf":
                    problem, status = f"content type {self.headers.get('Content-Type')!r}", 415
                else:
                    try:
                        if self.headers.get("Content-Encoding") == "gzip":
                            body = gzip.decompress(body)
                        receiver._take(ExportTraceServiceRequest.FromString(body))
                        status = 200
                    except Exception as error:
                        problem, status = f"unparseable body: {error}", 400
                if problem:
                    receiver.refused.append(problem)
                answer = ExportTraceServiceResponse().SerializeToString() if status == 200 else problem.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def _start_grpc(self) -> Receiver:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
                receiver._take(request)
                return ExportTraceServiceResponse()

        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.grpc_server)
        self.port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()
        return self

    def __exit__(self, *_: Any) -> None:
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=None)
            return
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def _take(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(ReceivedSpan(
                            service=str(resource.get("service.name")), name=span.name, trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex() or None,
                            kind=span.kind, attributes={kv.key: _value(kv.value) for kv in span.attributes},
                            status_code=span.status.code,
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        ))  # fmt: skip

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]
