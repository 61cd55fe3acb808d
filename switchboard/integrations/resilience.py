"""One resilience policy per integration: backoff, Retry-After, shared rate limits, circuit breakers.

Exactly one retry layer exists: Celery's. SDK-internal retries are switched off in every
client (`StripeClient(max_network_retries=0)`, `Anthropic(max_retries=0)`, HubSpot
`retry=Retry(total=0)`), and a call that cannot complete now does not sleep in the worker: it
raises `Retryable` (or `Deferred`) with the delay, and the Celery task re-queues itself with
`self.retry(countdown=…)`. One exception: a model call waits up to SWITCHBOARD_LLM_RATE_WAIT_S
for its rate budget in place, because re-queueing an agent step restarts its conversation and
pays again for the turns already made.

State shared by every worker process lives in Redis: a token bucket per (integration, account)
and a circuit breaker per integration, both updated by Lua scripts (atomic, on Redis's clock).

Model providers are integrations too: one call is one model turn, logged as
`llm:{provider}.{operation}` (e.g. `llm:anthropic.messages`); their account is the model, and
their breaker is per (provider, model). An overloaded model (HTTP 529, or Gemini's 503) is an
outage, not a fault of the request: the call waits (`Deferred`, no attempt used up) while the
breaker counts the failures, opens, and lets one probe through after its reset timeout.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis

from switchboard import timelimit, tracing
from switchboard.db import toolcalls
from switchboard.errors import ConfigurationError, Permanent, Retryable
from switchboard.redaction import scrub
from switchboard.settings import Settings, get_settings
from switchboard.utc import as_utc

log = logging.getLogger("switchboard.integrations")

Integration = Literal["stripe", "hubspot", "calls", "anthropic", "gemini"]
MODEL_PROVIDERS = ("anthropic", "gemini")
OVERLOADED_STATUSES = (529, 503)  # a model provider's "overloaded" answers
T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """How one integration is called: attempts, backoff, rate budget and breaker thresholds."""

    max_attempts: int
    backoff_base_s: float
    backoff_cap_s: float
    rate_per_s: float
    burst: int
    failure_threshold: int
    reset_timeout_s: float
    timeout_s: float


def policy_for(integration: str, settings: Settings | None = None) -> Policy:
    settings = settings or get_settings()
    rate = {
        "stripe": settings.stripe_rate_per_s,
        "hubspot": settings.hubspot_rate_per_s,
        "calls": settings.calls_rate_per_s,
        "anthropic": settings.anthropic_rate_per_s,
        "gemini": settings.gemini_rate_per_s,
    }[integration]
    return Policy(
        max_attempts=settings.integration_max_attempts,
        backoff_base_s=settings.integration_backoff_base_s,
        backoff_cap_s=settings.integration_backoff_cap_s,
        rate_per_s=rate,
        burst=settings.integration_burst,
        failure_threshold=settings.breaker_failure_threshold,
        reset_timeout_s=settings.breaker_reset_timeout_s,
        timeout_s=settings.llm_timeout_s if integration in MODEL_PROVIDERS else settings.integration_timeout_s,
    )


def names(integration: str, account: str, operation: str) -> tuple[str, str]:
    """(the tool-call log's name of a call, its breaker's scope): a model provider's breaker
    is per model, an API's per integration."""
    if integration in MODEL_PROVIDERS:
        return f"llm:{integration}.{operation}", f"{integration}:{account}"
    return f"{integration}:{operation}", integration


# --------------------------------------------------------------------------- errors


class IntegrationError(Retryable):
    """A transient failure of an external call (429, 5xx, timeout, unreadable body)."""


class Deferred(Retryable):
    """The call was not made: the circuit is open or the rate budget is spent."""


class IntegrationRejected(Permanent):
    """The API refused the request (4xx other than 408/409/429): retrying will not help."""


class IntegrationExhausted(Permanent):
    """A transient failure persisted through every attempt of the policy."""


# --------------------------------------------------------------------------- backoff


def backoff_s(attempt: int, policy: Policy, rng: random.Random | None = None) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def retry_after_s(headers: Mapping[str, str] | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` (Anthropic) or `Retry-After` (seconds or HTTP date)."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = as_utc(when)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def is_transient(status: int | None, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a failed call is worth retrying. Stripe's `Stripe-Should-Retry` header decides
    when present; otherwise network errors, 408, 409 (lock contention), 429 and 5xx are."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    should = lowered.get("stripe-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return status is None or status in (408, 409, 429) or status >= 500


# --------------------------------------------------------------------------- Redis state


def redis_url(settings: Settings) -> str:
    """The Redis that holds shared limiter and breaker state: the broker's, else the result backend's."""
    for url in (settings.broker_url, settings.result_backend):
        if url.startswith("redis+socket://"):
            return "unix://" + url.removeprefix("redis+socket://")
        if url.startswith(("redis://", "rediss://")):
            return url
    raise ConfigurationError(
        "SWITCHBOARD_BROKER_URL or SWITCHBOARD_RESULT_BACKEND must be a Redis URL: "
        "rate limits and circuit breakers are shared through Redis"
    )


_clients: dict[str, redis.Redis] = {}


def shared_redis(settings: Settings | None = None) -> redis.Redis:
    url = redis_url(settings or get_settings())
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return _clients[url]


# Token bucket on Redis's clock. Returns the seconds to wait (0: a token was taken).
_TAKE = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'rate')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if state[3] then rate = math.min(rate, tonumber(state[3])) end
if tokens == nil then tokens, ts = burst, now end
tokens = math.min(burst, tokens + (now - ts) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""

# The rate the API says this account has (it never raises the configured one).
_SEED = """
redis.call('HSET', KEYS[1], 'rate', ARGV[1])
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""

# Empty the bucket and push it into debt for `seconds` (the API told us to hold off).
_DRAIN = """
local rate, seconds = tonumber(ARGV[1]), tonumber(ARGV[2])
local seeded = redis.call('HGET', KEYS[1], 'rate')
if seeded then rate = math.min(rate, tonumber(seeded)) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], 'tokens', tostring(-seconds * rate), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


class RateLimiter:
    """A token bucket per (integration, account), shared by every process through Redis."""

    def __init__(self, client: redis.Redis, integration: str, account: str, policy: Policy) -> None:
        self.client, self.policy = client, policy
        self.key = f"switchboard:ratelimit:{integration}:{account}"
        self._take = client.register_script(_TAKE)
        self._drain = client.register_script(_DRAIN)
        self._seed = client.register_script(_SEED)

    def try_acquire(self, cost: float = 1.0) -> float:
        """Take a token now (returns 0.0) or return how long until one is available."""
        return float(self._take(keys=[self.key], args=[self.policy.rate_per_s, self.policy.burst, cost]))

    def hold_off(self, seconds: float) -> None:
        """No calls for `seconds` (a 429, or HubSpot's remaining budget at zero)."""
        self._drain(keys=[self.key], args=[self.policy.rate_per_s, max(0.0, seconds)])

    def adjust_from_hubspot(self, headers: Mapping[str, str]) -> None:
        """HubSpot reports its budget on every response (X-HubSpot-RateLimit-*): when the
        secondly or interval budget is spent, hold off until it refills."""
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            if lowered.get("x-hubspot-ratelimit-secondly-remaining") == "0":
                self.hold_off(1.0)
            elif lowered.get("x-hubspot-ratelimit-remaining") == "0":
                interval_ms = float(lowered.get("x-hubspot-ratelimit-interval-milliseconds") or 10_000)
                self.hold_off(interval_ms / 1000.0)
        except ValueError:
            return

    def adjust_from_anthropic(self, headers: Mapping[str, str], now: dt.datetime | None = None) -> None:
        """Anthropic reports the organisation's limits on every response
        (`anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`,
        reset as RFC 3339): the requests limit (per minute) seeds the bucket's rate, and a spent
        budget holds every process off until its reset."""
        lowered = {k.lower(): v for k, v in headers.items()}
        now = now or dt.datetime.now(dt.UTC)
        try:
            limit = lowered.get("anthropic-ratelimit-requests-limit")
            if limit:
                self._seed(keys=[self.key], args=[max(float(limit), 1.0) / 60.0])
            waits = []
            for budget in ("requests", "tokens", "input-tokens", "output-tokens"):
                if lowered.get(f"anthropic-ratelimit-{budget}-remaining") == "0":
                    reset = lowered.get(f"anthropic-ratelimit-{budget}-reset")
                    at = dt.datetime.fromisoformat(reset.replace("Z", "+00:00")) if reset else now
                    waits.append((as_utc(at) - now).total_seconds())
            if waits:
                self.hold_off(max(1.0, *waits))
        except ValueError:
            return


# Circuit breaker: closed → (threshold consecutive failures) → open → (reset timeout) →
# half-open, where exactly one probe is let through; its success closes, its failure re-opens.
_ALLOW = """
local reset, probe_timeout = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {'closed', '0'} end
if state == 'open' then
  local until_ = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
  if now < until_ then return {'open', tostring(until_ - now)} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', tostring(now + probe_timeout))
  return {'probe', '0'}
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now < probe_until then return {'half_open', tostring(probe_until - now)} end
redis.call('HSET', KEYS[1], 'probe_until', tostring(now + probe_timeout))
return {'probe', '0'}
"""

_RECORD = """
local outcome, threshold, reset = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if outcome == 'success' then
  -- a call let through before the circuit opened proves nothing about the open spell: only
  -- the half-open probe (or a call while closed) closes it
  if state == 'open' then return 'open' end
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', '0')
  return 'closed'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or failures >= threshold then
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', tostring(now + reset), 'failures', '0')
  redis.call('HINCRBY', KEYS[1], 'opened', 1)
  return 'open'
end
return state
"""


class CircuitBreaker:
    """A circuit breaker per integration whose state every worker process shares through Redis."""

    def __init__(self, client: redis.Redis, integration: str, policy: Policy) -> None:
        """``integration`` is the breaker's scope (see `names`)."""
        self.client, self.policy, self.integration = client, policy, integration
        self.key = f"switchboard:breaker:{integration}"
        self._allow = client.register_script(_ALLOW)
        self._record = client.register_script(_RECORD)

    def allow(self) -> tuple[bool, float]:
        """(may call now, seconds until it may be tried again)."""
        state, wait = self._allow(keys=[self.key], args=[self.policy.reset_timeout_s, self.policy.timeout_s + 5])
        return state in (b"closed", b"probe"), float(wait)

    def record(self, success: bool) -> str:
        state = self._record(
            keys=[self.key],
            args=["success" if success else "failure", self.policy.failure_threshold, self.policy.reset_timeout_s],
        )
        return state.decode() if isinstance(state, bytes) else str(state)

    def state(self) -> str:
        value: Any = self.client.hget(self.key, "state")
        return value.decode() if isinstance(value, bytes) else str(value or "closed")


# --------------------------------------------------------------------------- the call wrapper


@dataclass
class CallFailure(Exception):
    """What a client reports about a failed HTTP exchange (raised inside `call`'s function)."""

    status: int | None
    message: str
    headers: Mapping[str, str] | None = None

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.message}" if self.status is not None else self.message


@dataclass
class CallContext:
    """Where a call is made from: the run and step (for the tool-call log). Within a run the
    attempt number is counted from the log; outside one, the caller says (e.g. task retries + 1)."""

    run_id: str | None = None
    step: str | None = None
    agent: str | None = None
    attempt: int = 1


def call(
    integration: str,
    account: str,
    operation: str,
    arguments: dict[str, Any],
    fn: Callable[[], T],
    *,
    context: CallContext | None = None,
    summarise: Callable[[T], Any] | None = None,
    on_headers: Callable[[Mapping[str, str]], None] | None = None,
    settings: Settings | None = None,
) -> T:
    """Make one external call under the integration's policy, logged as one tool-call row.

    `fn` performs the HTTP exchange and raises `CallFailure` for a failed one. The outcome:
    the result; `Deferred` (nothing sent: circuit open or no rate budget); `IntegrationError`
    (transient, retry after the returned delay); `IntegrationRejected` / `IntegrationExhausted`
    (permanent).
    """
    settings = settings or get_settings()
    context = context or CallContext()
    tool, scope = names(integration, account, operation)
    timelimit.check(f"calling {tool}")  # the thread pool keeps no time limit of its own
    policy = policy_for(integration, settings)
    client = shared_redis(settings)
    breaker = CircuitBreaker(client, scope, policy)
    limiter = RateLimiter(client, integration, account, policy)

    allowed, wait = breaker.allow()
    if not allowed:
        raise Deferred(f"{tool}: circuit open, not called (retry in {wait:.1f} s)", retry_after_s=max(wait, 0.05))
    wait = limiter.try_acquire()
    # A model call waits a short spell of the budget out in place: deferring would restart the
    # step's conversation and pay again for the turns before this one.
    patience = time.monotonic() + (settings.llm_rate_wait_s if integration in MODEL_PROVIDERS else 0.0)
    # ...but not past the task's soft time limit
    patience = min(patience, time.monotonic() + timelimit.remaining_s())
    while wait > 0 and time.monotonic() + wait <= patience:
        time.sleep(wait)
        wait = limiter.try_acquire()
    if wait > 0:
        raise Deferred(f"{tool}: rate budget spent, not called (retry in {wait:.2f} s)", retry_after_s=wait)

    attempt = context.attempt
    if context.run_id is not None:
        attempt = toolcalls.failed_attempts(context.run_id, context.step, tool, arguments) + 1
    row_id = toolcalls.start(context.run_id, context.step, context.agent, tool, arguments, attempts=attempt)
    started = time.perf_counter()
    try:
        if integration in MODEL_PROVIDERS:  # its `chat {model}` span is the model call's (agents/toolloop.py)
            result = fn()
        else:
            with tracing.api_span(integration, operation, tool):
                result = fn()
    except CallFailure as failure:
        latency = (time.perf_counter() - started) * 1000
        if failure.headers and on_headers:
            on_headers(failure.headers)
        transient = is_transient(failure.status, failure.headers)
        server_fault = failure.status is None or failure.status >= 500
        if server_fault:
            breaker.record(False)
        delay = retry_after_s(failure.headers)
        if failure.status == 429:
            limiter.hold_off(delay if delay is not None else 1.0)
        message = scrub(f"{tool} failed: {failure}")
        if integration in MODEL_PROVIDERS and failure.status in OVERLOADED_STATUSES:
            wait = max(delay or 0.0, backoff_s(attempt, policy))
            overloaded = Deferred(f"{message} (overloaded: waiting {wait:.1f} s)", retry_after_s=wait)
            toolcalls.finish(row_id, status="deferred", latency_ms=latency, error=overloaded)
            raise overloaded from None
        if not transient:
            toolcalls.finish(row_id, status="failed", latency_ms=latency, error=IntegrationRejected(message))
            raise IntegrationRejected(message) from None
        if attempt >= policy.max_attempts:
            exhausted = IntegrationExhausted(f"{message} (attempt {attempt} of {policy.max_attempts})")
            toolcalls.finish(row_id, status="failed", latency_ms=latency, error=exhausted)
            raise exhausted from None
        countdown = max(delay or 0.0, backoff_s(attempt, policy))
        error = IntegrationError(message, retry_after_s=countdown)
        toolcalls.finish(row_id, status="retrying", latency_ms=latency, error=error)
        raise error from None
    latency = (time.perf_counter() - started) * 1000
    breaker.record(True)
    toolcalls.finish(row_id, status="done", latency_ms=latency, output=summarise(result) if summarise else result)
    return result
