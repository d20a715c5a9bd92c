"""The consumer group on the stream ``events``: at-least-once delivery.

A consumer has a fixed name, so a notifier that crashed gets its own pending entries (read,
never acknowledged) back first when it starts again; only then does it read new ones. An
entry is acknowledged by the caller once it has been handled.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import redis

__all__ = ["EventConsumer"]

logger = logging.getLogger(__name__)
Entry = tuple[str, dict[Any, Any]]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class EventConsumer:
    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str, block_ms: int = 1000) -> None:
        self.client, self.stream, self.group, self.consumer, self.block_ms = client, stream, group, consumer, block_ms
        self._backlog = True  # read our pending entries first (a restart after a crash)

    def ensure_group(self) -> None:
        """Create the group at the stream's end (entries added from now on), unless it exists."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="$", mkstream=True)
            logger.info("created consumer group %s on %s", self.group, self.stream)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 16) -> list[Entry]:
        """Pending entries of this consumer first, then new ones (blocking up to block_ms)."""
        if self._backlog:
            entries = self._read("0", count, None)
            if entries:
                return entries
            self._backlog = False
        return self._read(">", count, self.block_ms)

    def _read(self, since: str, count: int, block: int | None) -> list[Entry]:
        reply = cast(Any, self.client.xreadgroup(self.group, self.consumer, {self.stream: since}, count, block))
        entries: list[Entry] = []
        for _, items in reply or []:
            for entry_id, fields in items:
                entries.append((_text(entry_id), dict(fields or {})))
        return entries

    def ack(self, entry: str) -> None:
        self.client.xack(self.stream, self.group, entry)

    def restart_backlog(self) -> None:
        """After an interruption, read the pending entries again before new ones."""
        self._backlog = True
