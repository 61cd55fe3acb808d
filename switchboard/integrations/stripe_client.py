"""Stripe through the official `stripe` SDK (`StripeClient`): charges, payment intents,
invoices, payouts, balance transactions, disputes and events, paged page by page (each page one
call under the resilience policy); every write carries an `Idempotency-Key` derived from our
action key, so Stripe itself de-duplicates a retried write."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from typing import Any

import stripe

from switchboard.errors import ConfigurationError
from switchboard.integrations.resilience import CallContext, CallFailure, Deferred, call, policy_for
from switchboard.settings import Settings, get_settings

RESOURCES = {
    "charge": "charges",
    "payment_intent": "payment_intents",
    "invoice": "invoices",
    "payout": "payouts",
    "balance_transaction": "balance_transactions",
    "dispute": "disputes",
    "event": "events",
}
PAGE_SIZE = 100


_clients: dict[tuple[str, str, float], stripe.StripeClient] = {}


def _sdk_client(api_key: str, base: str, timeout: float) -> stripe.StripeClient:
    """One SDK client (and connection pool) per process and configuration."""
    key = (api_key, base, timeout)
    if key not in _clients:
        # max_network_retries=0: the SDK must not retry; Celery owns retries (resilience.py).
        # requests: stripe's HTTPX adapter sends bodies in a form httpx deprecates.
        _clients[key] = stripe.StripeClient(
            api_key=api_key,
            base_addresses={"api": base},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
    return _clients[key]


class StripeAPI:
    def __init__(self, settings: Settings | None = None, context: CallContext | None = None) -> None:
        self.settings = settings or get_settings()
        if self.settings.stripe_api_key is None:
            raise ConfigurationError("SWITCHBOARD_STRIPE_API_KEY is not set")
        self.context = context or CallContext()
        self._client = _sdk_client(
            self.settings.stripe_api_key.get_secret_value(),
            self.settings.stripe_api_base.rstrip("/"),
            policy_for("stripe", self.settings).timeout_s,
        )
        self.account = "default"

    def _call(self, operation: str, arguments: dict[str, Any], fn: Callable[[], Any]) -> dict[str, Any]:
        def exchange() -> dict[str, Any]:
            try:
                result = fn()
            except stripe.APIConnectionError as error:
                raise CallFailure(None, f"connection error: {error.user_message or error}") from None
            except stripe.StripeError as error:
                status = error.http_status
                if status is not None and 200 <= status < 300:  # an unreadable body on a 2xx
                    raise CallFailure(None, f"unreadable response body: {error.user_message or error}") from None
                headers = {k: str(v) for k, v in dict(error.headers or {}).items()}
                raise CallFailure(status, str(error.user_message or error), headers) from None
            plain: dict[str, Any] = json.loads(str(result))
            return plain

        return call("stripe", self.account, operation, arguments, exchange, context=self.context,
                    summarise=_summary, settings=self.settings)  # fmt: skip

    def _service(self, object_type: str) -> Any:
        try:
            return getattr(self._client.v1, RESOURCES[object_type])
        except KeyError:
            raise ValueError(f"unknown Stripe object type {object_type!r}; known: {sorted(RESOURCES)}") from None

    def retrieve(self, object_type: str, object_id: str) -> dict[str, Any]:
        service = self._service(object_type)
        return self._call(f"{RESOURCES[object_type]}.retrieve", {"id": object_id}, lambda: service.retrieve(object_id))

    def page(
        self, object_type: str, starting_after: str | None = None, **params: Any
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of objects and the cursor of the next page (None after the last)."""
        service = self._service(object_type)
        page_params = {**params, "limit": PAGE_SIZE}
        if starting_after:
            page_params["starting_after"] = starting_after
        fetch = functools.partial(service.list, params=page_params)
        page = self._call(f"{RESOURCES[object_type]}.list", page_params, fetch)
        data: list[dict[str, Any]] = page.get("data") or []
        return data, (str(data[-1]["id"]) if page.get("has_more") and data else None)

    def list(
        self, object_type: str, *, pace: Callable[[float], None] | None = None, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Every object matching `params`, page after page. In a worker a spent rate budget
        raises `Deferred` (re-queue, resume from `page`'s cursor); a CLI may pass `pace`
        (e.g. `time.sleep`) to wait for the budget instead."""
        cursor: str | None = None
        while True:
            try:
                data, next_cursor = self.page(object_type, cursor, **params)
            except Deferred as deferred:
                if pace is None:
                    raise
                pace(deferred.retry_after_s or 0.05)
                continue
            yield from data
            if next_cursor is None:
                return
            cursor = next_cursor

    def flag_dispute_for_review(self, dispute_id: str, *, idempotency_key: str, note: str) -> dict[str, Any]:
        """Mark a dispute for review in its metadata; Stripe de-duplicates by Idempotency-Key."""
        service = self._client.v1.disputes
        params: Any = {"metadata": {"switchboard_review": "open", "switchboard_note": note[:450]}}
        return self._call(
            "disputes.update",
            {"id": dispute_id, "idempotency_key": idempotency_key},
            lambda: service.update(dispute_id, params=params, options={"idempotency_key": idempotency_key}),
        )


def _summary(value: Any) -> Any:
    if isinstance(value, dict) and value.get("object") == "list":
        return {"object": "list", "count": len(value.get("data") or []), "has_more": value.get("has_more")}
    return value
