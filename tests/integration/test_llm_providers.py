"""The real Anthropic and google-genai SDKs, over HTTP, against local fakes of both APIs.

The demo runs unchanged (a subprocess, embedded mode) with keys and base URLs pointing at the
fakes, and the tokens it records must equal the usage the fakes reported. Faults the fakes
inject — 429 with Retry-After, 529 overload, unreadable bodies, malformed answers — go
through a real worker on Postgres and Redis.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from switchboard.agents.llm import PRICES, reset_provider_cache
from switchboard.db.models import AgentDecision, AgentStep
from switchboard.db.records import RecordIn, upsert_records
from switchboard.db.session import session_scope
from switchboard.settings import get_settings
from switchboard.tasks.runs import dispatch_insight
from switchboard.tasks.steps import analyst_step
from switchboard.tasks.watch import scan
from tests.fakes.llm_servers import FakeAnthropic, FakeGemini, Fault, Served, _anthropic_text
from tests.support.env import child_env
from tests.support.runs import wait_for_runs, wait_for_status

ANTHROPIC_KEY = "sk-ant-fake-0123456789abcdef"
GEMINI_KEY = "AIzaFAKE-0123456789abcdef"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeAnthropic, FakeGemini]]:
    with FakeAnthropic() as anthropic, FakeGemini() as gemini:
        yield anthropic, gemini  # type: ignore[misc]


AGENT_PROVIDERS = {"SWITCHBOARD_WATCHER_PROVIDER": "gemini", "SWITCHBOARD_ANALYST_PROVIDER": "anthropic",
                   "SWITCHBOARD_ADVISOR_PROVIDER": "anthropic"}  # fmt: skip


def _provider_env(anthropic: FakeAnthropic, gemini: FakeGemini, **providers: str) -> dict[str, str]:
    return {
        "SWITCHBOARD_ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "SWITCHBOARD_ANTHROPIC_BASE_URL": anthropic.url,
        "SWITCHBOARD_GEMINI_API_KEY": GEMINI_KEY,
        "SWITCHBOARD_GEMINI_BASE_URL": gemini.url,
        **AGENT_PROVIDERS,
        **providers,
    }


def _reset_llm_limits(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for pattern in ("switchboard:breaker:anthropic*", "switchboard:breaker:gemini*",
                    "switchboard:ratelimit:anthropic*", "switchboard:ratelimit:gemini*"):  # fmt: skip
        for key in client.scan_iter(pattern):
            client.delete(key)


@pytest.fixture()
def real_providers(
    fakes: tuple[FakeAnthropic, FakeGemini],
    database_url: str,
    redis_url: str,
    celery_worker: object,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[FakeAnthropic, FakeGemini]]:
    """This process (and its in-process worker) uses the real SDKs against the fakes."""
    anthropic, gemini = fakes
    anthropic.reset()
    gemini.reset()
    _reset_llm_limits(redis_url)
    for name, value in _provider_env(anthropic, gemini).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_provider_cache()
    yield anthropic, gemini
    # no test may pass on a request the real APIs would refuse
    assert anthropic.rejected() == [] and gemini.rejected() == [], [
        s.problem for s in anthropic.rejected() + gemini.rejected()
    ]
    monkeypatch.undo()
    get_settings.cache_clear()
    reset_provider_cache()
    _reset_llm_limits(redis_url)


def _recorded_usage(runs: list[dict[str, object]]) -> tuple[int, int, int, int]:
    keys = ("tokens_in", "tokens_out", "cache_read_tokens", "cache_write_tokens")
    return tuple(sum(int(str(run[key])) for run in runs) for key in keys)  # type: ignore[return-value]


def _served_usage(*fakes: FakeAnthropic | FakeGemini) -> tuple[int, int, int, int]:
    usages = [fake.usage() for fake in fakes]
    return tuple(sum(u[index] for u in usages) for index in range(4))  # type: ignore[return-value]


def _demo(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    demo = subprocess.run(
        [sys.executable, "-m", "switchboard", "demo"], env=env, capture_output=True, text=True, timeout=300
    )
    listed = subprocess.run(
        [sys.executable, "-m", "switchboard", "runs", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    return demo, json.loads(listed.stdout)


def test_demo_through_the_real_sdks_records_the_fakes_usage(
    fakes: tuple[FakeAnthropic, FakeGemini], tmp_path: Path
) -> None:
    anthropic, gemini = fakes
    anthropic.reset()
    gemini.reset()
    env = child_env(**_provider_env(anthropic, gemini), SWITCHBOARD_DATA_DIR=str(tmp_path / "state"))
    demo, runs = _demo(env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "agents: watcher gemini, analyst anthropic, advisor anthropic" in demo.stderr
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
    # every answer came through the answer tool, forced where no data tool was offered
    answers = [s for s in anthropic.served if s.stop == "tool_use" and s.agent == "advisor"]
    assert len(answers) == 3 and all(s.request["tool_choice"] == {"type": "tool", "name": "answer"} for s in answers)
    served = _served_usage(anthropic, gemini)
    assert served[0] > 0 and served[1] > 0
    assert _recorded_usage(runs) == served
    assert all(run["error"] is None for run in runs)
    # the keys reached the fakes as credentials, and nowhere in what we print
    assert gemini.served[0].headers["x-goog-api-key"] == GEMINI_KEY
    assert anthropic.served[0].headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"
    for secret in (ANTHROPIC_KEY, GEMINI_KEY):
        assert secret not in demo.stdout + demo.stderr
        assert secret not in (tmp_path / "state" / "demo-worker.log").read_text()
    assert anthropic.rejected() == [] and gemini.rejected() == []


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
def test_demo_holds_up_against_models_that_misbehave(
    fakes: tuple[FakeAnthropic, FakeGemini], tmp_path: Path, provider: str
) -> None:
    """Every agent on one provider, scripted as real models behave: prose after a tool turn,
    an answer cut at max_tokens once, one refusal, two overloads. The runs that can succeed
    do, the refused one fails with the model's reason, no request is refused as invalid, and
    the recorded tokens equal what the fake billed."""
    anthropic, gemini = fakes
    anthropic.reset()
    gemini.reset()
    fake = anthropic if provider == "anthropic" else gemini
    fake.inject("analyst", Fault("normal"), Fault("prose"))  # a tool turn, then prose
    fake.inject("watcher", Fault("max_tokens"))
    fake.inject("advisor", Fault("refusal"))
    fake.inject("analyst", *[Fault("overloaded", retry_after="1")] * 2)
    everyone = {f"SWITCHBOARD_{agent}_PROVIDER": provider for agent in ("WATCHER", "ANALYST", "ADVISOR")}
    env = child_env(**_provider_env(anthropic, gemini, **everyone), SWITCHBOARD_DATA_DIR=str(tmp_path / "state"))
    demo, runs = _demo(env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "1 run(s) refused by the model" in demo.stdout
    statuses = sorted(str(run["status"]) for run in runs)
    assert statuses == ["done", "done", "failed"], runs
    [refused] = [run for run in runs if run["status"] == "failed"]
    assert str(refused["error"]).startswith("advisor: ModelRefused: advisor: the model refused to answer")
    assert fake.rejected() == [], [s.problem for s in fake.rejected()]
    assert _recorded_usage(runs) == _served_usage(fake)
    cut = [s for s in fake.served if s.agent == "watcher" and s.stop in ("max_tokens", "MAX_TOKENS")]
    assert len(cut) == 1  # retried once with twice the budget, which answered
    print(
        f"demo on {provider}: runs {statuses}, {len(fake.served)} requests "
        f"({sum(s.status != 200 for s in fake.served)} overloaded), 0 rejected, usage {_served_usage(fake)}"
    )


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
        row = steps[step]
        assert (row.tokens_in, row.tokens_out, row.cache_read_tokens, row.cache_write_tokens) == served
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
    # an overloaded model is waited out (deferred): no retry of the step's budget used up
    assert steps[agent].retries == (0 if fault.kind == "overloaded" else 1) and steps[agent].attempt == 2
    assert all(step.retries == 0 for name, step in steps.items() if name != agent)
    calls = [s for s in fake.served if s.agent == agent]
    assert calls[0].status != 200 and calls[1].status == 200
    waited = calls[1].at - calls[0].at
    asked = float(fault.retry_after or 0) or float(fault.retry_after_ms or 0) / 1000
    assert waited >= asked, f"retried after {waited:.2f} s although the server asked for {asked} s"


def test_one_malformed_answer_is_repaired(real_providers: tuple[FakeAnthropic, FakeGemini]) -> None:
    anthropic, _ = real_providers
    # the analyst's first turn answers prose instead of calling a tool or the answer tool
    anthropic.inject("analyst", Fault("answer", text="I think the deal lacks an owner."))
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    analyst = [s for s in anthropic.served if s.agent == "analyst"]
    assert len(analyst) == 2  # the malformed answer, then the repaired one
    repair = analyst[1].request
    asked = _anthropic_text(repair["messages"][-1]["content"])
    assert asked.startswith("Your answer was not valid: no JSON object in the answer")
    assert repair["tool_choice"] == {"type": "tool", "name": "answer"}  # the repair is a forced answer
    assert _steps(run_id)["analyst"].retries == 0


def test_a_json_answer_in_a_code_fence_is_read_as_the_fallback(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    anthropic.inject("analyst", Fault("normal"), Fault("fenced"))  # a tool turn, then ```json …```
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    assert len(_analyst_requests(anthropic)) == 2  # no repair needed


def test_malformed_twice_fails_permanently_with_the_raw_output(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    bad = {"root_cause": "gremlins", "narrative": "x", "evidence_ids": [], "confidence": 7}
    # tool inputs are not validated against the schema by the API: a model can send anything
    anthropic.inject("analyst", Fault("answer", text="not json"), Fault("answer_input", input=bad))
    run_id = _dispatch_one()
    [run] = wait_for_runs([run_id], timeout_s=60)
    assert run["status"] == "failed" and run["retries"] == 0
    assert str(run["error"]).startswith("analyst: MalformedModelOutput: analyst output invalid after one repair")
    assert "root_cause: Input should be" in str(run["error"])
    raw = f"answer({json.dumps(bad)})"
    assert f"raw output: {raw!r}" in str(run["error"])
    analyst = _steps(run_id)["analyst"]
    assert (analyst.status, analyst.retries) == ("failed", 0)
    assert analyst.output == {"raw_outputs": ["not json", raw]}
    assert "advisor" not in _steps(run_id)
    assert len([s for s in anthropic.served if s.agent == "analyst"]) == 2  # no retry of the step


TOOLS = [{"name": "get_record", "description": "d", "input_schema": {"type": "object"}}]
USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_record", "input": {}}]}
RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "{}"}]}
ASK = {"role": "user", "content": "Explain deal d1"}
PREFILL = {"role": "assistant", "content": "Sure, here is"}
THINKING = {"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2048}}
FORGED = {
    "role": "assistant",
    "content": [{"type": "thinking", "thinking": "t", "signature": "forged"}, *USE["content"]],
}
MARKED = {"role": "user", "content": [{"type": "text", "text": str(n), "cache_control": {"type": "ephemeral"}}
                                      for n in range(5)]}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ({"messages": [ASK, USE, RESULT]}, "must define tools"),
        ({"messages": [ASK, USE, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]}],
          "tools": TOOLS}, "does not have matching `tool_use`"),
        ({"messages": [ASK, USE, {"role": "user", "content": "go on"}], "tools": TOOLS},
         "`tool_use` ids were found without `tool_result` blocks"),
        ({"messages": [ASK, USE, {"role": "user", "content": [{"type": "text", "text": "x"}, RESULT["content"][0]]}],
          "tools": TOOLS}, "`tool_result` blocks must come first"),
        ({"messages": [USE, RESULT], "tools": TOOLS}, 'first message must use the "user" role'),
        ({"messages": [ASK, ASK]}, "roles must alternate"),
        ({"messages": [ASK, PREFILL]}, "does not support assistant message prefill"),
        ({"messages": [ASK], "tools": [{"name": "get record", "input_schema": {"type": "object"}}]}, "match pattern"),
        ({"messages": [ASK], "tools": [{"name": "x", "input_schema": {"type": "array"}}]}, "Input should be 'object'"),
        ({"messages": [ASK], "tools": TOOLS, "tool_choice": {"type": "some"}}, "tool_choice.type"),
        ({"messages": [ASK], "tools": TOOLS, "tool_choice": {"type": "tool", "name": "answer"}}, "is not defined"),
        ({"messages": [ASK], "tools": TOOLS, "tool_choice": {"type": "tool", "name": "get_record"}, **THINKING},
         "Thinking may not be enabled when tool_choice forces"),
        ({"messages": [ASK], "thinking": {"type": "enabled", "budget_tokens": 512}}, "greater than or equal to 1024"),
        ({"messages": [ASK], "thinking": {"type": "enabled", "budget_tokens": 2048}}, "must be greater than `thinking"),
        ({"messages": [ASK, USE, RESULT], "tools": TOOLS, **THINKING}, "Expected `thinking` or `redacted_thinking`"),
        ({"messages": [ASK, FORGED, RESULT], "tools": TOOLS, **THINKING}, "Invalid `signature`"),
        ({"messages": [MARKED]}, "A maximum of 4 blocks with cache_control"),
    ],
    ids=["tools-undefined", "result-without-use", "use-without-result", "result-not-first", "first-not-user",
         "not-alternating", "prefill", "tool-name", "schema-not-object", "tool-choice-type", "tool-choice-unknown",
         "thinking-forced-tool", "thinking-budget-small", "thinking-budget-over-max", "thinking-block-missing",
         "thinking-signature-forged", "five-cache-breakpoints"],
)  # fmt: skip
def test_the_anthropic_fake_refuses_what_the_messages_api_refuses(
    fakes: tuple[FakeAnthropic, FakeGemini], body: dict[str, object], refusal: str
) -> None:
    import anthropic as sdk

    fake, _ = fakes
    client = sdk.Anthropic(api_key="sk-ant-test", base_url=fake.url, max_retries=0)
    try:
        with pytest.raises(sdk.BadRequestError, match=re.escape(refusal)) as raised:
            client.messages.create(**{"model": "claude-x", "max_tokens": 100, **body})  # type: ignore[call-overload]
        assert raised.value.status_code == 400 and raised.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    finally:
        fake.reset()


def test_the_anthropic_fake_takes_a_valid_tool_conversation(fakes: tuple[FakeAnthropic, FakeGemini]) -> None:
    import anthropic as sdk

    fake, _ = fakes
    client = sdk.Anthropic(api_key="sk-ant-test", base_url=fake.url, max_retries=0)
    try:
        answered = client.messages.create(model="claude-x", max_tokens=100, messages=[ASK, USE, RESULT],  # type: ignore[list-item]
                                          tools=TOOLS, tool_choice={"type": "none"})  # type: ignore[arg-type]  # fmt: skip
        assert answered.stop_reason == "end_turn" and fake.rejected() == []
    finally:
        fake.reset()


CALL = {"role": "model", "parts": [{"functionCall": {"name": "get_record", "args": {}}}]}
FUNCTIONS = [{"functionDeclarations": [{"name": "get_record", "description": "d",
                                        "parametersJsonSchema": {"type": "object"}}]}]  # fmt: skip
QUESTION = {"role": "user", "parts": [{"text": "Explain deal d1"}]}


def _response(name: str = "get_record") -> dict[str, object]:
    return {"role": "user", "parts": [{"functionResponse": {"name": name, "response": {"output": {}}}}]}


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ({"contents": []}, "contents is not specified"),
        ({"contents": [QUESTION, QUESTION]}, "alternate between user and model"),
        ({"contents": [CALL, _response()], "tools": FUNCTIONS}, "start with a user role"),
        ({"contents": [QUESTION, CALL, _response()], "tools": FUNCTIONS}, "missing a thought_signature"),
        ({"contents": [QUESTION, {"role": "user", "parts": [{"text": "x"}]}]}, "alternate"),
        ({"contents": [QUESTION], "tools": [{"functionDeclarations": [{"name": "9lives"}]}]}, "Invalid function name"),
        ({"contents": [QUESTION], "tools": FUNCTIONS, "generationConfig": {"responseMimeType": "application/json"}},
         "Function calling with a response mime type"),
        ({"contents": [QUESTION], "tools": FUNCTIONS,
          "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["get_record"]}}},
         "only set when the function calling mode is ANY"),
        ({"contents": [QUESTION], "generationConfig": {"thinkingConfig": {"thinkingBudget": 0,
                                                                          "thinkingLevel": "LOW"}}},
         "cannot use both thinking_level"),
    ],
    ids=["no-contents", "not-alternating", "first-not-user", "signature-missing", "two-user-turns", "function-name",
         "json-with-functions", "allowed-names-without-any", "budget-and-level"],
)  # fmt: skip
def test_the_gemini_fake_refuses_what_generate_content_refuses(
    fakes: tuple[FakeAnthropic, FakeGemini], body: dict[str, object], refusal: str
) -> None:
    import httpx

    _, fake = fakes
    try:
        answer = httpx.post(f"{fake.url}/v1beta/models/gemini-2.5-flash:generateContent", json=body,
                            headers={"x-goog-api-key": GEMINI_KEY}, timeout=10)  # fmt: skip
        assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert refusal in answer.json()["error"]["message"]
    finally:
        fake.reset()


def test_the_gemini_fake_matches_function_responses_to_the_calls_of_the_turn_before(
    fakes: tuple[FakeAnthropic, FakeGemini],
) -> None:
    """A signed call answered by a response of another name, or by two responses, is refused;
    answered by its own response it is taken."""
    import httpx

    _, fake = fakes
    url = f"{fake.url}/v1beta/models/gemini-2.5-flash:generateContent"
    headers = {"x-goog-api-key": GEMINI_KEY}
    system = {"parts": [{"text": "You are the Analyst of a revenue-operations team."}]}
    try:
        first = httpx.post(url, json={"contents": [QUESTION], "tools": FUNCTIONS, "systemInstruction": system},
                           headers=headers, timeout=10).json()  # fmt: skip
        call = first["candidates"][0]["content"]
        assert "thoughtSignature" in call["parts"][0]
        for wrong, refusal in ((_response("other"), "immediately after a function call turn"),
                               ({"role": "user", "parts": _response()["parts"] * 2}, "number of function response")):  # type: ignore[operator]  # fmt: skip
            refused = httpx.post(url, json={"contents": [QUESTION, call, wrong], "tools": FUNCTIONS},
                                 headers=headers, timeout=10)  # fmt: skip
            assert refused.status_code == 400 and refusal in refused.json()["error"]["message"]
        taken = httpx.post(url, json={"contents": [QUESTION, call, _response()], "tools": FUNCTIONS},
                           headers=headers, timeout=10)  # fmt: skip
        assert taken.status_code == 200
    finally:
        fake.reset()


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
    assert repair["tools"] and repair["tool_choice"] == {"type": "tool", "name": "answer"}
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
    assert last["tools"] and last["tool_choice"] == {"type": "tool", "name": "answer"}
    answered = analyst[4]
    assert answered.stop == "tool_use"  # the answer tool
    assert [s for s in anthropic.served if s.status == 400] == []


def _model_calls(run_id: str, step: str) -> list[AgentDecision]:
    with session_scope() as session:
        rows = session.scalars(
            select(AgentDecision)
            .where(AgentDecision.run_id == run_id, AgentDecision.step == step, AgentDecision.tool.like("llm:%.%"))
            .order_by(AgentDecision.id)
        ).all()
        session.expunge_all()
        return list(rows)


def test_every_model_call_is_a_tool_call_row_with_its_status_and_attempt(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    anthropic.inject("analyst", Fault("rate_limit", retry_after="1"))
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    analyst = [(row.tool, row.status, row.attempts, row.input["turn"]) for row in _model_calls(run_id, "analyst")]
    # the 429 (attempt 1, retried), the same turn again (attempt 2), then the answer turn
    assert analyst == [("llm:anthropic.messages", "retrying", 1, 1), ("llm:anthropic.messages", "done", 2, 1),
                       ("llm:anthropic.messages", "done", 1, 3)]  # fmt: skip
    [watcher] = _model_calls(run_id, "watcher")
    assert (watcher.tool, watcher.status) == ("llm:gemini.generate_content", "done")
    assert watcher.output["value"]["tool_calls"] == ["answer"]  # type: ignore[index]
    for row in [*_model_calls(run_id, "analyst"), watcher]:
        assert ANTHROPIC_KEY not in json.dumps([row.input, row.output, row.error_message])


def test_an_answer_cut_at_max_tokens_twice_fails_naming_the_setting(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    anthropic.inject("advisor", Fault("max_tokens"), Fault("max_tokens"))
    run_id = _dispatch_one()
    [run] = wait_for_runs([run_id], timeout_s=60)
    assert run["status"] == "failed" and run["retries"] == 0
    error = str(run["error"])
    assert error.startswith("advisor: AnswerTruncated: advisor: the model's answer was cut at max_tokens twice")
    assert "(8192, then 16384 tokens, thinking included); raise SWITCHBOARD_ADVISOR_MAX_TOKENS" in error
    advisor = [s for s in anthropic.served if s.agent == "advisor"]
    assert [s.request["max_tokens"] for s in advisor] == [8192, 16384]


def test_a_refusal_fails_the_run_at_once_with_the_models_words(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    anthropic.inject("analyst", Fault("refusal"))
    run_id = _dispatch_one()
    [run] = wait_for_runs([run_id], timeout_s=60)
    assert run["status"] == "failed" and run["retries"] == 0
    assert str(run["error"]).startswith("analyst: ModelRefused: analyst: the model refused to answer (refusal)")
    assert "I can't help with that request." in str(run["error"])
    assert len(_analyst_requests(anthropic)) == 1  # not retried, not repaired


def test_a_step_past_its_soft_time_limit_fails_on_the_thread_pool_before_its_next_model_call(
    real_providers: tuple[FakeAnthropic, FakeGemini], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Celery keeps no time limit on the thread pool (the in-process worker's pool, as shipped):
    # the task base does, before every call through the resilience layer.
    anthropic, _ = real_providers
    monkeypatch.setattr(analyst_step, "soft_time_limit", 5)  # the task option, as @app.task(soft_time_limit=5)
    anthropic.inject("analyst", Fault("tool_call", think_s=3.0), Fault("tool_call", think_s=3.0))
    run_id = _dispatch_one()
    [run] = wait_for_runs([run_id], timeout_s=60)
    assert run["status"] == "failed" and run["retries"] == 0, run
    error = str(run["error"])
    found = re.match(r"analyst: TimeLimitExceeded: the task ran (\d+) s, past its soft time limit of 5 s, "
                     r"and stopped before calling llm:anthropic\.messages", error)  # fmt: skip
    assert found and int(found.group(1)) >= 6, error  # two turns of 3 s
    assert "SWITCHBOARD_TASK_TIME_LIMIT_S" in error
    assert len(_analyst_requests(anthropic)) == 2  # the third turn was never sent


def test_a_paused_turn_is_sent_back_for_the_model_to_continue(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    anthropic.inject("analyst", Fault("pause_turn"))
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    paused, resumed, *_ = _analyst_requests(anthropic)
    assert paused.stop == "pause_turn"
    last = resumed.request["messages"][-1]
    assert last["role"] == "assistant" and [b["type"] for b in last["content"]] == ["text", "server_tool_use"]


def test_several_tool_calls_in_one_turn_are_each_answered_in_the_next(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    anthropic.inject("analyst", Fault("tool_calls"))
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    _first, second, *_ = _analyst_requests(anthropic)
    asked = [b["id"] for b in second.request["messages"][-2]["content"] if b["type"] == "tool_use"]
    answered = [b["tool_use_id"] for b in second.request["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert len(asked) == 2 and answered == asked
    with session_scope() as session:
        tools = session.scalars(
            select(AgentDecision.tool).where(AgentDecision.run_id == run_id, AgentDecision.tool.in_(
                ["llm:get_record", "llm:linked_entities"]))
        ).all()  # fmt: skip
    assert sorted(tools) == ["llm:get_record", "llm:linked_entities"]


def test_thinking_blocks_go_back_unchanged_and_the_answer_is_not_forced(
    real_providers: tuple[FakeAnthropic, FakeGemini], monkeypatch: pytest.MonkeyPatch
) -> None:
    anthropic, _ = real_providers
    monkeypatch.setenv("SWITCHBOARD_ANALYST_THINKING_BUDGET", "2048")
    get_settings.cache_clear()
    run_id = _dispatch_one()
    wait_for_status(run_id, "done", timeout_s=60)
    first, second = _analyst_requests(anthropic)
    assert first.request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert all("tool_choice" not in s.request or s.request["tool_choice"]["type"] in ("auto", "none")
               for s in (first, second))  # fmt: skip
    sent_back = second.request["messages"][1]["content"][0]
    assert sent_back["type"] == "thinking" and sent_back["signature"]  # the fake checked the signature
    assert second.tool_use  # answered through the answer tool all the same
    steps = _steps(run_id)
    assert steps["analyst"].tokens_out == anthropic.usage("analyst").tokens_out  # thinking counted as output


def test_prompt_caching_reads_the_turns_before_and_records_cache_tokens(
    real_providers: tuple[FakeAnthropic, FakeGemini],
) -> None:
    anthropic, _ = real_providers
    run_id = _dispatch_one()
    run = wait_for_status(run_id, "done", timeout_s=60)
    first, second = _analyst_requests(anthropic)
    assert first.cache_write > 0 and first.cache_read == 0  # the long first prompt is cached…
    assert second.cache_read >= first.cache_write  # …and read back by the answer turn
    usage = anthropic.usage()
    assert (run["cache_read_tokens"], run["cache_write_tokens"]) == (usage.cache_read, usage.cache_write)
    steps = _steps(run_id)
    price = PRICES["claude-sonnet-5"]
    analyst = steps["analyst"]
    spent = (
        analyst.tokens_in * price.input
        + analyst.tokens_out * price.output
        + analyst.cache_read_tokens * price.cache_read
        + analyst.cache_write_tokens * price.cache_write
    )
    expected = spent / 1e6
    assert analyst.cost_usd == pytest.approx(expected)


def test_a_model_without_a_price_costs_null_not_zero(
    real_providers: tuple[FakeAnthropic, FakeGemini], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_ANTHROPIC_MODEL", "claude-unpriced-9")
    get_settings.cache_clear()
    reset_provider_cache()
    run_id = _dispatch_one()
    run = wait_for_status(run_id, "done", timeout_s=60)
    steps = _steps(run_id)
    assert steps["analyst"].cost_usd is None and steps["advisor"].cost_usd is None
    assert steps["watcher"].cost_usd is not None and steps["watcher"].cost_usd > 0  # gemini-2.5-flash is priced
    assert run["cost_usd"] is None


def test_an_overload_storm_opens_the_breaker_and_the_runs_finish_after(
    real_providers: tuple[FakeAnthropic, FakeGemini], redis_url: str
) -> None:
    """529 for 30 s: the breaker for this model opens after its failure threshold, no request
    reaches the model while it is open, and the run waits (deferred, no retry used) and then
    finishes."""
    import redis

    anthropic, _ = real_providers
    anthropic.overload_for(30)
    run_id = _dispatch_one()
    client = redis.Redis.from_url(redis_url)
    key = "switchboard:breaker:anthropic:claude-sonnet-5"
    deadline = time.monotonic() + 30
    while not client.hget(key, "opened"):
        assert time.monotonic() < deadline, "the breaker never opened"
        time.sleep(0.05)
    open_until = float(client.hget(key, "open_until") or 0)
    seconds, micros = client.time()  # type: ignore[misc]
    still_open = open_until - (seconds + micros / 1e6)
    before = len(anthropic.served)
    time.sleep(max(0.0, still_open - 0.5))
    assert len(anthropic.served) == before, "requests reached the model while the breaker was open"
    wait_for_status(run_id, "done", timeout_s=60)
    analyst = _steps(run_id)["analyst"]
    assert analyst.retries == 0  # waited out, not counted against its retries
    storm = [s for s in anthropic.served if s.status == 529]
    assert len(storm) == get_settings().breaker_failure_threshold
    assert client.hget(key, "state") == b"closed"
    print(f"breaker: {len(storm)} overloaded answers, then open {still_open:.1f} s with 0 requests, then done")


def test_a_provider_without_its_key_is_a_startup_error_not_a_silent_offline(tmp_path: Path) -> None:
    env = child_env(SWITCHBOARD_ANALYST_PROVIDER="anthropic", SWITCHBOARD_DATA_DIR=str(tmp_path))
    worker = subprocess.run([sys.executable, "-m", "switchboard", "worker"], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert worker.returncode == 2
    assert "SWITCHBOARD_ANALYST_PROVIDER is anthropic but SWITCHBOARD_ANTHROPIC_API_KEY" in worker.stderr
    assert "SWITCHBOARD_<AGENT>_PROVIDER=offline" in worker.stderr
    evaluated = subprocess.run([sys.executable, "-m", "switchboard", "eval", "--provider", "gemini"], env=env,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
    assert evaluated.returncode == 2 and "SWITCHBOARD_GEMINI_API_KEY" in evaluated.stderr


def test_eval_against_the_strict_fake_has_valid_contracts_and_no_rejected_request(
    fakes: tuple[FakeAnthropic, FakeGemini], tmp_path: Path, database_url: str, redis_url: str
) -> None:
    anthropic, gemini = fakes
    anthropic.reset()
    env = child_env(**_provider_env(anthropic, gemini), SWITCHBOARD_DATA_DIR=str(tmp_path / "state"))
    evaluated = subprocess.run([sys.executable, "-m", "switchboard", "eval", "--provider", "anthropic", "--json"],
                               env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    # the fake's brain names causes from a kind table and plans a finance review for everything:
    # every answer valid, and the floors catch it on this first run
    assert evaluated.returncode == 1, evaluated.stdout[-2000:] + evaluated.stderr[-4000:]
    result = json.loads(evaluated.stdout)
    assert result["provider"] == "anthropic" and result["scores"]["contract_validity"] == 1.0
    assert any(line.startswith("hubspot: action_match") for line in result["floors_missed"]), result["floors_missed"]
    assert anthropic.rejected() == [] and len(anthropic.served) > 0
    assert {s.agent for s in anthropic.served} == {"watcher", "analyst", "advisor"}
    print(f"eval anthropic: {len(result['scenarios'])} scenarios, {len(anthropic.served)} requests, "
          f"0 rejected, scores {result['scores']}")  # fmt: skip
