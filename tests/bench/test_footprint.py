"""The memory figures of the pipeline section, taken from a real redis-server and this process."""

from __future__ import annotations

import os

import redis

from gearcam.bench.footprint import footprint
from gearcam.bench.report import _footprint
from gearcam.config import CAMERA_STREAM
from gearcam.redis_server import EmbeddedRedis


def test_redis_memory_is_split_into_the_streams_and_the_rest() -> None:
    with EmbeddedRedis(port=0) as server:
        client = redis.Redis.from_url(server.url)
        frame = os.urandom(32 * 1024)
        for _ in range(64):
            client.xadd(CAMERA_STREAM, {"img": frame})
        client.set("gearcam:config", "x" * 1000)
        figures = footprint(server.url, os.getpid(), [])
    camera = figures["streams"][CAMERA_STREAM]
    assert camera["entries"] == 64
    assert 64 * len(frame) / 2**20 <= camera["mb"] < 3 * 64 * len(frame) / 2**20
    assert "cats" not in figures["streams"]  # absent streams are left out, not reported as 0
    assert figures["redis_rest_mb"] > 0 and figures["redis_streams_mb"] == camera["mb"]
    assert figures["runtime_rss_mb"] is not None and figures["runtime_rss_mb"] > 10
    assert figures["gears_workers_rss_mb"] is None
    (_, line) = _footprint(figures)
    assert f"{CAMERA_STREAM} {camera['mb']:,.1f} MiB (64 entries)" in line
