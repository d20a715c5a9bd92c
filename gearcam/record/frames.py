"""The frames of a time window from a camera stream, and the gaps in it.

Camera entry ids are the ms time Redis added them (``XADD … *``), so a window is an
``XRANGE`` by time, read in pages. A gap is missing video: the window starts before the
stream's oldest entry (trimmed by ``MAXLEN``, or the camera was not running), or two
neighbouring frames lie much further apart than the camera's usual interval.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from gearcam.redis_text import text

__all__ = ["Window", "read_window"]

PAGE = 200
GAP_FACTOR = 3.0  # neighbours further apart than this many median intervals leave a gap
MIN_GAP_MS = 500


@dataclass
class Window:
    """Frames (time in ms, JPEG bytes) in time order, and the missing stretches (start ms, end ms)."""

    stream: str
    start_ms: int
    end_ms: int
    frames: list[tuple[int, bytes]] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)

    @property
    def missing_ms(self) -> int:
        return sum(end - start for start, end in self.gaps)


def entry_ms(entry_id: Any) -> int:
    return int(text(entry_id).split("-", 1)[0])


def read_window(client: redis.Redis, stream: str, start_ms: int, end_ms: int) -> Window:
    window = Window(stream, start_ms, end_ms)
    low = f"{start_ms}-0"
    while True:
        page = cast(list[Any], client.xrange(stream, min=low, max=f"{end_ms}-18446744073709551615", count=PAGE))
        for entry_id, fields in page:
            img = fields.get(b"img") or fields.get("img")
            if img:
                window.frames.append((entry_ms(entry_id), bytes(img)))
        if len(page) < PAGE:
            break
        low = "(" + text(page[-1][0])
    window.gaps = find_gaps(start_ms, [t for t, _ in window.frames])
    return window


def find_gaps(start_ms: int, times: list[int]) -> list[tuple[int, int]]:
    """Missing stretches: before the first frame (more than an interval after ``start_ms``), and between frames."""
    if not times:
        return []
    intervals = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    usual = statistics.median(intervals) if intervals else MIN_GAP_MS
    limit = max(GAP_FACTOR * usual, MIN_GAP_MS)
    gaps = [(start_ms, times[0])] if times[0] - start_ms > limit else []
    gaps += [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a > limit]
    return gaps
