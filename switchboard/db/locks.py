"""Transaction-scoped named locks, so two workers never rewrite the same derived rows at once.

On PostgreSQL a name maps to `pg_advisory_xact_lock` (released at commit or rollback); SQLite
has one writer at a time already, so nothing is needed there. Callers take several locks in
sorted order, which rules out lock-order deadlocks between them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name``."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def lock_names(session: Session, names: Iterable[str]) -> None:
    """Hold a lock on each name until the transaction ends (sorted, so concurrent callers agree)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for key in sorted({lock_key(name) for name in names}):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
