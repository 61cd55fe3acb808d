"""How the CLI prints (human text on stdout, errors on stderr, tables that never cut an id) and
sets up its settings and logging.

On a terminal tables fit its width (long cells fold onto more lines, never an ellipsis); piped
(`switchboard runs | cat`, a script) they are as wide as their content, so ids and paths stay
whole on one line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.table import Table

from switchboard.settings import Settings, get_settings

errors = Console(stderr=True, soft_wrap=True)  # error lines stay whole for scripts
PIPED_WIDTH = 1_000


def stdout() -> Console:
    """The console for a command's output (the terminal's width, or unlimited when piped)."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)


def table(title: str | None, columns: Iterable[str]) -> Table:
    """A table with a header row; no cell is ever truncated (it folds on a narrow terminal)."""
    out = Table(title=title, show_header=True, title_justify="left")
    for name in columns:
        out.add_column(name, overflow="fold")
    return out


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `switchboard: message` on stderr; return the exit to raise."""
    errors.print(f"[red]switchboard:[/red] {message}", highlight=False)
    return typer.Exit(code)


def command_settings(*, service: bool = False, schema: bool = False) -> Settings:
    """The settings, with logging set up: a service logs at SWITCHBOARD_LOG_LEVEL, a command
    (human text on stdout) only its warnings and errors. A command that reads or writes the
    database (`schema`) needs it migrated: the embedded SQLite default migrates itself; any
    other database not at this code's revision is a clear error (exit 2) saying what to run."""
    from switchboard.logs import configure_logging

    settings = get_settings()
    configure_logging(settings, command=not service)
    if not service:  # a command's own spans (a demo's scan and dispatches); services name themselves
        from switchboard import tracing

        tracing.setup("switchboard-cli", settings)
    if schema:
        _ensure_schema(settings)
    return settings


def _ensure_schema(settings: Settings) -> None:
    from switchboard.db import migrate

    if settings.uses_embedded_database:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        current = migrate.current_revision(settings.database_url)
    except Exception as error:
        raise fail(
            f"the database does not answer ({type(error).__name__}): check SWITCHBOARD_DATABASE_URL", 2
        ) from None
    head = migrate.head_revision()
    if current == head:
        return
    if settings.uses_embedded_database:
        migrate.upgrade(settings.database_url)
        return
    raise fail(f"the database is at revision {current or 'none (empty)'}, this version needs {head}: "
               "run `switchboard migrate` first", 2)  # fmt: skip
