"""The whole pipeline: camera frames at increasing rates through the Gears registration to ``cats``.

A fresh runtime in front of a fresh redis-server, loaded by the loader exactly as
``python -m gearcam.loader`` does (model, labels, config hash, Gears script). A paced
producer adds 640x480 JPEG frames to ``camera:0`` with the camera's fields (img, count, ts);
a reader blocks on ``cats`` and matches each hit to its frame by ``ref`` (the camera entry
id), so the latency is camera XADD to the hit being readable. Every frame is a hit on
purpose (target classes 0-999, threshold 0): a frame missing from ``cats`` was dropped
or is late, not a non-cat.

The baseline, on the same cores and measured first: decode + preprocess + inference of the
same frames in one process with the same engine, nothing else (``alone``). That process stays
up and measures one more window after every offered rate, and the ratio is taken against the
median of all its windows at its best batch, so that a machine that speeds up or slows down
during the sweep moves both figures. The offered rates are fractions of the first figure
(the plan's ``pipeline_fractions``), so the sweep brackets the aim
"the pipeline sustains >= 90 % of what the work alone reaches" on any machine. Past the first
rate not sustained, the sweep halves the gap between it and the last one sustained
``pipeline_refine`` times: a coarse step (0.5 to 0.7 of alone) would otherwise quote the
lower fraction for a pipeline that sustains 0.65.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import redis

from gearcam.bench.direct import DirectEngine, direct_engine
from gearcam.bench.footprint import footprint
from gearcam.bench.measure import measure_meter
from gearcam.bench.plan import Plan
from gearcam.bench.procs import (
    backing_redis,
    children,
    cpu_seconds,
    machine_cpu_seconds,
    minor_faults,
    redis_pid,
    runtime_process,
)
from gearcam.bench.stats import percentile, ratio
from gearcam.config import CAMERA_STREAM, PROJECT_ROOT, STATS_PIPELINE_KEY, STREAM_CATS, Settings, load_settings
from gearcam.status import registrations

__all__ = [
    "SUSTAINED",
    "QueueCounts",
    "achieved_rate",
    "bench_settings",
    "camera_frame",
    "decode_infer_alone",
    "executions_triggered",
    "queue_counts",
    "read_hits",
    "run_pipeline",
    "sustained",
    "sweep",
]

logger = logging.getLogger(__name__)

PICTURE = PROJECT_ROOT / "gearcam" / "camera" / "samples" / "chelsea.jpg"
LAG_MS = 1000.0  # a frame whose hit arrives later than this is lagging
DRAIN_S = 5.0  # how long stragglers may still arrive after the producer stopped
# A rate is sustained when >= 99 % of the frames reached cats, the achieved rate is >= 95 % of the
# offered one, and p99 latency stays under LAG_MS (no backlog building up).
SUSTAINED = {"delivered": 0.99, "rate": 0.95, "p99_ms": LAG_MS}
Tick = Callable[[str], None]


def camera_frame(picture: Path = PICTURE, width: int = 640, height: int = 480, quality: int = 85) -> bytes:
    """The picture as the camera producer would send it (its own encoder, 640x480, quality 85)."""
    from PIL import Image

    from gearcam.camera.sources import encode_jpeg

    with Image.open(picture) as image:
        return encode_jpeg(image, width, height, quality)


def decode_infer_alone(plan: Plan, engine: DirectEngine, batchsize: int) -> dict[str, Any]:
    """Decode + preprocess + inference in ``engine``'s process, at batch 1 and at the pipeline's BATCHSIZE.

    ``best_batch`` is the faster of the two; ``frames_per_s`` its median window.
    """
    batches = sorted({1, max(1, batchsize)})
    figures = {b: measure_meter(engine.meter(b), b, plan.window_s, plan.repeats, plan.warmup_s) for b in batches}
    best = max(batches, key=lambda b: figures[b].inferences_per_s)
    out: dict[str, Any] = {"model": plan.pipeline_model, "best_batch": best}
    out.update({f"batch_{batch}": m.to_dict() for batch, m in figures.items()})
    out["frames_per_s"] = figures[best].inferences_per_s
    out["window_rates"] = [w.rate for w in figures[best].windows]
    return out


def alone_window(engine: DirectEngine, alone: dict[str, Any], window_s: float) -> None:
    """One more window of the baseline at its best batch, between two offered rates."""
    best = alone["best_batch"]
    calls, seconds, _ = engine.meter(best).window(window_s)
    alone["window_rates"].append(calls * best / seconds)


def sustained(row: dict[str, Any]) -> bool:
    """Whether one offered rate was sustained (see SUSTAINED)."""
    if not row["sent"] or row["latency_ms"] is None:
        return False
    return bool(
        row["delivered"] >= SUSTAINED["delivered"] * row["sent"]
        and row["achieved_fps"] >= SUSTAINED["rate"] * row["offered_fps"]
        and row["latency_ms"]["p99"] <= SUSTAINED["p99_ms"]
    )


def read_hits(url: str, start: bytes, arrived: dict[Any, float], stop: threading.Event,
              key: Callable[[dict[bytes, bytes]], Any] = lambda fields: fields.get(b"ref", b"")) -> None:  # fmt: skip
    """Each hit's arrival time in `arrived`, by `key` of its fields (the camera entry it came from), until `stop`."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    last = start
    try:
        while not stop.is_set():
            reply: Any = client.xread({STREAM_CATS: last}, block=200, count=500)
            for _, entries in reply or []:
                now = time.perf_counter()
                for entry_id, fields in entries:
                    last = entry_id
                    arrived.setdefault(key(fields), now)
    finally:
        client.close()


def _offer(url: str, plan: Plan, rate: float, frame: bytes, pids: list[int]) -> dict[str, Any]:
    client = redis.Redis.from_url(url, socket_timeout=30)
    sent: dict[bytes, float] = {}
    arrived: dict[bytes, float] = {}
    stop = threading.Event()
    newest = client.xrevrange(STREAM_CATS, count=1)
    start = newest[0][0] if newest else b"0-0"  # the reader takes hits added from now on
    reader = threading.Thread(target=read_hits, args=(url, start, arrived, stop), daemon=True)
    reader.start()
    workers = children(pids[0], b"gearcam.runtime.gears.worker")  # Gears code runs in these
    cpu0 = [cpu_seconds(pid) or 0.0 for pid in pids + workers]
    faults0 = [minor_faults(pid) or 0 for pid in pids + workers]
    machine0 = machine_cpu_seconds()
    queue0, executions0 = queue_counts(client), executions_triggered(client)
    frames = max(1, int(rate * plan.pipeline_seconds))
    began = time.perf_counter()
    for count in range(frames):
        due = began + count / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        entry: Any = client.xadd(CAMERA_STREAM, {"img": frame, "count": count, "ts": int(time.time() * 1000)},
                            maxlen=1000, approximate=True)  # fmt: skip
        sent[entry] = t0
    produced = time.perf_counter()
    deadline = produced + DRAIN_S
    while len(arrived.keys() & sent.keys()) < len(sent) and time.perf_counter() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(5)
    ended = time.perf_counter()
    cpu = [(cpu_seconds(pid) or 0.0) - c for pid, c in zip(pids + workers, cpu0, strict=True)]
    faults = [(minor_faults(pid) or 0) - f for pid, f in zip(pids + workers, faults0, strict=True)]
    machine1 = machine_cpu_seconds()
    queue1, executions1 = queue_counts(client), executions_triggered(client)
    client.close()
    hits = {ref: t for ref, t in arrived.items() if ref in sent}
    latencies = [(t - sent[ref]) * 1000.0 for ref, t in hits.items()]
    first_hit, last_hit = min(hits.values(), default=began), max(hits.values(), default=began)
    row: dict[str, Any] = {
        "offered_fps": rate,
        "sent": len(sent),
        "send_seconds": produced - began,
        "delivered": len(hits),
        "dropped_or_late": len(sent) - len(hits),
        "lagging": sum(1 for ms in latencies if ms > LAG_MS),
        "achieved_fps": achieved_rate(len(hits), first_hit, last_hit, rate),
        "hits_per_s_since_first_sent": len(hits) / max(last_hit - began, 1e-9) if hits else 0.0,
        "latency_ms": {f"p{q}": percentile(latencies, q) for q in (50, 95, 99)} if latencies else None,
        "cpu_cores": {
            "runtime": cpu[0] / (ended - began),
            "redis": cpu[1] / (ended - began),
            "gears_workers": sum(cpu[2:]) / (ended - began),
            "machine": (machine1[0] - machine0[0]) / (ended - began) if machine0 and machine1 else None,
        },
        # Fresh pages the kernel zeroed for each process, per frame sent: an allocator handing a frame's buffers
        # back and taking them anew shows here (gearcam/allocator.py).
        "page_faults_per_frame": {
            "runtime": faults[0] / len(sent) if sent else None,
            "redis": faults[1] / len(sent) if sent else None,
            "gears_workers": sum(faults[2:]) / len(sent) if sent else None,
        },
        # The device queue's time in engine runs over the window: below 1 at the limit, the engine waited on
        # its feeders (decode, the Gears wire, the gap between one stream's executions).
        "engine_busy": (queue1.busy_seconds - queue0.busy_seconds) / (ended - began),
        # How the frames were grouped on their way: a StreamReader runs one execution at a time per stream, and
        # the queue merges what it finds waiting (up to BATCHSIZE); small groups are where the engine waited.
        "executions": executions1 - executions0,
        "frames_per_execution": _per(len(sent), executions1 - executions0),
        "batch_formed": _per(queue1.queued_requests - queue0.queued_requests, queue1.engine_runs - queue0.engine_runs),
    }
    row["sustained"] = sustained(row)
    return row


class QueueCounts(NamedTuple):
    """The runtime's CPU queue so far (INFO MODULES, ai_runtime)."""

    busy_seconds: float
    engine_runs: int
    queued_requests: int


def queue_counts(client: redis.Redis) -> QueueCounts:
    info = client.info("modules")
    return QueueCounts(float(info["ai_queue_CPU_busy_seconds"]), int(info["ai_queue_CPU_engine_runs"]),
                       int(info["ai_queue_CPU_queued_requests"]))  # fmt: skip


def executions_triggered(client: redis.Redis) -> int:
    """Executions the StreamReader registrations have triggered so far (RG.DUMPREGISTRATIONS' numTriggered)."""
    found = registrations(client)
    return sum(int(data["numTriggered"]) for fields, data in found if fields["reader"] == b"StreamReader")


def _per(count: int, groups: int) -> float | None:
    return count / groups if groups > 0 else None


def achieved_rate(hits: int, first_hit: float, last_hit: float, offered: float) -> float:
    """Hits per second while they came: a pipeline that keeps up delivers at the offered rate.

    Counted from the first hit, not from the first frame sent: from the first frame, a constant
    latency read as lost throughput (300 ms in a 6 s window is 5 % "missing"), which the p99
    criterion already bounds. A pipeline falling behind still stretches the span and fails.
    """
    if hits < 2:
        return offered if hits else 0.0
    return (hits - 1) / max(last_hit - first_hit, 1e-9)


def _pipeline_stats(url: str) -> dict[str, str]:
    client = redis.Redis.from_url(url, socket_timeout=10, decode_responses=True)
    try:
        return dict(client.hgetall(STATS_PIPELINE_KEY))  # type: ignore[arg-type]
    finally:
        client.close()


def bench_settings(plan: Plan) -> Settings:
    """Settings of the benchmarked pipeline: code defaults only (no invoke.yaml, no environment), every frame a hit."""
    return load_settings(yaml_path=Path("/nonexistent.yaml"), environ={}, models={"name": plan.pipeline_model},
                         pipeline={"sample_every": 1, "threshold": 0.0, "target_classes": "0-999"})  # fmt: skip


def sweep(fractions: tuple[float, ...], refine: int, offer: Callable[[float], bool], tick: Tick) -> float:
    """Offer each fraction of alone until one is not sustained, then bisect below it `refine` times.

    Returns the highest fraction sustained (0.0 when none was). Every step the plan counts
    ticks once, offered or skipped, so the progress bar ends full.
    """
    held = 0.0
    for i, fraction in enumerate(fractions):
        if offer(fraction):
            held = fraction
            continue
        for _ in fractions[i + 1 :]:
            tick("pipeline: higher rates skipped")
        failed = fraction
        for _ in range(refine):
            middle = (held + failed) / 2
            held, failed = (middle, failed) if offer(middle) else (held, middle)
        return held
    for _ in range(refine):
        tick("pipeline: every rate sustained, nothing to refine")
    return held


def _sweep_pipeline(plan: Plan, settings: Settings, frame: bytes, alone: dict[str, Any], engine: DirectEngine,
                    tick: Tick) -> dict[str, Any]:  # fmt: skip
    """The offered rates through a fresh runtime, a window of the baseline after each."""
    from gearcam.loader import load

    alone_fps = float(alone["frames_per_s"])
    result: dict[str, Any] = {"model": plan.pipeline_model, "autobatch": settings.models.batchsize,
                              "frame_bytes": len(frame), "sustained_when": SUSTAINED, "alone": alone,
                              "rates": []}  # fmt: skip
    with backing_redis() as backing, runtime_process(backing.url) as runtime:
        url = f"redis://127.0.0.1:{runtime.port}"
        client = redis.Redis.from_url(url, socket_timeout=120)
        try:
            load(client, settings)
        finally:
            client.close()
        pids = [runtime.pid, redis_pid(backing.port)]

        def offer(fraction: float) -> bool:
            rate = round(fraction * alone_fps, 1)
            row = _offer(url, plan, rate, frame, pids)
            result["rates"].append(row)
            alone_window(engine, alone, plan.window_s)
            tick(f"pipeline {rate:g} frames/s")
            return bool(row["sustained"])

        sweep(plan.pipeline_fractions, plan.pipeline_refine, offer, tick)
        result["rates"].sort(key=lambda row: row["offered_fps"])
        result["stats"] = _pipeline_stats(url)
        workers = children(runtime.pid, b"gearcam.runtime.gears.worker")
        result["footprint"] = footprint(backing.url, runtime.pid, workers)
    return result


def run_pipeline(plan: Plan, tick: Tick) -> dict[str, Any]:
    """The pipeline section; "not measured" with the reason when the pipeline cannot run here."""
    if not plan.pipeline_fractions:
        return {"not_measured": "not measured: the plan offers no frame rates"}
    settings = bench_settings(plan)
    frame = camera_frame()
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gearcam-bench-")))
            (tmp / "frame.jpg").write_bytes(frame)
            engine = stack.enter_context(direct_engine(plan.pipeline_model, frame=tmp / "frame.jpg"))
            alone = decode_infer_alone(plan, engine, settings.models.batchsize)
            tick("decode + preprocess + inference alone")
            result = _sweep_pipeline(plan, settings, frame, alone, engine, tick)
    except Exception as exc:  # one section failing must not lose the rest of the run: report it
        logger.warning("the pipeline could not be measured: %s", exc)
        return {"not_measured": f"not measured: the pipeline did not run ({type(exc).__name__}: {exc})"}
    # Never above what was offered: hits arriving in bursts (a batch at a time) can span a little less.
    ok = [min(row["achieved_fps"], row["offered_fps"]) for row in result["rates"] if row["sustained"]]
    result["highest_sustained_fps"] = max(ok) if ok else None
    result["highest_sustained_offered_fps"] = max(
        (row["offered_fps"] for row in result["rates"] if row["sustained"]), default=None
    )
    result["highest_achieved_fps"] = max((row["achieved_fps"] for row in result["rates"]), default=None)
    alone["frames_per_s_around_sweep"] = statistics.median(alone["window_rates"])
    result["pipeline_vs_alone"] = ratio(result["highest_sustained_fps"], alone["frames_per_s_around_sweep"])
    return result
