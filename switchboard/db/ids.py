"""Ids people type: the whole id, or any unique prefix of it (at least `MIN_PREFIX` characters).

The CLI's tables print whole ids; anything shorter that names exactly one row works wherever the
CLI takes an id (`runs show`, `replay`, `eval capture`, `eval baseline set`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from switchboard.db.session import session_scope
from switchboard.errors import InvalidState, NotFound

MIN_PREFIX = 4
SHOWN = 5  # candidates named when a prefix is ambiguous


def resolve(model: Any, given: str, what: str, session: Session | None = None) -> str:
    """The id of the one `model` row whose id is `given` or starts with it. NotFound when none
    is, InvalidState (naming some) when several are."""
    if session is None:
        with session_scope() as own:
            return resolve(model, given, what, own)
    given = given.strip()
    if given and session.get(model, given) is not None:
        return given
    if len(given) < MIN_PREFIX:
        raise NotFound(f"no {what} {given!r} (give at least {MIN_PREFIX} characters of its id)")
    query = select(model.id).where(model.id.startswith(given, autoescape=True)).order_by(model.id).limit(SHOWN + 1)
    ids = [str(found) for found in session.scalars(query)]
    if not ids:
        raise NotFound(f"no {what} {given}")
    if len(ids) > 1:
        count = f"more than {SHOWN}" if len(ids) > SHOWN else str(len(ids))
        raise InvalidState(f"{given} names {count} {what}s ({', '.join(ids[:SHOWN])}): give more of the id")
    return ids[0]
