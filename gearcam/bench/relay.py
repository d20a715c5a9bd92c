"""Plain Redis commands through the runtime: XADD of camera-sized frames, relayed vs direct.

Everything a camera or a web page sends that is not AI.* or RG.* passes through the
runtime to the backing redis-server. This measures what that hop costs: 64 KB frames
XADDed one at a time (a camera) and in pipelines of 16, and 400 KB frames (a 1080p JPEG,
larger than one read) one at a time, to the runtime and straight to the same
redis-server, in the same run. A bare forwarder (gearcam/bench/forwarder.py)
is measured too: the floor any relaying process sits on, so the report can tell the
hop's own cost from the runtime's work. The three take their windows in turns
(measure_interleaved), so each ratio compares the same seconds of the machine.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any

from gearcam.bench.client import LeanClient
from gearcam.bench.measure import CallMeter, Meter, measure_interleaved
from gearcam.bench.plan import Plan
from gearcam.bench.procs import backing_redis, free_port, runtime_process, served_process
from gearcam.bench.stats import ratio

__all__ = ["FRAME_BYTES", "LARGE_FRAME_BYTES", "PIPELINE_DEPTH", "RELAY_TICKS", "run_relay"]

FRAME_BYTES = 64 * 1024
LARGE_FRAME_BYTES = 400 * 1024  # a 1080p JPEG: more than one read of the runtime's socket
PIPELINE_DEPTH = 16
# (frame bytes, frames per call) measured, each direct, relayed and forwarded
_CASES = ((FRAME_BYTES, 1), (FRAME_BYTES, PIPELINE_DEPTH), (LARGE_FRAME_BYTES, 1))
RELAY_TICKS = 3 * len(_CASES)
Tick = Callable[[str], None]


def _xadd(client: LeanClient, size: int, depth: int) -> Callable[[], None]:
    frame = os.urandom(size)
    command = ("XADD", "bench:relay", "MAXLEN", "~", 1000, "*", "img", frame, "count", 1)

    def call() -> None:
        client.pipeline(*([command] * depth))

    return call


def run_relay(plan: Plan, tick: Tick) -> dict[str, Any]:
    """Frames/s of XADD direct, through the runtime and through a bare forwarder, for each frame size and
    pipeline depth; ratios of the two relayed figures over direct."""
    rows = []
    with backing_redis() as backing, runtime_process(backing.url) as runtime:
        port = free_port()
        forwarder = [sys.executable, "-m", "gearcam.bench.forwarder", "--port", str(port)]
        with served_process([*forwarder, "--to-unix", str(backing.unixsocket)], port, "the bare forwarder") as bare:
            for size, depth in _CASES:
                with contextlib.ExitStack() as stack:
                    meters: dict[str, Meter] = {}
                    for where, to in (("direct", backing.port), ("relayed", runtime.port), ("forwarded", bare.port)):
                        client = stack.enter_context(contextlib.closing(LeanClient("127.0.0.1", to)))
                        meters[where] = CallMeter([_xadd(client, size, depth)])
                    measured = measure_interleaved(meters, depth, plan.window_s, plan.repeats, plan.warmup_s)
                figures = {where: m.to_dict() for where, m in measured.items()}
                for where in figures:
                    tick(f"XADD {size // 1024} KB x{depth} {where}")
                rate = {where: figure["inferences_per_s"] for where, figure in figures.items()}
                rows.append({"frame_bytes": size, "pipeline": depth, **figures,
                             "relayed_vs_direct": ratio(rate["relayed"], rate["direct"]),
                             "forwarded_vs_direct": ratio(rate["forwarded"], rate["direct"])})  # fmt: skip
    return {"frame_bytes": FRAME_BYTES, "rows": rows}
