"""Logging setup shared by the CLI and the processes it starts."""

from __future__ import annotations

import logging

from switchboard.settings import Settings


def configure_logging(settings: Settings) -> None:
    """One plain line per record on stderr, at the configured level."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
