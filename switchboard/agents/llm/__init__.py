"""LLM providers (`anthropic`, `gemini`, `offline`) and the per-agent choice from settings."""

from __future__ import annotations

import logging

from switchboard.agents.llm.base import LLMProvider
from switchboard.agents.llm.offline import OfflineProvider
from switchboard.settings import Settings

log = logging.getLogger("switchboard.llm")

# USD per million tokens (input, output), for cost estimates only; unknown models cost 0.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "claude-sonnet-5": (2.0, 10.0),
    "claude-opus-5": (5.0, 25.0),
    "claude-fable-5-1": (10.0, 50.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-sonnet-4-6": (3.0, 15.0),
    "claude-sonnet-4-5": (3.0, 15.0),  # deprecated by Anthropic: end of life 2026-11-30
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.0),
}

_warned: set[str] = set()
_cache: dict[tuple[str, ...], LLMProvider] = {}


def estimate_cost_usd(model: str, tokens_in: int, tokens_out: int) -> float:
    """Estimated cost of one call from the price table (0 for offline and unknown models)."""
    price_in, price_out = PRICES_PER_MTOK.get(model, (0.0, 0.0))
    return (tokens_in * price_in + tokens_out * price_out) / 1_000_000


def provider_for(agent: str, settings: Settings) -> LLMProvider:
    """The provider configured for ``agent``; a missing key falls back to offline, warned once."""
    choice: str = {"watcher": settings.watcher_provider, "analyst": settings.analyst_provider}.get(
        agent, settings.advisor_provider
    )
    if choice == "anthropic" and settings.anthropic_api_key is None:
        choice = _fallback("anthropic", "SWITCHBOARD_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY)")
    if choice == "gemini" and settings.gemini_api_key is None:
        choice = _fallback("gemini", "SWITCHBOARD_GEMINI_API_KEY (or GEMINI_API_KEY)")
    if choice == "anthropic":
        key = ("anthropic", settings.anthropic_model, settings.anthropic_base_url)
        if key not in _cache:
            from switchboard.agents.llm.anthropic import AnthropicProvider

            assert settings.anthropic_api_key is not None
            _cache[key] = AnthropicProvider(
                api_key=settings.anthropic_api_key.get_secret_value(),
                model=settings.anthropic_model,
                base_url=settings.anthropic_base_url,
                timeout_s=settings.llm_timeout_s,
            )
        return _cache[key]
    if choice == "gemini":
        key = ("gemini", settings.gemini_model, settings.gemini_base_url)
        if key not in _cache:
            from switchboard.agents.llm.gemini import GeminiProvider

            assert settings.gemini_api_key is not None
            _cache[key] = GeminiProvider(
                api_key=settings.gemini_api_key.get_secret_value(),
                model=settings.gemini_model,
                base_url=settings.gemini_base_url,
                timeout_s=settings.llm_timeout_s,
            )
        return _cache[key]
    return OfflineProvider(latency_ms=settings.offline_latency_ms)


def _fallback(provider: str, variable: str) -> str:
    if provider not in _warned:
        _warned.add(provider)
        log.warning("%s is not set: agents configured for %s use the offline provider", variable, provider)
    return "offline"


def reset_provider_cache() -> None:
    """Forget constructed clients (tests switch base URLs and keys between cases)."""
    _cache.clear()
    _warned.clear()
