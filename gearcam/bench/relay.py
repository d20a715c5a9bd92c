"""Plain Redis commands through the runtime: XADD of camera-sized frames, relayed vs direct.

Everything a camera or a web page sends that is not AI.* or RG.* passes through the
runtime to the backing redis-server. This measures what that hop costs: 64 KB frames
XADDed one at a time (a camera) and in pipelines of 16, to the runtime and straight to
the same redis-server, in the same run. A bare forwarder (gearcam/bench/forwarder.py)
is measured too: the floor any relaying process sits on, so the report can tell the
hop's own cost from the runtime's work.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from gearcam.bench.client import LeanClient
from gearcam.bench.measure import measure
from gearcam.bench.plan import Plan
from gearcam.bench.procs import free_port, runtime_process, served_process
from gearcam.bench.stats import ratio
from gearcam.redis_server import EmbeddedRedis

__all__ = ["FRAME_BYTES", "PIPELINE_DEPTH", "RELAY_TICKS", "run_relay"]

FRAME_BYTES = 64 * 1024
PIPELINE_DEPTH = 16
RELAY_TICKS = 6  # figures: one at a time and pipelined, each direct, relayed and forwarded
Tick = Callable[[str], None]


def _xadd(client: LeanClient, depth: int) -> Callable[[], None]:
    frame = os.urandom(FRAME_BYTES)
    command = ("XADD", "bench:relay", "MAXLEN", "~", 1000, "*", "img", frame, "count", 1)

    def call() -> None:
        client.pipeline(*([command] * depth))

    return call


def run_relay(plan: Plan, tick: Tick) -> dict[str, Any]:
    """Frames/s of XADD direct, through the runtime and through a bare forwarder, one at a time and pipelined;
    ratios of the two relayed figures over direct."""
    rows = []
    with EmbeddedRedis(port=0) as backing, runtime_process(backing.tcp_url) as runtime:
        port = free_port()
        forwarder = [sys.executable, "-m", "gearcam.bench.forwarder", "--port", str(port)]
        with served_process([*forwarder, "--to-port", str(backing.port)], port, "the bare forwarder") as bare:
            for depth in (1, PIPELINE_DEPTH):
                figures = {}
                for where, to in (("direct", backing.port), ("relayed", runtime.port), ("forwarded", bare.port)):
                    client = LeanClient("127.0.0.1", to)
                    try:
                        measured = measure([_xadd(client, depth)], depth, plan.window_s, plan.repeats, plan.warmup_s)
                    finally:
                        client.close()
                    figures[where] = measured.to_dict()
                    tick(f"XADD {FRAME_BYTES // 1024} KB x{depth} {where}")
                rate = {where: figure["inferences_per_s"] for where, figure in figures.items()}
                rows.append({"pipeline": depth, **figures,
                             "relayed_vs_direct": ratio(rate["relayed"], rate["direct"]),
                             "forwarded_vs_direct": ratio(rate["forwarded"], rate["direct"])})  # fmt: skip
    return {"frame_bytes": FRAME_BYTES, "rows": rows}
