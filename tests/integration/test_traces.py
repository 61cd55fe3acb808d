"""Traces over OTLP: a demo's runs (through the real Anthropic and Gemini SDKs against the fake
servers) reach a local OTLP/HTTP receiver that decodes the real protobuf wire format, one
connected trace across the demo's process and its worker, with the OpenTelemetry GenAI
conventions' spans and attributes, token counts equal to the runs' rows, the trace id on each
run row and on the worker's JSON log lines, and no secret in any attribute."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.llm_servers import FakeAnthropic, FakeGemini
from tests.support.env import child_env
from tests.support.otlp import ReceivedSpan, Receiver

ANTHROPIC_KEY = "sk-ant-trace-0123456789abcdef"
GEMINI_KEY = "AIzaTRACE-0123456789abcdef"


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
