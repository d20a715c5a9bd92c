"""One Redis reader per server, fanning the newest frame out to every browser.

The reader follows the stream with ``XREAD BLOCK`` and keeps the newest entry; every
browser has a one-frame ``Slot``: a frame that arrives before the previous one was sent
replaces it (and is counted as skipped), so a slow browser sees fewer frames, never a
growing queue. Every ``stats_interval`` the reader also reads the pipeline counters
(``gearcam:stats:pipeline``) and hands them, with the frame rate and Redis' state, to
every slot, and the cameras' states (``gearcam:stats:camera:<n>``, for ``/healthz`` and
``/metrics``). When Redis goes away the reader says so to the browsers, waits (doubling
up to ``backoff_max``) and goes on from the last entry it saw.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gearcam.camera.state import CameraState
from gearcam.client_names import named_async
from gearcam.config import (
    CAMERA_PREFIX,
    EVENTS_STREAM,
    STATS_ERRORS_KEY,
    STATS_NOTIFY_KEY,
    STATS_PIPELINE_KEY,
    STATS_PREFIX,
    STATS_RECORD_KEY,
    WebSettings,
    redact_url,
)

__all__ = ["Frame", "Hub", "Slot"]

logger = logging.getLogger(__name__)

_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ResponseError, OSError)
_META_FIELDS = ("source", "ref", "label", "class", "score", "ms", "count", "ts")


@dataclass(frozen=True)
class Frame:
    """One stream entry: its id, the text fields as a JSON message, and the JPEG bytes."""

    id: str
    message: str
    img: bytes


def to_frame(entry_id: bytes | str, fields: dict[bytes, bytes], stream: str) -> Frame:
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    meta: dict[str, Any] = {"type": "frame", "stream": stream, "id": eid, "time_ms": int(eid.split("-", 1)[0])}
    for key, value in fields.items():
        name = key.decode("utf-8", "replace")
        if name in _META_FIELDS:
            meta[name] = value.decode("utf-8", "replace")
    return Frame(eid, json.dumps(meta), fields.get(b"img", b""))


class Slot:
    """A browser's one-frame buffer (plus the latest counters)."""

    def __init__(self) -> None:
        self.frame: Frame | None = None
        self.stats: str | None = None
        self.skipped = 0
        self.wants_frames = True  # the events page wants only stats and events
        self.events: collections.deque[str] = collections.deque(maxlen=64)
        self._ready = asyncio.Event()

    def put_event(self, message: str) -> None:
        self.events.append(message)
        self._ready.set()

    def take_events(self) -> list[str]:
        taken = list(self.events)
        self.events.clear()
        return taken

    def put_frame(self, frame: Frame) -> None:
        if self.frame is not None:
            self.skipped += 1
        self.frame = frame
        self._ready.set()

    def put_stats(self, stats: str) -> None:
        self.stats = stats
        self._ready.set()

    async def take(self) -> tuple[Frame | None, str | None]:
        """Wait for something new, then hand over (and clear) what is there."""
        await self._ready.wait()
        self._ready.clear()
        frame, stats = self.frame, self.stats
        self.frame = self.stats = None
        return frame, stats


@dataclass
class Hub:
    """The stream reader and its subscribers."""

    url: str
    settings: WebSettings
    latest: Frame | None = None
    counters: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    record: dict[str, str] = field(default_factory=dict)  # the recorder's counters (gearcam.record.stats)
    notify: dict[str, str] = field(default_factory=dict)  # the notifier's counters (gearcam.notify.counts)
    intervals: dict[str, str] = field(default_factory=dict)  # camera -> sampling interval set by adaptive sampling
    cameras: list[CameraState] = field(default_factory=list)
    # up, down, or connecting: a web server that has not heard back from Redis yet is not reporting an outage.
    redis_state: str = "connecting"
    frames_total: int = 0
    skipped_total: int = 0
    slots: set[Slot] = field(default_factory=set)
    last_id: str = "$"
    events_last_id: str = "$"  # the stream `events`: each change goes to every browser (the events page)
    _arrivals: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=1000))

    @property
    def stream(self) -> str:
        return self.settings.stream

    def fps(self, window: float = 5.0) -> float:
        now = time.monotonic()
        recent = [t for t in self._arrivals if now - t <= window]
        return len(recent) / window if recent else 0.0

    def subscribe(self) -> Slot:
        slot = Slot()
        if self.latest is not None:
            slot.put_frame(self.latest)
        slot.put_stats(self.stats_message())
        self.slots.add(slot)
        return slot

    def unsubscribe(self, slot: Slot) -> None:
        self.skipped_total += slot.skipped
        self.slots.discard(slot)

    @property
    def redis_up(self) -> bool:
        return self.redis_state == "up"

    def stats_message(self) -> str:
        return json.dumps({
            "type": "stats", "stream": self.stream, "redis": self.redis_state,
            "fps": round(self.fps(), 2), "clients": len(self.slots), "counters": self.counters, "errors": self.errors,
        })  # fmt: skip

    def _publish(self, frame: Frame) -> None:
        self.latest = frame
        for slot in self.slots:
            slot.put_frame(frame)

    def _publish_events(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            self.events_last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            event = {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()}
            message = json.dumps({"type": "event", "entry": self.events_last_id, "event": event})
            for slot in self.slots:
                slot.put_event(message)

    def _publish_stats(self) -> None:
        message = self.stats_message()
        for slot in self.slots:
            slot.put_stats(message)

    async def run(self) -> None:
        """Follow the stream until cancelled."""
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=5,
            socket_timeout=self.settings.block_ms / 1000 + 5,
            retry=None,
            redis_connect_func=named_async(f"gearcam-web:{self.settings.stream}"),
        )
        delay = 0.0
        try:
            while True:
                try:
                    await self._follow(client)
                except _REDIS_ERRORS as exc:
                    if self.redis_up:
                        delay = 0.0  # it was working: start the backoff again
                    if delay == 0:
                        logger.warning("stream %s: Redis at %s unreachable (%s); retrying", self.stream,
                                       redact_url(self.url), exc)  # fmt: skip
                    self.redis_state = "down"
                    self._publish_stats()
                    delay = min(max(delay * 2, 0.2), self.settings.backoff_max)
                    await asyncio.sleep(delay)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _follow(self, client: aioredis.Redis) -> None:
        if self.events_last_id == "$":
            newest_event: Any = await client.xrevrange(EVENTS_STREAM, count=1)
            self.events_last_id = newest_event[0][0].decode() if newest_event else "0-0"
        if self.last_id == "$":  # first contact: show the newest entry at once, then follow from it
            newest: Any = await client.xrevrange(self.stream, count=1)
            if newest:
                frame = to_frame(newest[0][0], newest[0][1], self.stream)
                self._publish(frame)
                self.last_id = frame.id
            else:  # from the start, not "$": a frame added before the first XREAD must not be missed
                self.last_id = "0-0"
        await self._read_stats(client)
        if not self.redis_up:
            logger.info("stream %s: reading from Redis at %s", self.stream, redact_url(self.url))
        self.redis_state = "up"
        self._publish_stats()
        next_stats = time.monotonic() + self.settings.stats_interval
        while True:
            streams: dict[Any, Any] = {self.stream: self.last_id, EVENTS_STREAM: self.events_last_id}
            reply: Any = await client.xread(streams, count=16, block=self.settings.block_ms)
            for name, entries in reply or []:
                is_events = (name.decode() if isinstance(name, bytes) else name) == EVENTS_STREAM
                if is_events and self.stream != EVENTS_STREAM:
                    self._publish_events(entries)
                    continue
                for entry_id, _fields in entries:
                    self.frames_total += 1
                    self._arrivals.append(time.monotonic())
                    self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                if entries:  # a burst: only the newest is worth sending
                    self._publish(to_frame(entries[-1][0], entries[-1][1], self.stream))
            if time.monotonic() >= next_stats:
                await self._read_stats(client)
                self._publish_stats()
                next_stats = time.monotonic() + self.settings.stats_interval

    async def _read_stats(self, client: aioredis.Redis) -> None:
        counters: dict[bytes, bytes] = await client.hgetall(STATS_PIPELINE_KEY)  # type: ignore[assignment]
        errors: dict[bytes, bytes] = await client.hgetall(STATS_ERRORS_KEY)  # type: ignore[assignment]
        self.counters = {k.decode(): v.decode("utf-8", "replace") for k, v in counters.items()}
        self.errors = {k.decode(): v.decode("utf-8", "replace") for k, v in errors.items()}
        record: dict[bytes, bytes] = await client.hgetall(STATS_RECORD_KEY)  # type: ignore[assignment]
        self.record = {k.decode(): v.decode("utf-8", "replace") for k, v in record.items()}
        notify: dict[bytes, bytes] = await client.hgetall(STATS_NOTIFY_KEY)  # type: ignore[assignment]
        self.notify = {k.decode(): v.decode("utf-8", "replace") for k, v in notify.items()}
        cameras, intervals = [], {}
        async for key in client.scan_iter(match=f"{STATS_PREFIX}{CAMERA_PREFIX}*", count=1000):
            fields: dict[bytes, bytes] = await client.hgetall(key)  # type: ignore[assignment]
            name = (key.decode() if isinstance(key, bytes) else str(key))[len(STATS_PREFIX) :]
            state = CameraState.from_hash(name, {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()})
            if state.known:
                cameras.append(state)
            if b"interval" in fields:
                intervals[name] = fields[b"interval"].decode()
        self.intervals = intervals
        self.cameras = sorted(cameras, key=lambda state: state.stream)
