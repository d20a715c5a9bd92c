"""The recorder's counters, in the hash ``gearcam:stats:record`` (the web pages' ``/metrics`` reads it).

Counters live in Redis like the pipeline's (``gearcam:stats:pipeline``), so one scrape of a web
page shows the whole system and no extra port is opened. Fields: ``clips``, ``bytes``,
``failures``, ``skipped_disk_full``, ``deleted``, ``deleted_bytes``, ``gaps``, ``gap_ms``,
``snapshots_missing``; and the state ``codec``, ``coverage_warning``, ``last_error``.
"""

from __future__ import annotations

import logging
import time

import redis

from gearcam.config import STATS_RECORD_KEY

__all__ = ["COUNTERS", "RecordStats"]

logger = logging.getLogger(__name__)

COUNTERS = ("clips", "bytes", "failures", "skipped_disk_full", "deleted", "deleted_bytes", "gaps", "gap_ms",
            "snapshots_missing")  # fmt: skip


class RecordStats:
    def __init__(self, client: redis.Redis, key: str = STATS_RECORD_KEY) -> None:
        self.client, self.key = client, key

    def count(self, **amounts: int) -> None:
        unknown = set(amounts) - set(COUNTERS)
        if unknown:
            raise ValueError(f"unknown recorder counters {sorted(unknown)}; known: {', '.join(COUNTERS)}")
        pipe = self.client.pipeline(transaction=False)
        for name, amount in amounts.items():
            if amount:
                pipe.hincrby(self.key, name, amount)
        pipe.execute()

    def state(self, **values: str) -> None:
        self.client.hset(self.key, mapping=dict(values.items()))

    def error(self, message: str) -> None:
        self.count(failures=1)
        self.state(last_error=message, last_error_ms=str(int(time.time() * 1000)))
