"""Traces: one OpenTelemetry trace per run, in the tools teams already use (Langfuse, Phoenix,
Tempo, Datadog, Honeycomb — anything that takes OTLP).

Off by default. On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set, over
HTTP/protobuf or gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL`); the exporter reads the rest of the
standard variables (headers, timeout, compression) itself. Each process names itself
(`switchboard-api`, `-worker`, `-beat`, `-cli`; `OTEL_SERVICE_NAME` wins) and instruments Celery
(`opentelemetry-instrumentation-celery`), so a task's context travels in its message's headers:
the API's or a scan's publish → the ingest and scan tasks → the insight (whose `traceparent`
is stored with it) → the orchestrator's `run {kind}` span → each step's `invoke_agent {agent}`
→ its `chat {model}`, `execute_tool {tool}` and external API spans. A scan that raises several
insights is one trace holding their runs. Spans follow the OpenTelemetry GenAI semantic
conventions; message content goes on model spans only with
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, scrubbed like every log line. No
span carries a call's arguments or a credential.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from switchboard.settings import Settings

log = logging.getLogger("switchboard.tracing")
tracer = trace.get_tracer("switchboard")
_propagator = TraceContextTextMapPropagator()
_lock = threading.Lock()
_installed: str | None = None  # the service name this process exports as

# gen_ai.provider.name (the conventions' well-known values); the offline rules are ours
PROVIDER_NAMES = {"anthropic": "anthropic", "gemini": "gcp.gemini", "offline": "switchboard.offline"}
# gen_ai.response.finish_reasons, from our stop reasons
FINISH_REASONS = {"end_turn": "stop", "tool_use": "tool_call", "max_tokens": "length", "refusal": "content_filter",
                  "pause_turn": "pause_turn", "stop_sequence": "stop"}  # fmt: skip


def setup(service: str, settings: Settings | None = None) -> bool:
    """Export this process's spans, as `service`, when tracing is configured (idempotent);
    whether it is on. Call it in each process: API start, worker (process) init, beat init."""
    global _installed
    from switchboard.settings import get_settings

    settings = settings or get_settings()
    if not settings.tracing:
        return False
    with _lock:
        if _installed is not None:
            return True
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if settings.otel_protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:  # http/protobuf (the settings refuse any other)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        name = settings.otel_service_name or service
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
        _installed = name
        log.info("traces exported over OTLP (%s) as %s", settings.otel_protocol, name)
        return True


def connect() -> None:
    """Celery signals: a worker (its main process, and each prefork child after the fork) and
    beat set themselves up at start."""
    from celery import signals

    signals.worker_init.connect(lambda **_: setup("switchboard-worker"), weak=False)
    signals.worker_process_init.connect(lambda **_: setup("switchboard-worker"), weak=False)
    signals.beat_init.connect(lambda **_: setup("switchboard-beat"), weak=False)


def flush(timeout_ms: int = 5000) -> None:
    """Send what is buffered (a short-lived command before it exits)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_ms)


# --------------------------------------------------------------------------- context


def ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, as hex, when there is one being recorded."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def traceparent() -> str | None:
    """The current span as a W3C `traceparent` (stored with an insight), or None."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def start_run_span(kind: str | None, run_id: str, parent: str | None, **attributes: Any) -> Span:
    """The span a run's steps hang under, started (not entered) at dispatch: a child of the
    insight's origin (`parent`, its stored `traceparent`), else a new trace."""
    context = _propagator.extract({"traceparent": parent}) if parent else otel_context.Context()
    span = tracer.start_span(f"run {kind or 'insight'}", context=context, kind=SpanKind.INTERNAL,
                             attributes={"switchboard.run.id": run_id, **_clean(attributes)})  # fmt: skip
    return span


@contextmanager
def entered(span: Span | None) -> Iterator[None]:
    """Make a started span current for the block, then end it."""
    if span is None:
        yield
        return
    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield


def span_trace_id(span: Span | None) -> str | None:
    if span is None or not span.get_span_context().is_valid:
        return None
    return format(span.get_span_context().trace_id, "032x")


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if value is not None}


# --------------------------------------------------------------------------- spans


@contextmanager
def _span(name: str, kind: SpanKind, attributes: dict[str, Any]) -> Iterator[Span]:
    """A current span that, when the block raises, records the error's type and its scrubbed
    message — never the SDK's exception event, whose message and stack are not scrubbed."""
    with tracer.start_as_current_span(name, kind=kind, attributes=_clean(attributes), record_exception=False,
                                      set_status_on_exception=False) as span:  # fmt: skip
        try:
            yield span
        except BaseException as error:
            failed(span, error)
            raise


def failed(span: Span, error: BaseException) -> None:
    """Mark a span failed with the error's type (its message is scrubbed)."""
    from switchboard.redaction import scrub

    span.set_attribute("error.type", type(error).__name__)
    span.set_status(Status(StatusCode.ERROR, scrub(str(error))[:500]))


def agent_span(agent: str, run_id: str | None, step: str, attempt: int) -> Any:
    """`invoke_agent {agent}`: one step of a run."""
    return _span(f"invoke_agent {agent}", SpanKind.INTERNAL,
                 {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent, "switchboard.run.id": run_id,
                  "switchboard.step": step, "switchboard.attempt": attempt})  # fmt: skip


def tool_span(name: str, call_id: str | None) -> Any:
    """`execute_tool {tool}`: a tool the model called (arguments and result stay out)."""
    return _span(f"execute_tool {name}", SpanKind.INTERNAL,
                 {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name, "gen_ai.tool.type": "function",
                  "gen_ai.tool.call.id": call_id})  # fmt: skip


def api_span(integration: str, operation: str, tool: str) -> Any:
    """An external API call (Stripe, HubSpot, the call-intelligence API)."""
    return _span(f"{integration} {operation}", SpanKind.CLIENT,
                 {"switchboard.integration": integration, "switchboard.operation": operation,
                  "switchboard.tool": tool})  # fmt: skip


@contextmanager
def chat_span(provider: str, model: str, request: Any, settings: Settings) -> Iterator[Span]:
    """`chat {model}`: one model call (`request` an LLMRequest: typed loosely, as the LLM layer
    imports the resilience layer, which imports this)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
        "gen_ai.request.model": model,
        "gen_ai.request.max_tokens": request.max_tokens,
    }
    if settings.otel_capture_content:
        attributes["gen_ai.input.messages"] = _content([{"role": m.role, "content": m.text} for m in request.messages])
        attributes["gen_ai.system_instructions"] = _content([{"type": "text", "content": request.system}])
    with _span(f"chat {model}", SpanKind.CLIENT, attributes) as span:
        yield span


def record_reply(span: Span, reply: Any, settings: Settings) -> None:
    """The answer's usage on its chat span: input counts the cache reads and writes too (as the
    conventions say), which have their own attributes as well."""
    span.set_attributes({
        "gen_ai.response.model": reply.model,
        "gen_ai.usage.input_tokens": reply.tokens_in + reply.cache_read_tokens + reply.cache_write_tokens,
        "gen_ai.usage.output_tokens": reply.tokens_out,
        "gen_ai.usage.cache_read.input_tokens": reply.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": reply.cache_write_tokens,
        "gen_ai.response.finish_reasons": [FINISH_REASONS.get(reply.stop_reason, reply.stop_reason)],
    })  # fmt: skip
    if settings.otel_capture_content:
        span.set_attribute("gen_ai.output.messages", _content([{"role": "assistant", "content": reply.text}]))


def _content(value: Any) -> str:
    from switchboard.redaction import scrub

    return scrub(json.dumps(value, default=str))[:16000]
