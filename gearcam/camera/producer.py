"""The camera loop: one frame per tick into ``camera:<n>``, reconnecting to the camera and to Redis.

Nothing is queued: a frame is read, sent, or dropped (and counted) when Redis is away,
so memory stays flat however long an outage lasts. A tick that is missed is skipped,
not made up for. Losing the camera or Redis is logged once with the wait before the
next attempt (doubling up to ``backoff_max``), and their return is logged too.

A source that cannot be opened at start ends the run with the reason and the fix (SourceError),
unless ``wait_for_source`` is set: a wrong path or URL should stop `invoke up` in seconds, not
retry silently. A source lost later is retried for as long as it takes.

Counters, in the hash ``gearcam:stats:<stream>`` (the Gears script adds its own fields):
``produced`` (frames added), ``dropped`` (frames lost while Redis was away),
``camera_reconnects``, ``redis_reconnects``; and the camera's state (``gearcam.camera.state``:
``source``, ``connected``, ``retrying_since``, ``source_error``), written when it changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gearcam.camera.sources import FrameSource, SourceError, SourceSpec, open_source
from gearcam.camera.state import CONNECTED, LAST_ERROR, RETRYING_SINCE, SOURCE, STATE_MS
from gearcam.client_names import named
from gearcam.config import STATS_PREFIX, CameraSettings, redact_url

__all__ = ["Backoff", "Producer", "ProducerStats"]

logger = logging.getLogger(__name__)


@dataclass
class Backoff:
    """Waits that double from ``first`` up to ``limit``; ``reset`` after a success."""

    limit: float
    first: float = 0.2
    current: float = 0.0

    def next(self) -> float:
        self.current = self.first if self.current == 0 else min(self.current * 2, self.limit)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


@dataclass
class ProducerStats:
    produced: int = 0
    dropped: int = 0
    camera_reconnects: int = 0
    redis_reconnects: int = 0


class Producer:
    """Reads ``spec`` at ``settings.fps`` and adds each frame to ``settings.stream``, until ``stop`` is set."""

    def __init__(
        self,
        spec: SourceSpec,
        settings: CameraSettings,
        redis_url: str,
        stop: threading.Event | None = None,
        opener: Callable[[SourceSpec, int, int, int], FrameSource] | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.url = redis_url
        self.stop = stop or threading.Event()
        self.stats = ProducerStats()
        self._open = opener or (lambda spec, w, h, q: open_source(spec, w, h, q, settings.open_timeout))
        self._opened_once = False
        self._retrying_since: int | None = None
        self._last_error = ""
        self._state: dict[str, str] = {}
        self._state_dirty = False
        self._source: FrameSource | None = None
        self._client = redis.Redis.from_url(
            redis_url,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=None,
            redis_connect_func=named(f"gearcam-{settings.stream}"),
        )
        self._camera_backoff = Backoff(settings.backoff_max)
        self._redis_backoff = Backoff(settings.backoff_max)
        self._redis_down_since: float | None = None
        self._dropped_in_outage = 0
        self._retry_redis_at = 0.0
        self._stats_key = f"{STATS_PREFIX}{settings.stream}"

    def run(self, max_frames: int | None = None) -> ProducerStats:
        """Loop until ``stop`` is set (or ``max_frames`` were added); returns the counters."""
        period = 1.0 / self.settings.fps
        next_tick = time.monotonic()
        logger.info("camera %s -> %s on %s at %g fps", self.spec.name, self.settings.stream,
                    redact_url(self.url), self.settings.fps)  # fmt: skip
        try:
            while not self.stop.is_set() and (max_frames is None or self.stats.produced < max_frames):
                frame = self._read_frame()
                if frame is not None:
                    self._send(frame)
                next_tick += period
                now = time.monotonic()
                if next_tick < now:  # late: skip the missed ticks instead of bursting
                    next_tick = now
                self.stop.wait(next_tick - now)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None
        self._client.close()

    # -- camera ------------------------------------------------------------------------------------

    def _read_frame(self) -> bytes | None:
        try:
            if self._source is None:
                self._source = self._open(self.spec, self.settings.width, self.settings.height, self.settings.quality)
                if self._camera_backoff.current:
                    self.stats.camera_reconnects += 1
                    logger.warning("camera %s is back", self.spec.name)
                self._camera_backoff.reset()
                self._opened_once = True
                self._set_state(connected=True)
            return self._source.read()
        except SourceError as exc:
            if self._source is not None:
                self._source.close()
                self._source = None
            if not self._opened_once and not self.settings.wait_for_source:
                raise SourceError(
                    f"{exc}; the camera stops here. Fix the source, or keep retrying until it answers with "
                    "--wait-for-camera (`invoke up --wait-for-camera`, or camera.wait_for_source)"
                ) from exc
            wait = self._camera_backoff.next()
            changed = str(exc) != self._last_error
            self._set_state(connected=False, error=str(exc))
            what = "lost" if self._opened_once else "not available yet"
            logger.log(logging.WARNING if changed else logging.DEBUG,
                       "camera %s %s (%s); retrying every %.0fs at most, state in %s",
                       self.spec.name, what, exc, self.settings.backoff_max, self._stats_key)  # fmt: skip
            self.stop.wait(wait)
            return None

    def _set_state(self, connected: bool, error: str = "") -> None:
        """Record the camera's state (gearcam.camera.state) and write it when Redis takes it."""
        now = str(int(time.time() * 1000))
        if connected:
            self._retrying_since = None
            state = {SOURCE: self.spec.name, CONNECTED: "1"}
        else:
            self._retrying_since = self._retrying_since or int(now)
            self._last_error = error
            state = {SOURCE: self.spec.name, CONNECTED: "0", RETRYING_SINCE: str(self._retrying_since),
                     LAST_ERROR: error}  # fmt: skip
        if state != self._state:
            self._state, self._state_dirty = state, True
        self._write_state(now)

    def _write_state(self, now: str | None = None) -> None:
        if not self._state_dirty:
            return
        try:
            with self._client.pipeline(transaction=True) as pipe:
                fields = {**self._state, STATE_MS: now or str(int(time.time() * 1000))}
                pipe.hset(self._stats_key, mapping=cast("dict[Any, Any]", fields))
                if self._state.get(CONNECTED) == "1":
                    pipe.hdel(self._stats_key, RETRYING_SINCE)
                pipe.execute()
            self._state_dirty = False
        except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
            logger.debug("camera %s: state not written yet (%s)", self.spec.name, exc)

    # -- Redis ---------------------------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        if self._redis_down_since is not None and time.monotonic() < self._retry_redis_at:
            self._drop()
            return
        count = self.stats.produced + self.stats.dropped + 1
        try:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.xadd(self.settings.stream, {"img": frame, "count": count, "ts": int(time.time() * 1000)},
                          maxlen=self.settings.maxlen, approximate=True)  # fmt: skip
                pipe.hincrby(self._stats_key, "produced", 1)
                if self._dropped_in_outage:
                    pipe.hincrby(self._stats_key, "dropped", self._dropped_in_outage)
                if self._redis_down_since is not None:
                    pipe.hincrby(self._stats_key, "redis_reconnects", 1)
                pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
            self._redis_lost(exc)
            self._drop()
            return
        self.stats.produced += 1
        self._write_state()  # what Redis missed while it was away
        if self._redis_down_since is not None:
            self.stats.redis_reconnects += 1
            logger.warning("Redis at %s is back after %.1fs; %d frame(s) were dropped meanwhile",
                           redact_url(self.url), time.monotonic() - self._redis_down_since,
                           self._dropped_in_outage)  # fmt: skip
            self._redis_down_since = None
            self._redis_backoff.reset()
        self._dropped_in_outage = 0

    def _drop(self) -> None:
        self.stats.dropped += 1
        self._dropped_in_outage += 1

    def _redis_lost(self, exc: Exception) -> None:
        wait = self._redis_backoff.next()
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
        # LOADING (Redis restarting from its dump) is a ResponseError; other refusals are logged the same way.
        logger.warning("Redis at %s unreachable (%s); retrying in %.1fs, dropping frames meanwhile",
                       redact_url(self.url), exc, wait)  # fmt: skip
        self._retry_redis_at = time.monotonic() + wait
