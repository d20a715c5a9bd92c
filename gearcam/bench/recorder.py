"""The recorder's memory and CPU per camera: ``python -m gearcam.record`` cutting one clip per camera.

A fresh redis-server holds, per camera, a 10 fps stream of 640x480 frames (the cameras section's
mostly-still sequence, with entry ids in the past, so every clip is due at once) and one finished
event of ``record_clip_s`` seconds. The recorder runs as its own process, as deployed; its CPU
seconds from reading the first event to the last clip written, and its peak resident memory,
are read from /proc. Repeated for each count in the plan's ``record_cameras``: the CPU grows with
the clips, the memory should not (one clip is cut at a time, one frame decoded at a time).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis

from gearcam.bench.cameras import FPS, scenes, sequence_frame
from gearcam.bench.plan import Plan
from gearcam.bench.procs import child_env, cpu_seconds, peak_rss_mb, stop_process
from gearcam.config import CONFIG_KEY, EVENTS_STREAM, PROJECT_ROOT, STATS_RECORD_KEY
from gearcam.redis_server import EmbeddedRedis

__all__ = ["ROLL_S", "run_recorder"]

logger = logging.getLogger(__name__)

ROLL_S = 2.0  # pre_roll_s and post_roll_s of the measured clips
Tick = Callable[[str], None]


def _fill(client: redis.Redis, camera: str, t0_ms: int, seconds: float, phase: int) -> None:
    frames = scenes()
    pipe = client.pipeline(transaction=False)
    for i in range(int(seconds * FPS)):
        t = t0_ms + i * 1000 // FPS
        pipe.xadd(camera, {"img": sequence_frame(frames, i, phase), "count": i, "ts": t}, id=f"{t}-0")
    pipe.execute()


def _event(client: redis.Redis, camera: str, start_ms: int, end_ms: int) -> None:
    hit = client.xadd("cats", {"img": scenes()[1], "source": camera, "ref": f"{start_ms}-0", "label": "tabby",
                               "class": 281, "score": 0.8, "ms": 9.0})  # fmt: skip
    fields: dict[Any, Any] = {"type": "end", "id": hit, "camera": camera, "label": "tabby", "class": 281,
                              "score": 0.8, "start": start_ms + 40, "end": end_ms, "snapshot": hit,
                              "stream": "cats"}  # fmt: skip
    client.xadd(EVENTS_STREAM, fields)


def _one_count(count: int, clip_s: float) -> dict[str, Any]:
    with EmbeddedRedis(port=0) as server, tempfile.TemporaryDirectory(prefix="gearcam-bench-rec-") as data:
        client = redis.Redis.from_url(server.url, socket_timeout=30)
        client.hset(CONFIG_KEY, mapping={"pre_roll_s": ROLL_S, "post_roll_s": ROLL_S})
        span_s = clip_s + 2 * ROLL_S + 2
        t0 = int(time.time() * 1000) - int(span_s * 1000) - 60_000
        cameras = [f"camera:{n}" for n in range(count)]
        for n, camera in enumerate(cameras):
            _fill(client, camera, t0, span_s, phase=n * 7)
        command = [sys.executable, "-m", "gearcam.record", "--redis-url", server.url, "--data", data,
                   "--log-level", "WARNING"]  # fmt: skip
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env())
        try:
            deadline = time.monotonic() + 60
            while not (client.exists(EVENTS_STREAM) and client.xinfo_groups(EVENTS_STREAM)):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the recorder did not start (exit status {proc.poll()})")
                time.sleep(0.05)
            idle_mb = peak_rss_mb(proc.pid)
            cpu0 = cpu_seconds(proc.pid) or 0.0
            began = time.perf_counter()
            start = t0 + int(ROLL_S * 1000) + 1000
            for camera in cameras:
                _event(client, camera, start, start + int(clip_s * 1000))
            deadline = time.monotonic() + 60 + 30 * count
            while int(client.hget(STATS_RECORD_KEY, "clips") or 0) + int(client.hget(STATS_RECORD_KEY, "failures")
                                                                          or 0) < count:  # fmt: skip
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{count} clips not written in time (exit status {proc.poll()})")
                time.sleep(0.05)
            wall = time.perf_counter() - began
            cpu = (cpu_seconds(proc.pid) or 0.0) - cpu0
            raw: dict[bytes, bytes] = client.hgetall(STATS_RECORD_KEY)  # type: ignore[assignment]
            stats = {k.decode(): v.decode() for k, v in raw.items()}
            return {
                "cameras": count,
                "clip_seconds": clip_s + 2 * ROLL_S,
                "clips": int(stats.get("clips", 0)),
                "failures": int(stats.get("failures", 0)),
                "codec": stats.get("codec"),
                "bytes_per_clip": int(stats.get("bytes", 0)) / max(1, int(stats.get("clips", 0))),
                "cpu_seconds": cpu,
                "cpu_seconds_per_clip": cpu / count,
                "cpu_seconds_per_video_second": cpu / (count * (clip_s + 2 * ROLL_S)),
                "wall_seconds": wall,
                "idle_rss_mb": idle_mb,
                "peak_rss_mb": peak_rss_mb(proc.pid),
            }
        finally:
            stop_process(proc, 15)
            client.close()


def run_recorder(plan: Plan, tick: Tick) -> dict[str, Any]:
    """The recorder section; "not measured" with the reason when the recorder cannot run here."""
    if not plan.record_cameras:
        return {"not_measured": "not measured: the plan has no recorder counts"}
    rows = []
    try:
        for count in plan.record_cameras:
            rows.append(_one_count(count, plan.record_clip_s))
            tick(f"recorder: {count} camera(s)")
    except Exception as exc:  # report, do not lose the rest of the run
        logger.warning("the recorder could not be measured: %s", exc)
        return {"not_measured": f"not measured: the recorder did not run ({type(exc).__name__}: {exc})", "rows": rows}
    last = rows[-1]
    return {
        "rows": rows,
        "roll_s": ROLL_S,
        # One camera with one event a minute: the CPU share of a core it costs, and the memory.
        "cpu_cores_per_camera_at_one_event_a_minute": last["cpu_seconds_per_clip"] / 60.0,
        "peak_rss_mb": max((row["peak_rss_mb"] or 0.0) for row in rows),
        "peak_rss_growth_mb_per_camera": (
            ((rows[-1]["peak_rss_mb"] or 0.0) - (rows[0]["peak_rss_mb"] or 0.0))
            / (rows[-1]["cameras"] - rows[0]["cameras"])
            if len(rows) > 1
            else None
        ),
    }
