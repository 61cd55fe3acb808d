"""Run Alembic migrations programmatically (``switchboard migrate``), on SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from switchboard.db.session import get_engine
from switchboard.settings import get_settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


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
    """Upgrade to ``revision``; returns (before, after). A no-op when already there."""
    before = current_revision(url)
    target = head_revision() if revision == "head" else revision
    if before != target:
        command.upgrade(alembic_config(url), revision)
    return before, current_revision(url)


def downgrade(url: str | None = None, revision: str = "base") -> tuple[str | None, str | None]:
    """Downgrade to ``revision`` ("base" empties the schema); returns (before, after)."""
    before = current_revision(url)
    command.downgrade(alembic_config(url), revision)
    return before, current_revision(url)
