"""The real Anthropic and google-genai SDKs, over HTTP, against local fakes of both APIs.

The demo runs unchanged (a subprocess, embedded mode) with keys and base URLs pointing at the
fakes, and the tokens it records must equal the usage the fakes reported. Faults the fakes
inject — 429 with Retry-After, 529 overload, unreadable bodies, malformed answers — go
through a real worker on Postgres and Redis.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from switchboard.agents.llm import reset_provider_cache
from switchboard.db.models import AgentStep
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from switchboard.tasks.runs import dispatch_insight
from switchboard.tasks.watch import scan
from tests.fakes.llm_servers import FakeAnthropic, FakeGemini, Fault, Served
from tests.support.env import child_env
from tests.support.runs import empty_tables, wait_for_runs, wait_for_status

ANTHROPIC_KEY = "sk-ant-fake-0123456789abcdef"
GEMINI_KEY = "AIzaFAKE-0123456789abcdef"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeGemini]]:
    with FakeAnthropic() as anthropic, FakeGemini() as gemini:
        yield anthropic, gemini  # type: ignore[misc]


def _provider_env(anthropic: FakeAnthropic, gemini: FakeGemini) -> dict[str, str]:
    return {
        "SWITCHBOARD_ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "SWITCHBOARD_ANTHROPIC_BASE_URL": anthropic.url,
        "SWITCHBOARD_GEMINI_API_KEY": GEMINI_KEY,
        "SWITCHBOARD_GEMINI_BASE_URL": gemini.url,
    }


@pytest.fixture()
def real_providers(
    fakes: tuple[FakeAnthropic, FakeGemini], database_url: str, celery_worker: object, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeAnthropic, FakeGemini]]:
    """This process (and its in-process worker) uses the real SDKs against the fakes."""
    anthropic, gemini = fakes
    anthropic.reset()
    gemini.reset()
    empty_tables(database_url)
    for name, value in _provider_env(anthropic, gemini).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_provider_cache()
    yield anthropic, gemini
    monkeypatch.undo()
    get_settings.cache_clear()
    reset_provider_cache()


def test_demo_through_the_real_sdks_records_the_fakes_usage(
    fakes: tuple[FakeAnthropic, FakeGemini], tmp_path: Path
) -> None:
    anthropic, gemini = fakes
    anthropic.reset()
    gemini.reset()
    env = child_env(**_provider_env(anthropic, gemini), SWITCHBOARD_DATA_DIR=str(tmp_path / "state"))
    demo = subprocess.run(
        [sys.executable, "-m", "switchboard", "demo"], env=env, capture_output=True, text=True, timeout=240
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "switchboard", "runs", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert len(runs) == 3 and {run["status"] for run in runs} == {"done"}
    assert {run["insight_kind"] for run in runs} == {
        "stripe_payout_mismatch",
        "hubspot_deal_without_owner",
        "calls_connect_rate_drop",
    }
    # Gemini answered the three watcher steps; Claude the analyst (tool turn + answer) and advisor steps.
    assert [s.agent for s in gemini.served] == ["watcher"] * 3
    assert sorted(s.agent for s in anthropic.served) == ["advisor"] * 3 + ["analyst"] * 6
    assert all(s.status == 200 for s in anthropic.served + gemini.served)
    served_in = anthropic.usage()[0] + gemini.usage()[0]
    served_out = anthropic.usage()[1] + gemini.usage()[1]
    assert served_in > 0 and served_out > 0
    assert sum(run["tokens_in"] for run in runs) == served_in
    assert sum(run["tokens_out"] for run in runs) == served_out
    assert all(run["error"] is None for run in runs)
    # the keys reached the fakes as credentials, and nowhere in what we print
    assert gemini.served[0].headers["x-goog-api-key"] == GEMINI_KEY
    assert anthropic.served[0].headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"
    for secret in (ANTHROPIC_KEY, GEMINI_KEY):
        assert secret not in demo.stdout + demo.stderr + listed.stdout
        assert secret not in (tmp_path / "state" / "demo-worker.log").read_text()


def _hubspot_anomaly() -> list[RecordIn]:
    now = dt.datetime.now(dt.UTC)
    return [
        RecordIn("hubspot", "deal", "deal-llm", now - dt.timedelta(days=1), {
            "id": "deal-llm", "properties": {"dealname": "Fault test", "amount": "700.00", "dealstage": "qualified",
                                             "hubspot_owner_id": None}, "associations": {}}),
    ]  # fmt: skip


def _dispatch_one() -> str:
    with session_scope() as session:
        upsert_records(session, _hubspot_anomaly())
    outcome = scan.delay(["hubspot"]).get(timeout=60)
    [insight_id] = outcome["insights"]
    return dispatch_insight(insight_id)


def _steps(run_id: str) -> dict[str, AgentStep]:
    with session_scope() as session:
        rows = session.scalars(select(AgentStep).where(AgentStep.run_id == run_id)).all()
        session.expunge_all()
        return {row.step: row for row in rows}


def test_steps_record_each_providers_usage(real_providers: tuple[FakeAnthropic, FakeGemini]) -> None:
    anthropic, gemini = real_providers
    run_id = _dispatch_one()
    run = wait_for_status(run_id, "done", timeout_s=60)
    steps = _steps(run_id)
    assert (steps["watcher"].provider, steps["watcher"].model) == ("gemini", "gemini-2.5-flash")
    assert (steps["analyst"].provider, steps["advisor"].provider) == ("anthropic", "anthropic")
    for step in ("watcher", "analyst", "advisor"):
        served = anthropic.usage(step) if step != "watcher" else gemini.usage(step)
        assert (steps[step].tokens_in, steps[step].tokens_out) == served
    assert run["tokens_in"] == sum(s.tokens_in or 0 for s in steps.values())
    assert steps["analyst"].cost_usd and steps["analyst"].cost_usd > 0  # priced from the model table


@pytest.mark.parametrize(
    ("fault", "agent", "server"),
    [
        (Fault("rate_limit", retry_after="1"), "analyst", "anthropic"),
        (Fault("overloaded", retry_after_ms="1200"), "advisor", "anthropic"),
        (Fault("rate_limit", retry_after="1"), "watcher", "gemini"),
        (Fault("malformed_body"), "analyst", "anthropic"),
    ],
    ids=["anthropic-429", "anthropic-529", "gemini-429", "anthropic-unreadable-body"],
)
def test_transient_provider_faults_retry_the_step_after_the_servers_delay(
    real_providers: tuple[FakeAnthropic, FakeGemini], fault: Fault, agent: str, server: str
) -> None:
    anthropic, gemini = real_providers
    fake = anthropic if server == "anthropic" else gemini
    fake.inject(agent, fault)
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    steps = _steps(run_id)
    assert steps[agent].retries == 1 and steps[agent].attempt == 2
    assert all(step.retries == 0 for name, step in steps.items() if name != agent)
    calls = [s for s in fake.served if s.agent == agent]
    assert calls[0].status != 200 and calls[1].status == 200
    waited = calls[1].at - calls[0].at
    asked = float(fault.retry_after or 0) or float(fault.retry_after_ms or 0) / 1000
    assert waited >= asked, f"retried after {waited:.2f} s although the server asked for {asked} s"


def test_one_malformed_answer_is_repaired(real_providers: tuple[FakeAnthropic, FakeGemini]) -> None:
    anthropic, _ = real_providers
    # the analyst's first turn answers prose instead of calling a tool or giving JSON
    anthropic.inject("analyst", Fault("answer", text="I think the deal lacks an owner."))
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    analyst = [s for s in anthropic.served if s.agent == "analyst"]
    assert len(analyst) == 2  # the malformed answer, then the repaired one
    repair_prompt = analyst[1].request["messages"][-1]["content"]
    assert repair_prompt.startswith("Your answer was not valid: no JSON object in the answer")
    assert _steps(run_id)["analyst"].retries == 0


def test_malformed_twice_fails_permanently_with_the_raw_output(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    bad = '{"root_cause": "gremlins", "narrative": "x", "confidence": 7}'
    anthropic.inject("analyst", Fault("answer", text="not json"), Fault("answer", text=bad))
    run_id = _dispatch_one()
    [run] = wait_for_runs([run_id], timeout_s=60)
    assert run["status"] == "failed" and run["retries"] == 0
    assert str(run["error"]).startswith("analyst: MalformedModelOutput: analyst output invalid after one repair")
    assert "root_cause: Input should be" in str(run["error"])
    assert f"raw output: {bad!r}" in str(run["error"])
    analyst = _steps(run_id)["analyst"]
    assert (analyst.status, analyst.retries) == ("failed", 0)
    assert analyst.output == {"raw_outputs": ["not json", bad]}
    assert "advisor" not in _steps(run_id)
    assert len([s for s in anthropic.served if s.agent == "analyst"]) == 2  # no retry of the step


def test_the_fake_refuses_tool_blocks_without_tools_as_the_messages_api_does(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    import anthropic as sdk

    fake, _ = real_providers
    client = sdk.Anthropic(api_key="sk-ant-test", base_url=fake.url, max_retries=0)
    history = [
        {"role": "user", "content": "Explain deal d1"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_record", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "{}"}]},
    ]
    with pytest.raises(sdk.BadRequestError, match="must define tools"):
        client.messages.create(model="claude-x", max_tokens=100, messages=history)  # type: ignore[arg-type]
    tools = [{"name": "get_record", "description": "d", "input_schema": {"type": "object"}}]
    wrong_id = [*history[:2], {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}]
    with pytest.raises(sdk.BadRequestError, match="does not have matching `tool_use`"):
        client.messages.create(model="claude-x", max_tokens=100, messages=wrong_id, tools=tools)  # type: ignore[arg-type]
    answered = client.messages.create(
        model="claude-x",
        max_tokens=100,
        messages=history,
        tools=tools,
        tool_choice={"type": "none"},  # type: ignore[arg-type]
    )
    assert answered.stop_reason == "end_turn"


def _analyst_requests(fake: FakeAnthropic) -> list[Served]:
    return [s for s in fake.served if s.agent == "analyst"]


def test_prose_after_a_tool_turn_is_repaired_with_the_tools_still_defined(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    prose = "The deal has no owner because its rep left the company."
    anthropic.inject("analyst", Fault("normal"), Fault("answer", text=prose))  # a tool turn, then prose
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    analyst = _analyst_requests(anthropic)
    assert [s.status for s in analyst] == [200, 200, 200] and analyst[0].tool_use  # none refused
    repair = analyst[2].request
    assert repair["tools"] and repair["tool_choice"] == {"type": "none"}
    assert [s for s in anthropic.served if s.status == 400] == []


def test_a_model_out_of_tool_turns_is_asked_for_its_answer_with_the_tools_still_defined(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    anthropic.inject("analyst", *[Fault("tool_call")] * 4)  # the model keeps calling tools for 4 turns
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    analyst = _analyst_requests(anthropic)
    assert len(analyst) == 5 and all(s.tool_use for s in analyst[:4])
    last = analyst[4].request
    assert last["tools"] and last["tool_choice"] == {"type": "none"} and not analyst[4].tool_use
    assert [s for s in anthropic.served if s.status == 400] == []
