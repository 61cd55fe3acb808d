"""Cost as billed: cache prices, thinking as output, and an unknown model's cost unknown."""

from __future__ import annotations

import logging

import pytest

from switchboard.agents.context import StepContext
from switchboard.agents.llm import PRICES, estimate_cost_usd, reset_provider_cache
from switchboard.agents.llm.base import LLMReply


def test_cache_reads_and_writes_are_priced_with_their_multipliers() -> None:
    price = PRICES["claude-sonnet-5"]
    assert (price.cache_read, price.cache_write) == pytest.approx((price.input * 0.1, price.input * 1.25))
    cost = estimate_cost_usd("claude-sonnet-5", 1000, 500, cache_read=10_000, cache_write=2_000)
    assert cost == pytest.approx((1000 * 2.0 + 500 * 10.0 + 10_000 * 0.2 + 2_000 * 2.5) / 1e6)


def test_an_unknown_model_costs_none_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    reset_provider_cache()
    with caplog.at_level(logging.WARNING, logger="switchboard.llm"):
        assert estimate_cost_usd("claude-mystery-1", 100, 100) is None
        assert estimate_cost_usd("claude-mystery-1", 100, 100) is None
    assert [r.getMessage() for r in caplog.records].count(
        "no price known for model 'claude-mystery-1': its cost is recorded as unknown (NULL)"
    ) == 1
    assert estimate_cost_usd("offline-rules-v1", 0, 0) == 0.0


def test_one_unpriced_turn_makes_the_steps_cost_unknown() -> None:
    ctx = StepContext(run_id="r", step="analyst", agent="analyst", task_id="t")
    ctx.record_reply(LLMReply("", (), 100, 50, "anthropic", "claude-sonnet-5", cache_read_tokens=10))
    assert ctx.cost_usd is not None and ctx.cost_usd > 0
    ctx.record_reply(LLMReply("", (), 100, 50, "anthropic", "claude-mystery-2"))
    assert ctx.cost_usd is None and (ctx.tokens_in, ctx.tokens_out, ctx.cache_read_tokens) == (200, 100, 10)


def test_a_batch_answer_is_billed_at_half_price() -> None:
    ctx = StepContext(run_id="r", step="analyst", agent="analyst", task_id="t")
    direct = LLMReply("x", (), 1000, 500, "anthropic", "claude-sonnet-5", cache_read_tokens=2000)
    ctx.record_reply(direct)
    ctx.record_reply(LLMReply("x", (), 1000, 500, "anthropic", "claude-sonnet-5", cache_read_tokens=2000, batch=True))
    full = estimate_cost_usd("claude-sonnet-5", 1000, 500, cache_read=2000)
    assert full is not None and ctx.cost_usd == pytest.approx(full * 1.5)
