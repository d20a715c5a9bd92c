"""Steady memory: the runtime under `invoke up`'s load, one camera for minutes, on the LiteRT int8 model.

What a 4 GB Jetson has to hold is not the peak of a benchmark sweep but what the stack keeps
while a camera runs: a fresh runtime and redis-server loaded by the loader with the plan's
``steady_model`` (the int8 LiteRT classifier a Nano runs), one paced camera (640x480 JPEG,
``steady_fps``) for ``steady_seconds``, the runtime's resident memory sampled every
``SAMPLE_S`` seconds, and at the end the footprint of the whole stack (runtime, Gears
workers, redis-server split into its streams and the rest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from gearcam.bench.footprint import footprint
from gearcam.bench.pipeline import camera_frame
from gearcam.bench.plan import Plan
from gearcam.bench.procs import backing_redis, children, rss_mb, runtime_process
from gearcam.config import CAMERA_STREAM, STATS_PIPELINE_KEY, load_settings

__all__ = ["SAMPLE_S", "STEADY_AIM_MB", "run_steady"]

SAMPLE_S = 10.0
STEADY_AIM_MB = 100.0  # the runtime's resident memory under one camera with the LiteRT int8 model
Tick = Callable[[str], None]


def run_steady(plan: Plan, tick: Tick) -> dict[str, Any]:
    """The steady section; "not measured" with the reason when the stack cannot run here."""
    from gearcam.loader import load

    if not plan.steady_seconds:
        return {"not_measured": "not measured: not in this plan"}
    settings = load_settings(yaml_path=Path("/nonexistent.yaml"), environ={}, models={"name": plan.steady_model})
    frame = camera_frame()
    result: dict[str, Any] = {"model": plan.steady_model, "fps": plan.steady_fps, "seconds": plan.steady_seconds,
                              "frame_bytes": len(frame), "samples": []}  # fmt: skip
    try:
        with backing_redis() as backing, runtime_process(backing.url) as runtime:
            client = redis.Redis.from_url(f"redis://127.0.0.1:{runtime.port}", socket_timeout=120)
            try:
                result["before_model_mb"] = rss_mb(runtime.pid)
                load(client, settings)
                result["frames"] = _camera(client, plan, frame, runtime.pid, result["samples"])
                result["inferred"] = int(client.hget(STATS_PIPELINE_KEY, "inferred") or 0)
            finally:
                client.close()
            result["footprint"] = footprint(
                backing.url, runtime.pid, children(runtime.pid, b"gearcam.runtime.gears.worker")
            )
    except Exception as exc:  # report, do not lose the rest of the run
        return {"not_measured": f"not measured: the stack did not run ({type(exc).__name__}: {exc})"}
    finally:
        tick("steady memory")
    result["steady_mb"] = result["footprint"]["runtime_rss_mb"]
    return result


def _camera(client: redis.Redis, plan: Plan, frame: bytes, pid: int, samples: list[dict[str, float]]) -> int:
    """Frames at the camera's pace for the plan's seconds; the runtime's memory every SAMPLE_S."""
    began = time.perf_counter()
    count = 0
    next_sample = 0.0
    while (elapsed := time.perf_counter() - began) < plan.steady_seconds:
        if elapsed >= next_sample:
            samples.append({"s": round(elapsed, 1), "runtime_rss_mb": rss_mb(pid) or 0.0})
            next_sample += SAMPLE_S
        client.xadd(CAMERA_STREAM, {"img": frame, "count": count, "ts": int(time.time() * 1000)},
                    maxlen=1000, approximate=True)  # fmt: skip
        count += 1
        delay = began + count / plan.steady_fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return count
