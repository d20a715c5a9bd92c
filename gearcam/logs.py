"""How gearcam's command-line programs log: one format, and a level for gearcam's own loggers only.

Libraries (redis-py, uvicorn, the engines) stay at WARNING, so `--log-level DEBUG` shows
gearcam's decisions without drowning them.
"""

from __future__ import annotations

import argparse
import logging
import time

__all__ = ["FORMAT", "LEVELS", "Every", "add_log_level", "setup_logging"]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_level(parser: argparse.ArgumentParser, default: str = "INFO") -> None:
    """The `--log-level` flag every gearcam program takes."""
    parser.add_argument("--log-level", default=default, choices=LEVELS, help=f"gearcam's log level (default {default})")


def setup_logging(level: str) -> None:
    """Log to stderr: gearcam's loggers at `level`, everything else at WARNING."""
    logging.basicConfig(level=logging.WARNING, format=FORMAT)
    logging.getLogger("gearcam").setLevel(level)


class Every:
    """Says yes at most once every `seconds`: for the warning of a retry loop, which would repeat it at every try."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last: float | None = None

    def due(self) -> bool:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.seconds:
            return False
        self._last = now
        return True
