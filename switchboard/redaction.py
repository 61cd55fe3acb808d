"""Keep secrets out of rows and log lines: redact secret-named fields and scrub known values."""

from __future__ import annotations

import re
from typing import Any

from pydantic import SecretStr

from switchboard.settings import get_settings

SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password|authorization|signature|cookie)", re.IGNORECASE)
# Shapes of well-known credentials, masked even when we were never told the value.
SECRET_SHAPES = re.compile(
    r"(sk_(live|test)_[A-Za-z0-9]{8,}|rk_(live|test)_[A-Za-z0-9]{8,}|whsec_[A-Za-z0-9]{8,}|"
    r"sk-ant-[A-Za-z0-9_\-]{8,}|pat-[a-z0-9]{2,4}-[A-Za-z0-9\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|"
    r"Bearer\s+[A-Za-z0-9._\-]{8,})"
)
REDACTED = "[redacted]"


_secrets_of: tuple[object, list[str]] | None = None  # (the settings object, its secret values)


def _configured_secrets() -> list[str]:
    global _secrets_of
    settings = get_settings()
    if _secrets_of is not None and _secrets_of[0] is settings:  # scrub runs per string: look them up once
        return _secrets_of[1]
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        items = value if isinstance(value, list) else [value]
        values += [item.get_secret_value() for item in items if isinstance(item, SecretStr)]
    secrets = [value for value in values if len(value) >= 4]
    _secrets_of = (settings, secrets)
    return secrets


def scrub(text: str) -> str:
    """``text`` with every configured secret and every credential-shaped token masked."""
    for secret in _configured_secrets():
        text = text.replace(secret, REDACTED)
    return SECRET_SHAPES.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-named fields replaced and secret strings scrubbed."""
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and SECRET_NAME.search(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub(value)
    return value
