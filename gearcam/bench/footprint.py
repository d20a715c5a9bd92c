"""What the running pipeline holds in memory: the runtime, its Gears workers, and redis-server split by stream.

Measured at the end of the pipeline section, on the same stack (runtime, workers,
redis-server) that carried the frames, so the figures are those of a node that has
been serving a camera, not of an idle one. redis-server's memory is split into the
streams (``MEMORY USAGE`` of each, exact: SAMPLES 0) and the rest, because the
streams' share is set by their MAXLEN times the frame size, not by gearcam.
"""

from __future__ import annotations

from typing import Any

import redis

from gearcam.bench.procs import rss_mb
from gearcam.config import CAMERA_STREAM, STREAM_ALL, STREAM_CATS

__all__ = ["STREAMS", "footprint"]

STREAMS = (CAMERA_STREAM, STREAM_ALL, STREAM_CATS, "events")
_MIB = 1024.0 * 1024.0


def footprint(backing_url: str, runtime_pid: int, worker_pids: list[int]) -> dict[str, Any]:
    """Resident memory of the runtime and its workers, and redis-server's memory by stream (MiB)."""
    client = redis.Redis.from_url(backing_url, socket_timeout=30)
    try:
        info = client.info("memory")
        streams: dict[str, Any] = {}
        for key in STREAMS:
            used = client.memory_usage(key, samples=0)
            if used is not None:
                streams[key] = {"entries": int(client.xlen(key)), "mb": used / _MIB}
    finally:
        client.close()
    stream_mb = sum(s["mb"] for s in streams.values())
    used_mb = float(info["used_memory"]) / _MIB
    workers = [rss_mb(pid) for pid in worker_pids]
    return {
        "runtime_rss_mb": rss_mb(runtime_pid),
        "gears_workers_rss_mb": sum(w for w in workers if w is not None) if workers else None,
        "redis_used_mb": used_mb,
        "redis_rss_mb": float(info["used_memory_rss"]) / _MIB,
        "redis_streams_mb": stream_mb,
        "redis_rest_mb": used_mb - stream_mb,
        "streams": streams,
    }
