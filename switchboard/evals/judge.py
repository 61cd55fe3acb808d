"""The narrative judge: each Analyst narrative graded against a rubric by a model, reported apart
from the exact-match scores (`scores.narrative` in the eval's JSON, `judge` per scenario).

The judge is an LLM provider like the agents' (`SWITCHBOARD_EVAL_JUDGE_PROVIDER`: offline,
anthropic or gemini), asked through the same tool loop with a forced `answer` tool; its prompt
and verdicts are stored with each scenario's result. The offline judge is deterministic — the
offline provider's rule for `eval.judge`: crude keyword and figure checks, for CI — and a real
model is the judge worth trusting.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from switchboard.agents.answers import answer_tool
from switchboard.agents.context import StepContext
from switchboard.agents.llm import provider_for
from switchboard.agents.llm.base import LLMRequest, Message
from switchboard.agents.toolloop import ask
from switchboard.evals.scenarios import Scenario
from switchboard.settings import Settings

RUBRIC: dict[str, str] = {
    "explains_cause": "The narrative explains the expected root cause (in its own words), not another one.",
    "uses_evidence": "It rests on the evidence: it quotes at least one figure or names a record from the alert.",
    "actionable": "An operator could act on it: it says what is wrong and where, in at most five sentences.",
}
SYSTEM = (
    "You grade a revenue-operations analyst's explanation of an anomaly against a rubric. For each criterion "
    "answer pass true or false with a one-sentence reason. Judge only what the explanation says; the expected "
    "root cause is the truth."
)
JUDGE = answer_tool(
    "Give your verdict on each criterion of the rubric.",
    {
        "type": "object",
        "properties": {
            "verdicts": {
                "type": "object",
                "properties": {
                    name: {
                        "type": "object",
                        "properties": {"pass": {"type": "boolean"}, "reason": {"type": "string"}},
                        "required": ["pass", "reason"],
                        "additionalProperties": False,
                    }
                    for name in RUBRIC
                },
                "required": list(RUBRIC),
                "additionalProperties": False,
            }
        },
        "required": ["verdicts"],
        "additionalProperties": False,
    },
)


def _judge_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"analyst_provider": settings.eval_judge_provider})


def judge_run(scenario: Scenario, run: dict[str, Any], eval_run_id: str, settings: Settings) -> dict[str, Any]:
    """The judge's verdicts on one run's narrative, with the prompt it was given."""
    expected = scenario.root_causes.get(run["kind"])
    facts = {
        "narrative": run.get("narrative") or "",
        "expected_root_cause": expected,
        "alert_kind": run["kind"],
        "metrics": run.get("metrics") or {},
        "evidence_ids": run.get("evidence_ids") or [],
        "rubric": RUBRIC,
    }
    text = (
        f"Scenario: {scenario.description}\nAlert kind: {run['kind']}\nExpected root cause: {expected}\n"
        f"Rubric:\n{json.dumps(RUBRIC, indent=1)}\n\nExplanation to grade:\n{facts['narrative']}"
    )
    request = LLMRequest(purpose="eval.judge", system=SYSTEM, messages=(Message(role="user", text=text),),
                         facts=facts, max_tokens=1024, thinking_budget=0)  # fmt: skip
    ctx = StepContext(run_id=eval_run_id, step="judge", agent="judge", task_id=eval_run_id)
    provider = provider_for("analyst", _judge_settings(settings))

    def validate(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
        verdicts = answer.get("verdicts")
        if not isinstance(verdicts, dict) or set(verdicts) != set(RUBRIC):
            raise ValueError(f"verdicts: one per criterion is required: {', '.join(RUBRIC)}")
        return {name: {"pass": bool(v.get("pass")), "reason": str(v.get("reason") or "")[:500]}
                for name, v in verdicts.items()}  # fmt: skip

    try:
        verdicts = ask(ctx, provider, request, {}, JUDGE, validate)
        error = None
    except Exception as failure:  # a judge that cannot answer leaves the narrative ungraded, said so
        verdicts, error = {}, f"{type(failure).__name__}: {failure}"[:500]
    passed = sum(1 for v in verdicts.values() if v["pass"])
    return {"provider": provider.name, "model": provider.model, "system": SYSTEM, "prompt": text,
            "verdicts": verdicts, "passed": passed, "criteria": len(RUBRIC) if verdicts else 0, "error": error,
            "tokens_in": ctx.tokens_in, "tokens_out": ctx.tokens_out, "cost_usd": ctx.cost_usd}  # fmt: skip


def judge_all(
    scenarios: list[Scenario], outcomes: dict[str, dict[str, Any]], eval_run_id: str, settings: Settings
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every finished run's narrative judged, a few at a time: per scenario the judge's record,
    and the summary (criteria passed over criteria judged, per criterion too)."""
    work = []  # one narrative a scenario is graded: its first run's
    for scenario in scenarios:
        first = next((run for run in outcomes[scenario.name]["runs"] if run.get("narrative")), None)
        if first is not None:
            work.append((scenario, first))
    with ThreadPoolExecutor(max_workers=max(1, settings.eval_concurrency)) as pool:
        judged = list(pool.map(lambda item: (item[0].name, judge_run(item[0], item[1], eval_run_id, settings)), work))
    by_scenario = dict(judged)
    records = list(by_scenario.values())
    criteria = sum(r["criteria"] for r in records)
    summary = {
        "provider": records[0]["provider"] if records else None,
        "model": records[0]["model"] if records else None,
        "narratives": len(records),
        "narrative_score": round(sum(r["passed"] for r in records) / criteria, 4) if criteria else None,
        "by_criterion": {name: round(sum(1 for r in records if r["verdicts"].get(name, {}).get("pass"))
                                     / max(1, sum(1 for r in records if r["verdicts"])), 4)
                         for name in RUBRIC},
        "errors": sum(1 for r in records if r["error"]),
    }  # fmt: skip
    return by_scenario, summary
