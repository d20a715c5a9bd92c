"""What TLS costs: the same calls over the runtime's TLS port and its plain port, beside redis-server's own.

Cameras on other machines reach an edge node over TLS (docs/runtime.md, TLS). Each call is
measured four ways, in turns (measure_interleaved): the runtime's plain port and its TLS port,
and the backing redis-server's plain port and TLS port, so the report can set what TLS costs the
runtime beside what it costs Redis in the same seconds. Client certificates are shown, as both
want them by default. Cases: PING (a round trip), XADD of a 64 KB frame (a camera) and GET of
1 MB (a large reply, encrypted by the server).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gearcam.bench.certs import make_pair
from gearcam.bench.client import LeanClient
from gearcam.bench.measure import CallMeter, Meter, measure_interleaved
from gearcam.bench.plan import Plan
from gearcam.bench.procs import free_port, runtime_process
from gearcam.bench.stats import ratio
from gearcam.redis_server import EmbeddedRedis

__all__ = ["TLS_TICKS", "run_tls"]

_LARGE = 1024 * 1024
_CASES: dict[str, tuple[Any, ...]] = {
    "PING": ("PING",),
    "XADD 64 KB": ("XADD", "bench:tls", "MAXLEN", "~", 1000, "*", "img", os.urandom(64 * 1024)),
    "GET 1 MB": ("GET", "bench:tls:large"),
}
_WAYS = ("runtime", "runtime TLS", "redis", "redis TLS")
TLS_TICKS = len(_CASES) * len(_WAYS)
Tick = Callable[[str], None]


def _call(client: LeanClient, command: tuple[Any, ...]) -> Callable[[], None]:
    def call() -> None:
        client.pipeline(command)

    return call


def run_tls(plan: Plan, tick: Tick) -> dict[str, Any]:
    """Calls/s of each case over the four ports; TLS / plain for the runtime and for redis-server."""
    with tempfile.TemporaryDirectory(prefix="gearcam-bench-tls-") as folder:
        pair = make_pair(Path(folder))
        files = {"tls-cert-file": str(pair.server_cert), "tls-key-file": str(pair.server_key),
                 "tls-ca-cert-file": str(pair.ca)}  # fmt: skip
        redis_tls, runtime_tls = free_port(), free_port()
        context = ssl.create_default_context(cafile=str(pair.ca))
        context.load_cert_chain(str(pair.client_cert), str(pair.client_key))
        flags = [word for name, value in files.items() for word in (f"--{name}", value)]
        backing = EmbeddedRedis(port=0, unixsocket=True, config={"tls-port": str(redis_tls), **files})
        with (
            backing,
            runtime_process(backing.url, "--tls-port", str(runtime_tls), *flags, also=(runtime_tls,)) as runtime,
        ):
            ports = {"runtime": (runtime.port, None), "runtime TLS": (runtime_tls, context),
                     "redis": (backing.port, None), "redis TLS": (redis_tls, context)}  # fmt: skip
            rows = []
            for case, command in _CASES.items():
                with contextlib.ExitStack() as stack:
                    meters: dict[str, Meter] = {}
                    for way, (port, tls) in ports.items():
                        client = stack.enter_context(contextlib.closing(LeanClient("127.0.0.1", port, tls=tls)))
                        if case == "GET 1 MB":
                            client.pipeline(("SET", "bench:tls:large", os.urandom(_LARGE)))
                        meters[way] = CallMeter([_call(client, command)])
                    measured = measure_interleaved(meters, 1, plan.window_s, plan.repeats, plan.warmup_s)
                figures = {way: m.to_dict() for way, m in measured.items()}
                for way in figures:
                    tick(f"{case} {way}")
                rate = {way: figure["inferences_per_s"] for way, figure in figures.items()}
                rows.append({"call": case, **figures,
                             "runtime_tls_vs_plain": ratio(rate["runtime TLS"], rate["runtime"]),
                             "redis_tls_vs_plain": ratio(rate["redis TLS"], rate["redis"])})  # fmt: skip
    return {"rows": rows}
