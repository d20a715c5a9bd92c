"""The stream ``events`` (docs/pipeline.md, "Events"): its entries as typed data, and the consumer
group every service that reacts to them reads it with (the notifier, the recorder).

A consumer has a fixed name, so a service that crashed gets its own pending entries (read, never
acknowledged) back first when it starts again; only then does it read new ones. The caller
acknowledges an entry once it has been handled: delivery is at-least-once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis

from gearcam.redis_text import text

__all__ = ["Entry", "Event", "EventConsumer", "EventType"]

logger = logging.getLogger(__name__)

EventType = Literal["new", "update", "end"]
_TYPES = ("new", "update", "end")
Entry = tuple[str, dict[Any, Any] | None]  # fields None: the entry was trimmed from the stream while pending


@dataclass(frozen=True)
class Event:
    """One change of an event: ``id`` is the hits entry of its first hit, ``snapshot`` that of its best."""

    entry: str  # this change's id in the stream `events`
    type: EventType
    id: str
    camera: str
    label: str
    klass: int
    score: float
    start: int  # ms
    end: int | None  # ms, set on `end`
    snapshot: str
    stream: str  # the hits stream `id` and `snapshot` are entries of

    @classmethod
    def from_fields(cls, entry: Any, fields: dict[Any, Any]) -> Event:
        """Parse a stream entry; ValueError names the field that is wrong."""
        got = {text(k): text(v) for k, v in fields.items()}
        kind = got.get("type", "")
        if kind not in _TYPES:
            raise ValueError(f"event {text(entry)}: type={kind!r}, expected one of {', '.join(_TYPES)}")
        try:
            return cls(
                entry=text(entry), type=cast(EventType, kind), id=got["id"], camera=got["camera"],
                label=got["label"], klass=int(got["class"]), score=float(got["score"]), start=int(got["start"]),
                end=int(got["end"]) if got.get("end") else None, snapshot=got.get("snapshot", ""),
                stream=got.get("stream") or "cats",
            )  # fmt: skip
        except (KeyError, ValueError) as exc:
            raise ValueError(f"event {text(entry)}: bad or missing field {exc}") from exc

    @property
    def active(self) -> bool:
        return self.type != "end"

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else max(0, self.end - self.start) / 1000

    def as_json(self) -> dict[str, Any]:
        """The JSON body of MQTT's ``<prefix>/events``, the webhooks and the events page."""
        return {
            "type": self.type, "id": self.id, "camera": self.camera, "label": self.label, "class": self.klass,
            "score": self.score, "start": self.start, "end": self.end, "snapshot": self.snapshot,
            "stream": self.stream, "entry": self.entry,
        }  # fmt: skip


class EventConsumer:
    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str) -> None:
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer
        self._backlog = True  # read our pending entries first (a restart after a crash)

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

    def restart_backlog(self) -> None:
        """After an interruption, read the pending entries again before new ones."""
        self._backlog = True
