"""`switchboard backfill`: placeholder, filled in by the ingestion issue."""

from __future__ import annotations

import typer


def backfill() -> None:
    """Backfill missing provider events (not implemented yet)."""
    raise typer.Exit(2)
