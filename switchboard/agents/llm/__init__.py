"""LLM providers (`anthropic`, `gemini`, `offline`), the per-agent choice from settings, and cost.

No silent fallback: an agent configured for a provider whose key is not set is a start-up
error naming the variable (`check_configured`, run when a worker starts) — the offline provider
answers only when `SWITCHBOARD_<AGENT>_PROVIDER=offline` says so (the embedded demo and
`standalone` set it unless the agent's provider is chosen).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from switchboard.agents.llm.base import LLMProvider
from switchboard.agents.llm.offline import OfflineProvider
from switchboard.errors import ConfigurationError
from switchboard.settings import Settings

log = logging.getLogger("switchboard.llm")

AGENTS = ("watcher", "analyst", "advisor")
KEY_VARIABLES = {
    "anthropic": "SWITCHBOARD_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY)",
    "gemini": "SWITCHBOARD_GEMINI_API_KEY (or GEMINI_API_KEY)",
}


@dataclass(frozen=True)
class Price:
    """USD per million tokens: input, output (thinking included), cache reads, cache writes."""

    input: float
    output: float
    cache_read: float
    cache_write: float


BATCH_DISCOUNT = 0.5  # the Message Batches API bills half of every price


def _claude(input_price: float, output_price: float) -> Price:
    # prompt caching: a 5-minute cache write costs 1.25x the input price, a read 0.1x
    return Price(input_price, output_price, input_price * 0.1, input_price * 1.25)


def _gemini(input_price: float, output_price: float) -> Price:
    # implicit caching: cached input at 0.1x the input price (2.5 models), no write charge
    return Price(input_price, output_price, input_price * 0.1, input_price)


PRICES: dict[str, Price] = {
    "claude-sonnet-5": _claude(2.0, 10.0),
    "claude-opus-5": _claude(5.0, 25.0),
    "claude-fable-5-1": _claude(10.0, 50.0),
    "claude-haiku-4-5": _claude(1.0, 5.0),
    "claude-sonnet-4-6": _claude(3.0, 15.0),
    "claude-sonnet-4-5": _claude(3.0, 15.0),  # deprecated by Anthropic: end of life 2026-11-30
    "gemini-2.5-flash": _gemini(0.30, 2.50),
    "gemini-2.5-pro": _gemini(1.25, 10.0),
    "offline-rules-v1": Price(0.0, 0.0, 0.0, 0.0),
}

_warned: set[str] = set()
_lock = threading.Lock()
_cache: dict[tuple[str, ...], LLMProvider] = {}


def estimate_cost_usd(
    model: str, tokens_in: int, tokens_out: int, cache_read: int = 0, cache_write: int = 0
) -> float | None:
    """Estimated cost of one call from the price table; None (and one warning per model) for a
    model the table does not know — an unknown cost, not a free one."""
    price = PRICES.get(model)
    if price is None:
        with _lock:
            first = model not in _warned
            _warned.add(model)
        if first:
            log.warning("no price known for model %r: its cost is recorded as unknown (NULL)", model)
        return None
    return (
        tokens_in * price.input + tokens_out * price.output
        + cache_read * price.cache_read + cache_write * price.cache_write
    ) / 1_000_000  # fmt: skip


def chosen_provider(agent: str, settings: Settings) -> str:
    return str(getattr(settings, f"{agent}_provider"))


def check_configured(settings: Settings, agents: tuple[str, ...] = AGENTS) -> None:
    """Refuse to start when an agent's provider has no key (ConfigurationError naming it)."""
    problems = [
        f"SWITCHBOARD_{agent.upper()}_PROVIDER is {choice} but {KEY_VARIABLES[choice]} is not set"
        for agent in agents
        if (choice := chosen_provider(agent, settings)) in KEY_VARIABLES
        and getattr(settings, f"{choice}_api_key") is None
    ]
    if problems:
        raise ConfigurationError(
            "; ".join(problems) + ". Set the key, or choose the offline rules explicitly with "
            "SWITCHBOARD_<AGENT>_PROVIDER=offline."
        )


def provider_for(agent: str, settings: Settings) -> LLMProvider:
    """The provider configured for ``agent`` (ConfigurationError when its key is missing)."""
    choice = chosen_provider(agent, settings)
    if choice == "offline":
        return OfflineProvider(latency_ms=settings.offline_latency_ms)
    check_configured(settings, (agent,))
    if choice == "anthropic":
        key = ("anthropic", settings.anthropic_model, settings.anthropic_base_url, str(settings.anthropic_batch))
        with _lock:
            if key not in _cache:
                from switchboard.agents.llm.anthropic import AnthropicProvider

                assert settings.anthropic_api_key is not None
                _cache[key] = AnthropicProvider(
                    api_key=settings.anthropic_api_key.get_secret_value(),
                    model=settings.anthropic_model,
                    base_url=settings.anthropic_base_url,
                    timeout_s=settings.llm_timeout_s,
                    batch_poll_s=settings.anthropic_batch_poll_s if settings.anthropic_batch else None,
                )
            return _cache[key]
    gemini = ("gemini", settings.gemini_model, settings.gemini_base_url, "")
    with _lock:
        if gemini not in _cache:
            from switchboard.agents.llm.gemini import GeminiProvider

            assert settings.gemini_api_key is not None
            _cache[gemini] = GeminiProvider(
                api_key=settings.gemini_api_key.get_secret_value(),
                model=settings.gemini_model,
                base_url=settings.gemini_base_url,
                timeout_s=settings.llm_timeout_s,
            )
        return _cache[gemini]


def reset_provider_cache() -> None:
    """Forget constructed clients (tests switch base URLs and keys between cases)."""
    with _lock:
        _cache.clear()
        _warned.clear()
