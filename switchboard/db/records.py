"""Upserting source records (the latest state of Stripe, HubSpot and call objects)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from switchboard.db.models import SourceRecord
from switchboard.db.session import dialect_insert


@dataclass(frozen=True)
class RecordIn:
    source: str
    object_type: str
    object_id: str
    occurred_at: dt.datetime
    data: dict[str, Any]
    account: str | None = None


def upsert_records(session: Session, records: Iterable[RecordIn], *, batch: int = 500) -> int:
    """Insert or update records by (source, object_type, object_id) in set-based batches."""
    rows = [
        {"source": r.source, "object_type": r.object_type, "object_id": r.object_id, "account": r.account,
         "data": r.data, "occurred_at": r.occurred_at}
        for r in records
    ]  # fmt: skip
    insert = dialect_insert(session)
    for start in range(0, len(rows), batch):
        statement = insert(SourceRecord).values(rows[start : start + batch])
        statement = statement.on_conflict_do_update(
            index_elements=["source", "object_type", "object_id"],
            set_={
                "data": statement.excluded.data,
                "occurred_at": statement.excluded.occurred_at,
                "account": statement.excluded.account,
                "updated_at": func.now(),
            },
        )
        session.execute(statement)
    return len(rows)
