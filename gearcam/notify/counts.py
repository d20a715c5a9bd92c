"""The notifier's counters: one dataclass for the run, the same names in ``gearcam:stats:notify``.

Its own module so that ``invoke status`` and the web pages name the fields without importing
the notifier (and paho-mqtt with it).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["COUNTERS", "Counts"]


@dataclass
class Counts:
    """What the notifier did in this run; the same names count up in gearcam:stats:notify across runs."""

    handled: int = 0  # events sent everywhere and acknowledged
    failed_attempts: int = 0  # tries that failed (broker or Redis away) and were made again
    dead_letters: int = 0  # webhook deliveries given up after their retries (stream events:dead)
    skipped: int = 0  # malformed entries acknowledged without sending


COUNTERS = tuple(f.name for f in fields(Counts))
