"""The recorder service: ``end`` events in, clips and snapshots out, retention between.

An ``end`` is not cut at once: the clip runs to ``post_roll_s`` after the last hit, so the
event waits in a small queue until the camera stream has a frame that late (or, if the camera
went quiet, until that time plus a grace has passed on the wall clock). Its entry is
acknowledged only once it is handled, so a crash re-delivers it (at-least-once). Anything
that goes wrong with one event is counted and logged, and the next event goes on.
"""

from __future__ import annotations

import errno
import heapq
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from gearcam.config import CONFIG_KEY, EVENTS_STREAM, RecordSettings
from gearcam.events import Event, EventConsumer
from gearcam.record.encode import EncodeError, pick_codec, write_clip
from gearcam.record.frames import Window, entry_ms, read_window
from gearcam.record.layout import clip_path
from gearcam.record.retention import enforce, free_bytes, make_room
from gearcam.record.stats import RecordStats
from gearcam.redis_text import text

__all__ = ["Recorder"]

logger = logging.getLogger(__name__)

GRACE_S = 5.0  # a quiet camera: cut this long after the post-roll should have arrived
FALLBACK_FPS = 5.0


@dataclass(order=True)
class _Due:
    at_ms: int  # the clip's last moment (end + post_roll)
    entry: str = field(compare=False)
    event: Event = field(compare=False)
    deadline: float = field(compare=False)  # wall clock (time.time()) to cut anyway


class Recorder:
    def __init__(self, client: redis.Redis, settings: RecordSettings, data_dir: Path | None = None,
                 stream: str = EVENTS_STREAM) -> None:  # fmt: skip
        self.client, self.settings = client, settings
        self.data_dir = data_dir or settings.data_dir
        self.consumer = EventConsumer(client, stream, settings.group, settings.consumer)
        self.stats = RecordStats(client)
        self.codec = ""
        self._due: list[_Due] = []
        self._gap_logged: set[str] = set()
        self._next_retention = 0.0
        self.stopping = threading.Event()

    def roll(self) -> tuple[float, float]:
        """pre_roll_s and post_roll_s: the config hash's fields, else the settings."""
        values = cast(list[Any], self.client.hmget(CONFIG_KEY, ["pre_roll_s", "post_roll_s"]))
        out = []
        for name, raw, default in zip(("pre_roll_s", "post_roll_s"), values,
                                      (self.settings.pre_roll_s, self.settings.post_roll_s), strict=True):  # fmt: skip
            try:
                out.append(float(text(raw)) if raw not in (None, b"", "") else default)
                if not 0 <= out[-1] <= 600:
                    raise ValueError("outside 0-600")
            except ValueError as exc:
                logger.warning("%s %s=%r is not a number of seconds (%s); using %g", CONFIG_KEY, name, raw, exc,
                               default)  # fmt: skip
                out[-1:] = [default]
        return out[0], out[1]

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.consumer.ensure_group()
        self.codec = pick_codec(self.settings.codec, self.data_dir)
        self.stats.state(codec=self.codec)
        logger.info("recording %s clips into %s", self.codec, self.data_dir)

    def run(self) -> None:
        """Until ``stopping`` is set: read events, cut the clips that are due, apply retention now and then."""
        self.start()
        while not self.stopping.is_set():
            self.step()

    def step(self) -> None:
        for entry, fields in self.consumer.read(self._wait_ms()):
            self._take(entry, fields)
        self._cut_due()
        if time.monotonic() >= self._next_retention:
            self.retention()
            self._next_retention = time.monotonic() + self.settings.retention_interval

    def _wait_ms(self) -> int:
        if not self._due:
            return self.settings.block_ms
        return int(min(self.settings.block_ms, 200))

    def _take(self, entry: str, fields: dict[Any, Any] | None) -> None:
        if not fields:  # trimmed while pending
            self.consumer.ack(entry)
            return
        try:
            event = Event.from_fields(entry, fields)
        except ValueError as exc:
            logger.warning("skipping a bad entry of the stream events: %s", exc)
            self.stats.error(str(exc))
            self.consumer.ack(entry)
            return
        if event.type != "end":
            self.consumer.ack(entry)
            return
        _, post = self.roll()
        end = event.end if event.end is not None else event.start
        heapq.heappush(self._due, _Due(end + int(post * 1000), entry, event, time.time() + post + GRACE_S))

    def _cut_due(self) -> None:
        while self._due:
            due = self._due[0]
            newest = cast(list[Any], self.client.xrevrange(due.event.camera, count=1))
            if not (newest and entry_ms(newest[0][0]) >= due.at_ms) and time.time() < due.deadline:
                return
            heapq.heappop(self._due)
            self.record(due.event)
            self.consumer.ack(due.entry)

    def first_hit_ms(self, event: Event) -> int:
        """The camera time of the event's first frame: its hits entry's ``ref``, else the event's start."""
        hit = cast(list[Any], self.client.xrange(event.stream, min=event.id, max=event.id, count=1))
        ref = hit[0][1].get(b"ref") if hit else None
        try:
            return entry_ms(ref) if ref else event.start
        except ValueError:
            return event.start

    def record(self, event: Event) -> Path | None:
        """Write the event's clip and snapshot; every failure is counted and logged, never raised."""
        try:
            return self._record(event)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.stats.count(skipped_disk_full=1)
                logger.warning("disk full: clip of event %s (%s) not written", event.id, event.camera)
                return None
            self._fail(event, exc)
        except (EncodeError, redis.RedisError, ValueError) as exc:
            self._fail(event, exc)
        return None

    def _fail(self, event: Event, exc: BaseException) -> None:
        logger.warning("clip of event %s (%s) failed: %s", event.id, event.camera, exc)
        self.stats.error(f"{event.id} ({event.camera}): {type(exc).__name__}: {exc}")

    def _record(self, event: Event) -> Path | None:
        pre, post = self.roll()
        first = self.first_hit_ms(event)
        start_ms, end_ms = first - int(pre * 1000), (event.end or event.start) + int(post * 1000)
        path = clip_path(self.data_dir, event.camera, event.start, event.id)
        deleted = make_room(self.data_dir, self.settings.min_free_bytes)
        self.stats.count(deleted=deleted.clips, deleted_bytes=deleted.bytes)
        if self.settings.min_free_bytes and free_bytes(self.data_dir) < self.settings.min_free_bytes:
            self.stats.count(skipped_disk_full=1)
            logger.warning("disk under %d bytes free even after retention: clip of event %s (%s) skipped",
                           self.settings.min_free_bytes, event.id, event.camera)  # fmt: skip
            return None
        window = read_window(self.client, event.camera, start_ms, end_ms)
        self._report_gaps(event, window)
        if not window.frames:
            raise ValueError(f"no frames of {event.camera} between {start_ms} and {end_ms} (trimmed?)")
        clip = write_clip(window.frames, path, self.codec, FALLBACK_FPS)
        self._snapshot(event, window, path.with_suffix(".jpg"))
        description = {**event.as_json(), "codec": clip.codec, "frames": clip.frames, "fps": round(clip.fps, 3),
                       "clip_start_ms": start_ms, "clip_end_ms": end_ms, "first_frame_ms": window.frames[0][0],
                       "last_frame_ms": window.frames[-1][0], "first_hit_ms": first, "gaps": window.gaps}  # fmt: skip
        _write_atomic(path.with_suffix(".json"), json.dumps(description).encode())
        self.stats.count(clips=1, bytes=clip.size)
        logger.info("clip of event %s (%s, %s): %d frames, %.1f s, %d bytes -> %s", event.id, event.camera,
                    event.label, clip.frames, (end_ms - start_ms) / 1000, clip.size, path)  # fmt: skip
        return path

    def _report_gaps(self, event: Event, window: Window) -> None:
        if not window.gaps:
            return
        self.stats.count(gaps=len(window.gaps), gap_ms=window.missing_ms)
        log = logger.debug if event.camera in self._gap_logged else logger.warning
        self._gap_logged.add(event.camera)
        log("%s: %.1f s of the clip of event %s are missing (frames trimmed from the stream, or the camera paused); "
            "counted in gearcam:stats:record gaps (further gaps of this camera are logged at DEBUG)",
            event.camera, window.missing_ms / 1000, event.id)  # fmt: skip

    def _snapshot(self, event: Event, window: Window, path: Path) -> None:
        found = cast(list[Any], self.client.xrange(event.stream, min=event.snapshot, max=event.snapshot, count=1))
        img = found[0][1].get(b"img") if found and event.snapshot else None
        if not img:
            self.stats.count(snapshots_missing=1)
            wanted = entry_ms(event.snapshot) if event.snapshot else event.start
            img = min(window.frames, key=lambda f: abs(f[0] - wanted))[1]
        _write_atomic(path, bytes(img))

    def retention(self) -> None:
        try:
            deleted = enforce(self.data_dir, self.settings.retain_days, self.settings.max_bytes_per_camera,
                              int(time.time() * 1000))  # fmt: skip
            self.stats.count(deleted=deleted.clips, deleted_bytes=deleted.bytes)
        except OSError as exc:
            logger.warning("retention in %s failed: %s", self.data_dir, exc)


def _write_atomic(path: Path, data: bytes) -> None:
    part = path.with_name(f".{path.name}")
    try:
        part.write_bytes(data)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
