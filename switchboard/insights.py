"""Working insights: acknowledge, snooze, resolve — one transaction each, for the CLI and the API
(the rules live with the rest of the lifecycle, `db/runs.py`)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from switchboard.db import queries
from switchboard.db import runs as lifecycle
from switchboard.db.session import session_scope
from switchboard.utc import as_utc

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_until(value: str, now: dt.datetime) -> dt.datetime:
    """`30m`, `2h`, `1d`, `1w` from now, or an ISO 8601 time (UTC without an offset);
    ValueError with the reason otherwise."""
    text = value.strip().lower()
    match = _DURATION.match(text)
    if match:
        return now + dt.timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        return as_utc(dt.datetime.fromisoformat(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r} is neither a duration (30m, 2h, 1d, 1w) nor an ISO time") from None


def acknowledge(insight_id: int, *, by: str, note: str | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        lifecycle.acknowledge_insight(session, insight_id, by=by, now=now, note=note)
    return queries.insight(insight_id, now)


def snooze(insight_id: int, *, until: dt.datetime, by: str, note: str | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        lifecycle.snooze_insight(session, insight_id, until=until, by=by, now=now, note=note)
    return queries.insight(insight_id, now)


def resolve(insight_id: int, *, by: str, note: str | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        lifecycle.resolve_insight(session, insight_id, by=by, now=now, note=note)
    return queries.insight(insight_id, now)
