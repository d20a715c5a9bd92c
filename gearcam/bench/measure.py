"""Run one kind of call for timed windows, from one or several clients at once.

A call is one request as a client sees it (a tensor batch in, the result back); its
latency is the client's wall time, as AIBench measures the TENSORSET+MODELRUN+TENSORGET
trio. Several clients are threads, each with its own connection: they block in socket
calls, which release the GIL, so the server (another process) sees real concurrency.

Figures that are compared with each other (the runtime, the direct engine and the HTTP
server at one batch; auto-batching off and on; XADD direct, relayed and forwarded) are
measured *interleaved*: one window of each in turn, the order rotated every round, so that
a ratio compares the same minutes of a machine whose speed swings (seen here: the same
TorchScript call at 12 ms, then 17 ms a minute later) instead of two minutes far apart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from gearcam.bench.stats import Measurement, Window

__all__ = [
    "WARMUP_CALLS",
    "Call",
    "CallMeter",
    "Meter",
    "WindowResult",
    "measure",
    "measure_interleaved",
    "measure_meter",
]

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


WindowResult = tuple[int, float, list[float]]  # calls finished, seconds elapsed, each call's latency (ms)


class Meter(Protocol):
    """Something measured in windows: clients in this process (`CallMeter`) or a process measuring
    itself (the direct engine, gearcam.bench.direct), so that a window of each can take turns."""

    clients: int

    def warm(self, seconds: float) -> None: ...

    def window(self, seconds: float) -> WindowResult: ...


class CallMeter:
    """One client per entry of ``calls``, in this process."""

    def __init__(self, calls: Sequence[Call]) -> None:
        if not calls:
            raise ValueError("measure needs at least one client, one repeat and a positive window")
        self.calls = calls
        self.clients = len(calls)

    def warm(self, seconds: float) -> None:
        _window(self.calls, seconds, WARMUP_CALLS)

    def window(self, seconds: float) -> WindowResult:
        return _window(self.calls, seconds)


def _window(calls: Sequence[Call], seconds: float, min_calls: int = 1) -> WindowResult:
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
    return measure_meter(CallMeter(calls), batch, window_s, repeats, warmup_s, on_warm)


def measure_meter(meter: Meter, batch: int, window_s: float, repeats: int, warmup_s: float = 0.0,
                  on_warm: Callable[[], None] | None = None) -> Measurement:  # fmt: skip
    """One meter's figure: `measure_interleaved` with nothing to take turns with."""
    return measure_interleaved({"": meter}, batch, window_s, repeats, warmup_s, on_warm)[""]


def measure_interleaved(
    meters: Mapping[str, Meter],
    batch: int,
    window_s: float,
    repeats: int,
    warmup_s: float = 0.0,
    on_warm: Callable[[], None] | None = None,
) -> dict[str, Measurement]:
    """A figure for every meter, its ``repeats`` windows taken in turns with the others' windows.

    Round ``i`` starts at meter ``i`` (mod their number), so each meter takes every place in the
    order in turn. Every meter is warmed first (``warmup_s``, and ``WARMUP_CALLS`` calls a
    client), then ``on_warm`` is called once, before the first window.
    """
    if not meters or repeats < 1 or window_s <= 0:
        raise ValueError("measure needs at least one client, one repeat and a positive window")
    for meter in meters.values():
        meter.warm(warmup_s)
    if on_warm is not None:
        on_warm()
    names = list(meters)
    windows: dict[str, list[Window]] = {name: [] for name in names}
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for k in range(len(names)):
            name = names[(round_ + k) % len(names)]
            count, elapsed, lat = meters[name].window(window_s)
            windows[name].append(Window(count, elapsed, batch))
            latencies[name].extend(lat)
    return {name: Measurement(batch, meters[name].clients, windows[name], latencies[name]) for name in names}
