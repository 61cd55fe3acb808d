"""Run Alembic migrations programmatically (``switchboard migrate``), on SQLite or PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from switchboard.db import adopt, vectors
from switchboard.db.models import Base
from switchboard.db.session import get_engine
from switchboard.settings import get_settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
log = logging.getLogger("switchboard.migrate")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is ConfigParser interpolation syntax; passwords may contain it.
    config.set_main_option("sqlalchemy.url", (url or get_settings().database_url).replace("%", "%%"))
    return config


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def upgrade(url: str | None = None, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; returns (before, after). A no-op when already there. At head,
    the knowledge base's vector column is then sized by the setting (`db/vectors.py`)."""
    before = current_revision(url)
    target = head_revision() if revision == "head" else revision
    if before != target:
        command.upgrade(alembic_config(url), revision)
    if target == head_revision():
        with get_engine(url).begin() as connection:
            did = vectors.ensure(connection, get_settings().embedding_dim)
        if did:
            log.info("migrate: %s", did)
    return before, current_revision(url)


def downgrade(url: str | None = None, revision: str = "base") -> tuple[str | None, str | None]:
    """Downgrade to ``revision`` ("base" empties the schema); returns (before, after)."""
    before = current_revision(url)
    command.downgrade(alembic_config(url), revision)
    return before, current_revision(url)


def plan(url: str | None = None) -> tuple[list[str], bool]:
    """What `upgrade` would do, changing nothing: the revisions it would apply and, on a
    database that already has the seed's tables, how each is adopted. (lines, whether it can)"""
    script = ScriptDirectory.from_config(alembic_config(url or get_settings().database_url))
    with get_engine(url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        dim = get_settings().embedding_dim
        tables = adopt.plan(connection, Base.metadata, dim) if current is None else []
        # the vector column's step, as of before the revisions (they do not touch it)
        vector_steps = vectors.plan(connection, dim)
    pending = list(reversed(list(script.iterate_revisions(script.get_current_head(), current))))
    lines = [f"from {current or 'an empty schema'} to {pending[-1].revision}, applying:"] if pending else []
    lines += [f"  {rev.revision} {(rev.doc or '').splitlines()[0]}" for rev in pending]
    for table in tables:
        lines += table.describe()
    lines += vector_steps
    if not lines:
        return [f"database at {current}: nothing to do"], True
    problems = [problem for table in tables for problem in table.problems]
    problems += [step for step in vector_steps if step.startswith("cannot:")]
    if problems:
        lines.append(f"migrate would stop at the first step ({len(problems)} problems above) and change nothing")
    return lines, not problems
