"""Every time Switchboard keeps is UTC, and a time without an offset means UTC: one helper for
parsed input (ISO strings, HTTP dates, CLI options). Stored timestamps come back aware from
both databases on their own (`db.models.Timestamp`)."""

from __future__ import annotations

import datetime as dt


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
