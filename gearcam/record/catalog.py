"""The events as a list: the stream ``events`` folded by event id (latest change wins), newest first.

Plain data in, plain data out, so the web page (async Redis) and ``invoke events`` (sync) share it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gearcam.events import Event

__all__ = ["fold_events"]


@dataclass(frozen=True)
class _Filter:
    camera: str | None
    label: str | None
    since_ms: int | None

    def keeps(self, event: Event) -> bool:
        return ((self.camera is None or event.camera == self.camera)
                and (self.label is None or self.label.lower() in event.label.lower())
                and (self.since_ms is None or event.start >= self.since_ms))  # fmt: skip


def fold_events(entries: Iterable[tuple[Any, dict[Any, Any]]], camera: str | None = None, label: str | None = None,
                since_ms: int | None = None) -> list[Event]:  # fmt: skip
    """Entries of ``events`` in any order -> each event's latest state, newest start first; bad entries skipped."""
    latest: dict[str, Event] = {}
    for entry_id, fields in entries:
        try:
            event = Event.from_fields(entry_id, fields)
        except ValueError:
            continue
        seen = latest.get(event.id)
        if seen is None or _entry_key(event.entry) > _entry_key(seen.entry):
            latest[event.id] = event
    keep = _Filter(camera, label, since_ms)
    return sorted((e for e in latest.values() if keep.keeps(e)), key=lambda e: (e.start, e.id), reverse=True)


def _entry_key(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)
