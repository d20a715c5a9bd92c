"""At start-up: can the camera streams still hold the pre-roll when an event ends?

A clip is cut when its event ends, which is ``event_gap_s`` after the last hit; by then the
stream must still hold the frames from ``pre_roll_s`` before the first hit. A camera stream
keeps ``camera.maxlen`` entries (``MAXLEN ~``), i.e. ``maxlen / fps`` seconds. The check uses
the configured rate and, for each stream that exists, the rate measured from its entries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

import redis

from gearcam.config import CAMERA_PREFIX
from gearcam.redis_text import text

__all__ = ["Coverage", "check_coverage", "needed_seconds"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Coverage:
    stream: str
    fps: float
    seconds: float  # how long the stream holds at maxlen
    needed: float

    @property
    def ok(self) -> bool:
        return self.seconds >= self.needed

    def describe(self) -> str:
        held = f"{self.stream}: {self.seconds:.0f} s of frames at {self.fps:.1f} fps"
        if self.ok:
            return f"{held} cover the {self.needed:.0f} s a clip needs"
        return (f"{held} do NOT cover the {self.needed:.0f} s a clip needs (pre_roll_s, then the wait for the "
                "event's end); raise camera.maxlen or lower pre_roll_s")  # fmt: skip


def needed_seconds(pre_roll_s: float, post_roll_s: float, event_gap_s: float) -> float:
    """Frames a short event's clip needs still in the stream when it is cut (longer events need more)."""
    return pre_roll_s + max(post_roll_s, event_gap_s)


def _measured_fps(client: redis.Redis, stream: str) -> float | None:
    newest = cast(list[Any], client.xrevrange(stream, count=50))
    if len(newest) < 2:
        return None
    span_ms = int(text(newest[0][0]).split("-")[0]) - int(text(newest[-1][0]).split("-")[0])
    return (len(newest) - 1) * 1000 / span_ms if span_ms > 0 else None


def check_coverage(client: redis.Redis, maxlen: int, fps: float, needed: float) -> list[Coverage]:
    """One verdict for the configured camera rate, and one per existing camera stream (measured rate)."""
    found = [Coverage("camera.maxlen/camera.fps", fps, maxlen / fps, needed)]
    for key in client.scan_iter(match=f"{CAMERA_PREFIX}*", count=1000, _type="stream"):
        stream = text(key)
        measured = _measured_fps(client, stream)
        if measured:
            found.append(Coverage(stream, measured, maxlen / measured, needed))
    for verdict in found:
        (logger.info if verdict.ok else logger.warning)("pre-roll: %s", verdict.describe())
    return found
