"""Fixtures for the recorder suite: a redis-server of its own, and a synthetic camera written with real JPEGs."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from PIL import Image

from gearcam.redis_server import EmbeddedRedis

FPS = 10
SIZE = (160, 120)


def level(index: int) -> int:
    """The grey level of synthetic frame ``index``: far enough apart to tell frames apart after encoding."""
    return 30 + (index * 37) % 200


def jpeg(grey: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", SIZE, (grey, grey, grey)).save(out, "JPEG", quality=90)
    return out.getvalue()


def add_frames(r: redis.Redis, stream: str, t0_ms: int, count: int, fps: int = FPS, skip: range = range(0)) -> None:
    """Frames 0..count-1 at ``fps`` from ``t0_ms``, with entry ids set to their times (as XADD * would)."""
    pipe = r.pipeline(transaction=False)
    for i in range(count):
        if i not in skip:
            t = t0_ms + i * 1000 // fps
            pipe.xadd(stream, {"img": jpeg(level(i)), "count": i, "ts": t}, id=f"{t}-0")
    pipe.execute()


def add_event(r: redis.Redis, camera: str, first_hit_ms: int, last_hit_ms: int, label: str = "tabby, tabby cat",
              best_ms: int | None = None) -> str:  # fmt: skip
    """A hit in `cats` (ref = the camera frame) and its event's `new` and `end` entries in `events`."""
    hit = r.xadd("cats", {"img": jpeg(250), "source": camera, "ref": f"{first_hit_ms}-0", "label": label,
                          "class": 281, "score": 0.8, "ms": 9.5}, id=f"{first_hit_ms + 40}-0")  # fmt: skip
    event_id = hit.decode()
    snapshot = event_id
    if best_ms is not None:
        snapshot = r.xadd("cats", {"img": jpeg(5), "source": camera, "ref": f"{best_ms}-0", "label": label,
                                   "class": 281, "score": 0.9, "ms": 9.5}, id=f"{best_ms + 40}-0").decode()  # fmt: skip
    common: dict[Any, Any] = {"id": event_id, "camera": camera, "label": label, "class": 281, "score": 0.8,
                              "start": first_hit_ms + 40, "snapshot": snapshot, "stream": "cats"}  # fmt: skip
    r.xadd("events", {"type": "new", **common, "end": ""})
    r.xadd("events", {"type": "end", **common, "end": last_hit_ms + 40})
    return event_id


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


@pytest.fixture
def r(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url)
    client.flushall()
    yield client
    client.close()
