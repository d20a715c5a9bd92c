"""Run one kind of call for timed windows, from one or several clients at once.

A call is one request as a client sees it (a tensor batch in, the result back); its
latency is the client's wall time, as AIBench measures the TENSORSET+MODELRUN+TENSORGET
trio. Several clients are threads, each with its own connection: they block in socket
calls, which release the GIL, so the server (another process) sees real concurrency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from gearcam.bench.stats import Measurement, Window

__all__ = ["WARMUP_CALLS", "Call", "measure"]

Call = Callable[[], None]
# Untimed calls per client before the first window: TorchScript's profiling executor
# optimises a graph only after its first runs, and engines allocate on the first calls.
WARMUP_CALLS = 5


def _client_loop(call: Call, deadline: float, min_calls: int, latencies: list[float],
                 errors: list[BaseException]) -> None:  # fmt: skip
    try:
        while True:
            started = time.perf_counter()
            call()
            ended = time.perf_counter()
            latencies.append((ended - started) * 1000.0)
            if ended >= deadline and len(latencies) >= min_calls:
                return
    except BaseException as exc:  # handed to the measuring thread, which re-raises it
        errors.append(exc)


def _window(calls: Sequence[Call], seconds: float, min_calls: int = 1) -> tuple[int, float, list[float]]:
    """Every client calls until ``seconds`` passed and it made ``min_calls`` (finishing the call in flight)."""
    per_client: list[list[float]] = [[] for _ in calls]
    errors: list[BaseException] = []
    started = time.perf_counter()
    deadline = started + seconds
    if len(calls) == 1:
        _client_loop(calls[0], deadline, min_calls, per_client[0], errors)
    else:
        threads = [
            threading.Thread(target=_client_loop, args=(call, deadline, min_calls, lat, errors), daemon=True)
            for call, lat in zip(calls, per_client, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    latencies = [ms for lat in per_client for ms in lat]
    return len(latencies), elapsed, latencies


def measure(calls: Sequence[Call], batch: int, window_s: float, repeats: int, warmup_s: float = 0.0,
            on_warm: Callable[[], None] | None = None) -> Measurement:  # fmt: skip
    """``repeats`` windows of ``window_s`` seconds with one client per entry of ``calls``.

    Every client first calls untimed for ``warmup_s`` seconds and at least ``WARMUP_CALLS`` times;
    ``on_warm`` is called then, before the first window (e.g. to reset the server's counters).
    """
    if not calls or repeats < 1 or window_s <= 0:
        raise ValueError("measure needs at least one client, one repeat and a positive window")
    _window(calls, warmup_s, WARMUP_CALLS)
    if on_warm is not None:
        on_warm()
    windows: list[Window] = []
    latencies: list[float] = []
    for _ in range(repeats):
        count, elapsed, lat = _window(calls, window_s)
        windows.append(Window(count, elapsed, batch))
        latencies.extend(lat)
    return Measurement(batch, len(calls), windows, latencies)
