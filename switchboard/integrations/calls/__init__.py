"""Call intelligence behind a small provider interface: one module per vendor.

A provider lists calls in a time window (cursor paging) and fetches their extensive data
(parties, outcome, content). `provider_for(settings)` picks the configured vendor; adding a
vendor is one module that implements `CallsProvider` and one line in `PROVIDERS`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

from switchboard.integrations.resilience import CallContext
from switchboard.settings import Settings, get_settings


class CallsProvider(Protocol):
    name: str

    def list_calls(
        self, since: dt.datetime, until: dt.datetime, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of calls in [since, until) and the cursor of the next page (None after the last)."""

    def call_details(self, call_ids: list[str], cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of extensive call data for `call_ids` and the next cursor."""


def provider_for(settings: Settings | None = None, context: CallContext | None = None) -> CallsProvider:
    settings = settings or get_settings()
    from switchboard.integrations.calls.gong import GongProvider

    providers = {"gong": GongProvider}
    return providers[settings.calls_provider](settings, context)
