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


def command_settings(*, service: bool = False) -> Settings:
    """The settings, with logging set up: a service logs at SWITCHBOARD_LOG_LEVEL, a command
    (human text on stdout) only its warnings and errors."""
    from switchboard.logs import configure_logging

    settings = get_settings()
    configure_logging(settings, command=not service)
    return settings
