"""The camera loop: one frame per tick into ``camera:<n>``, reconnecting to the camera and to Redis.

Nothing is queued: a frame is read, sent, or dropped (and counted) when Redis is away,
so memory stays flat however long an outage lasts. A tick that is missed is skipped,
not made up for. Losing the camera or Redis is logged once with the wait before the
next attempt (doubling up to ``backoff_max``), and their return is logged too.

Counters, in the hash ``gearcam:stats:<stream>`` (the Gears script adds its own fields):
``produced`` (frames added), ``dropped`` (frames lost while Redis was away),
``camera_reconnects``, ``redis_reconnects``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gearcam.camera.sources import FrameSource, SourceError, SourceSpec, open_source
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
        opener: Callable[[SourceSpec, int, int, int], FrameSource] = open_source,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.url = redis_url
        self.stop = stop or threading.Event()
        self.stats = ProducerStats()
        self._open = opener
        self._source: FrameSource | None = None
        self._client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5, retry=None)
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
            return self._source.read()
        except SourceError as exc:
            if self._source is not None:
                self._source.close()
                self._source = None
            wait = self._camera_backoff.next()
            logger.warning("camera %s lost (%s); reconnecting in %.1fs", self.spec.name, exc, wait)
            self.stop.wait(wait)
            return None

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
