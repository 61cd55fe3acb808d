"""One error hierarchy: the exception *type* decides whether Celery retries.

``Retryable`` errors re-queue the task with backoff; ``Permanent`` ones fail the run at once
and the reason is stored. Configuration problems are neither: they stop the process at start.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base class of every error Switchboard raises on purpose."""


class ConfigurationError(SwitchboardError):
    """Settings are missing or invalid; the message names the environment variable."""


class Retryable(SwitchboardError):
    """A transient failure: the task re-queues itself (optionally after ``retry_after_s``)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Permanent(SwitchboardError):
    """A failure that will not go away by retrying (bad input, contract violation)."""


class NotFound(Permanent):
    """What the request names does not exist (the API answers 404)."""


class InvalidState(Permanent):
    """It exists, but its state does not allow the request (the API answers 409)."""


class ContractViolation(Permanent):
    """A payload crossing a task boundary did not validate against its contract."""


class TimeLimitExceeded(Permanent):
    """A task ran past its soft time limit (`switchboard/timelimit.py`)."""
