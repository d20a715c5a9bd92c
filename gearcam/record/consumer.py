"""The recorder's consumer group on the stream ``events``: at-least-once.

The consumer has a fixed name, so a recorder that crashed gets its own pending entries (read,
never acknowledged) back first when it starts again; only then does it read new ones. The
caller acknowledges an entry once it is handled (a clip written, skipped for a reason counted,
or not an ``end``).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import redis

from gearcam.record.event import text

__all__ = ["Entry", "EventConsumer"]

logger = logging.getLogger(__name__)
Entry = tuple[str, dict[Any, Any] | None]  # fields None: the entry was trimmed from the stream while pending


class EventConsumer:
    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str) -> None:
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer
        self._backlog = True

    def ensure_group(self) -> None:
        """Create the group at the stream's end (events from now on), unless it exists."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="$", mkstream=True)
            logger.info("created consumer group %s on %s", self.group, self.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, block_ms: int, count: int = 16) -> list[Entry]:
        """This consumer's pending entries first (after a crash), then new ones, waiting up to ``block_ms``."""
        if self._backlog:
            entries = self._read("0", count, None)
            if entries:
                return entries
            self._backlog = False
        return self._read(">", count, max(1, block_ms))

    def _read(self, since: str, count: int, block: int | None) -> list[Entry]:
        reply = cast(Any, self.client.xreadgroup(self.group, self.consumer, {self.stream: since}, count, block))
        return [(text(entry_id), fields) for _, entries in reply or [] for entry_id, fields in entries]

    def ack(self, entry: str) -> None:
        self.client.xack(self.stream, self.group, entry)
