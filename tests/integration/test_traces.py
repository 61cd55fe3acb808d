"""Traces over OTLP: a demo's runs (through the real Anthropic and Gemini SDKs against the fake
servers) reach a local OTLP/HTTP receiver that decodes the real protobuf wire format, one
connected trace across the demo's process and its worker, with the OpenTelemetry GenAI
conventions' spans and attributes, token counts equal to the runs' rows, the trace id on each
run row and on the worker's JSON log lines, and no secret in any attribute."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm_servers import FakeAnthropic, FakeGemini
from tests.support.env import child_env
from tests.support.otlp import ReceivedSpan, Receiver

ANTHROPIC_KEY = "sk-ant-trace-0123456789abcdef"
GEMINI_KEY = "AIzaTRACE-0123456789abcdef"
LEAKED = "sk_live_0123456789abcdefLEAK"  # a secret-shaped string inside the data a prompt carries


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeGemini]]:
    with FakeAnthropic() as anthropic, FakeGemini() as gemini:
        yield anthropic, gemini  # type: ignore[misc]


def _env(
    tmp_path: Path, receiver: Receiver, anthropic: FakeAnthropic, gemini: FakeGemini, **more: str
) -> dict[str, str]:
    return child_env(
        SWITCHBOARD_DATA_DIR=str(tmp_path / "state"),
        SWITCHBOARD_ANTHROPIC_API_KEY=ANTHROPIC_KEY, SWITCHBOARD_ANTHROPIC_BASE_URL=anthropic.url,
        SWITCHBOARD_GEMINI_API_KEY=GEMINI_KEY, SWITCHBOARD_GEMINI_BASE_URL=gemini.url,
        SWITCHBOARD_WATCHER_PROVIDER="gemini", SWITCHBOARD_ANALYST_PROVIDER="anthropic",
        SWITCHBOARD_ADVISOR_PROVIDER="anthropic",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="200",
        SWITCHBOARD_TRACE_URL_TEMPLATE="http://localhost:6006/projects/default/traces/{trace_id}",
        **more,
    )  # fmt: skip


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switchboard", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _wait_for(receiver: Receiver, trace_id: str, names: set[str], timeout_s: float = 20) -> list[ReceivedSpan]:
    deadline = time.monotonic() + timeout_s
    while True:
        spans = receiver.trace(trace_id)
        if names <= {span.name for span in spans} or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def test_a_demo_runs_trace_arrives_whole_with_the_genai_conventions_and_the_rows_token_counts(
    fakes: tuple[FakeAnthropic, FakeGemini], tmp_path: Path
) -> None:
    anthropic, gemini = fakes
    with Receiver() as receiver:
        env = _env(tmp_path, receiver, anthropic, gemini)
        demo = _cli(env, "demo")
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        listed = _cli(env, "runs", "--json")
        runs = json.loads(listed.stdout)
        assert runs and all(run["trace_id"] for run in runs), runs
        run = runs[0]
        assert run["trace_url"] == f"http://localhost:6006/projects/default/traces/{run['trace_id']}"
        steps = {"invoke_agent watcher", "invoke_agent analyst", "invoke_agent advisor"}
        spans = _wait_for(receiver, run["trace_id"], steps | {f"run {run['insight_kind']}"})
        assert receiver.refused == []

    # one connected trace: one root, every other span's parent in the trace
    by_id = {span.span_id: span for span in spans}
    roots = [span for span in spans if span.parent_id is None]
    assert len(roots) == 1, [(s.name, s.service) for s in roots]
    assert all(span.parent_id in by_id for span in spans if span.parent_id), "a span's parent never arrived"
    assert {span.service for span in spans} == {"switchboard-cli", "switchboard-worker"}

    # this run's part of it: its run span, its steps, their model and tool calls under them
    run_span = next(s for s in spans if s.name == f"run {run['insight_kind']}" and
                    s.attributes["switchboard.run.id"] == run["run_id"])  # fmt: skip

    def under(span: ReceivedSpan, ancestor: ReceivedSpan) -> bool:
        while span.parent_id:
            if span.parent_id == ancestor.span_id:
                return True
            span = by_id[span.parent_id]
        return False

    mine = [s for s in spans if under(s, run_span)]
    agents = [s for s in mine if s.name.startswith("invoke_agent ")]
    assert sorted(s.attributes["gen_ai.agent.name"] for s in agents) == ["advisor", "analyst", "watcher"]
    assert all(s.attributes["gen_ai.operation.name"] == "invoke_agent" for s in agents)
    chats = [s for s in mine if s.name.startswith("chat ")]
    assert chats and all(any(under(c, a) for a in agents) for c in chats)
    assert {c.attributes["gen_ai.provider.name"] for c in chats} == {"anthropic", "gcp.gemini"}
    for chat in chats:
        assert chat.name == f"chat {chat.attributes['gen_ai.request.model']}" and chat.kind == 3  # CLIENT
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.response.finish_reasons"]
    tools = [s for s in mine if s.name.startswith("execute_tool ")]
    assert tools and all(t.attributes["gen_ai.tool.name"] == t.name.removeprefix("execute_tool ") for t in tools)

    # token counts: the chat spans of the run add up to its row (input counts cache tokens too)
    def total(key: str) -> int:
        return sum(int(c.attributes.get(key, 0)) for c in chats)

    cache_read, cache_write = (
        total("gen_ai.usage.cache_read.input_tokens"),
        total("gen_ai.usage.cache_creation.input_tokens"),
    )
    assert (total("gen_ai.usage.input_tokens") - cache_read - cache_write, total("gen_ai.usage.output_tokens"),
            cache_read, cache_write) == (run["tokens_in"], run["tokens_out"], run["cache_read_tokens"],
                                         run["cache_write_tokens"])  # fmt: skip
    assert run["tokens_in"] > 0 and run["tokens_out"] > 0

    # no secret in any attribute, message content off by default
    everything = json.dumps([s.attributes for s in spans])
    assert ANTHROPIC_KEY not in everything and GEMINI_KEY not in everything
    assert "gen_ai.input.messages" not in everything

    print(
        f"trace {run['trace_id']}: {len(spans)} spans from {sorted({s.service for s in spans})}; this run: "
        f"{len(agents)} steps, {len(chats)} model calls, {len(tools)} tool calls, "
        f"{total('gen_ai.usage.input_tokens')} input / {total('gen_ai.usage.output_tokens')} output tokens; "
        f"names {sorted(Counter(s.name.split(' ')[0].split('/')[0] for s in spans).items())}"
    )
    # the worker's JSON lines logged inside the run's spans carry its trace id (and no other)
    lines = [json.loads(line) for line in (tmp_path / "state" / "demo-worker.log").read_text().splitlines()
             if line.startswith("{")]  # fmt: skip
    traced = Counter(line.get("trace_id") for line in lines if line.get("run_id") == run["run_id"])
    assert traced[run["trace_id"]] >= 3 and set(traced) - {None} == {run["trace_id"]}, traced


def test_an_event_posted_to_the_api_is_one_trace_through_the_orchestrator_and_the_worker(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """`switchboard api`, `switchboard beat` and `switchboard worker` as separate processes: the
    API's publish of the accepted event is the root; the worker's ingest, the scan it triggers
    (a `payout.paid` is critical), the insight it raises; the orchestrator's poll (beat's tick, in
    the worker) dispatches the run under that insight's span; the steps follow."""
    from sqlalchemy import select

    from switchboard.db.models import AgentRun
    from switchboard.db.records import upsert_records
    from switchboard.db.session import session_scope
    from switchboard.demo.scenarios import MISMATCHED_PAYOUT, demo_records
    from switchboard.processes import stop_group
    from tests.support.api import free_port
    from tests.support.env import worker_env

    now = dt.datetime.now(dt.UTC)
    records = [r for r in demo_records(now) if r.source == "stripe"]
    with session_scope() as session:
        upsert_records(session, records)
    payout = next(r for r in records if r.object_id == MISMATCHED_PAYOUT)
    port, key = free_port(), "ingest-key-trace-0123456789"
    with Receiver() as receiver:
        env = worker_env(database_url, redis_url, tmp_path / "state", SWITCHBOARD_INGEST_KEYS=key,
                         SWITCHBOARD_API_PORT=str(port), OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                         OTEL_BSP_SCHEDULE_DELAY="200",
                         OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")  # fmt: skip
        processes, logs = [], []
        for name, argv in (("api", ["api"]), ("beat", ["beat"]),
                           ("worker", ["worker", "--processes", "1", "--concurrency", "8"])):  # fmt: skip
            logs.append((tmp_path / f"{name}.log").open("wb"))
            processes.append(subprocess.Popen([sys.executable, "-m", "switchboard", *argv], env=env, stdout=logs[-1],
                                              stderr=subprocess.STDOUT, start_new_session=True))  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code in (200, 503):
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "api.log").read_text()[-2000:]
                time.sleep(0.2)
            event = {"source": "stripe", "external_id": "evt_trace_payout", "type": "payout.paid",
                     "payload": {"id": "evt_trace_payout", "object": "event", "type": "payout.paid",
                                 "data": {"object": {**payout.data, "object": "payout",
                                                     "description": f"ref {LEAKED}"}}}}  # fmt: skip
            posted = httpx.post(f"http://127.0.0.1:{port}/api/events", json=event, headers={"X-API-Key": key})
            assert posted.status_code == 202, posted.text
            deadline = time.monotonic() + 120
            while True:
                with session_scope() as session:
                    run = session.scalars(select(AgentRun).where(AgentRun.insight_kind == "stripe_payout_mismatch",
                                                                 AgentRun.status.in_(("done", "awaiting_approval")))
                                          ).first()  # fmt: skip
                if run is not None:
                    break
                assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
                time.sleep(0.3)
            assert run.trace_id
            steps = {"invoke_agent watcher", "invoke_agent analyst", "invoke_agent advisor"}
            spans = _wait_for(receiver, run.trace_id, steps | {"run stripe_payout_mismatch"})
        finally:
            for process in processes:
                stop_group(process)
            for log in logs:
                log.close()
    assert receiver.refused == []
    by_id = {span.span_id: span for span in spans}
    [root] = [span for span in spans if span.parent_id is None]
    assert root.service == "switchboard-api" and root.name == "POST /api/events", root  # the request itself
    assert any(s.service == "switchboard-api" and s.name == "apply_async/switchboard.tasks.ingest.process_events"
               for s in spans)  # fmt: skip
    assert all(span.parent_id in by_id for span in spans if span.parent_id)
    names = {span.name for span in spans}
    assert {"run/switchboard.tasks.ingest.process_events", "run/switchboard.tasks.watch.scan"} <= names, names
    assert steps | {"run stripe_payout_mismatch"} <= names
    assert {span.service for span in spans} == {"switchboard-api", "switchboard-worker"}
    assert key not in json.dumps([span.attributes for span in receiver.spans])  # the request's key stays out
    # opted in: the prompts and answers are on the chat spans, scrubbed as log lines are
    chats = [span for span in spans if span.name.startswith("chat ")]
    assert chats and all("gen_ai.input.messages" in c.attributes and "gen_ai.output.messages" in c.attributes
                         for c in chats)  # fmt: skip
    content = json.dumps([c.attributes["gen_ai.input.messages"] for c in chats])
    assert "[redacted]" in content and LEAKED not in json.dumps([s.attributes for s in receiver.spans])
    kinds = sorted(Counter(s.name.split(" ")[0].split("/")[0] for s in spans).items())
    print(f"API -> worker trace {run.trace_id}: {len(spans)} spans, {kinds}")


EXTERNAL_CALL = """
import time
from switchboard import tracing
from switchboard.integrations.stripe_client import StripeAPI
assert tracing.setup("switchboard-cli")
charges = list(StripeAPI().list("charge", pace=time.sleep))
tracing.flush()
print(len(charges))
"""


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_an_external_api_call_is_a_client_span_without_its_key(
    protocol: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Stripe through the real SDK against the wire-format fake: one client span a page,
    exported over either OTLP protocol."""
    from tests.fakes.stripe import FakeStripe

    stripe_key = "sk_test_trace_0123456789abcdef"
    with FakeStripe(api_key=stripe_key) as fake, Receiver(grpc=protocol == "grpc") as receiver:
        for n in range(150):
            fake.add("charges", {"id": f"ch_{n:04d}", "object": "charge", "amount": 100, "created": 1_700_000_000 + n})
        env = child_env(SWITCHBOARD_STRIPE_API_KEY=stripe_key, SWITCHBOARD_STRIPE_API_BASE=fake.url,
                        SWITCHBOARD_BROKER_URL=redis_url, SWITCHBOARD_DATA_DIR=str(tmp_path),
                        SWITCHBOARD_DATABASE_URL=database_url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
                        OTEL_EXPORTER_OTLP_PROTOCOL=protocol)  # fmt: skip
        done = subprocess.run([sys.executable, "-c", EXTERNAL_CALL], env=env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip() == "150", done.stdout + done.stderr[-2000:]
        pages = [s for s in receiver.spans if s.attributes.get("switchboard.integration") == "stripe"]
    assert len(pages) == 2 and all(s.kind == 3 and s.service == "switchboard-cli" for s in pages), pages  # CLIENT
    assert {s.name for s in pages} == {f"stripe {pages[0].attributes['switchboard.operation']}"}
    assert stripe_key not in json.dumps([s.attributes for s in receiver.spans])
