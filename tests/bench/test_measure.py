"""Timed windows around real work, from one and from several clients."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from gearcam.bench.measure import WARMUP_CALLS, CallMeter, measure, measure_interleaved


def _work() -> None:
    a = np.ones((64, 64), np.float32)
    a @ a


def test_one_client_gets_every_window_and_a_latency_per_call() -> None:
    m = measure([_work], batch=3, window_s=0.02, repeats=3)
    assert len(m.windows) == 3
    assert all(w.calls >= 1 and w.seconds > 0 for w in m.windows)
    assert len(m.latencies_ms) == m.calls
    assert m.inferences == 3 * m.calls
    assert m.inferences_per_s > 0


def test_several_clients_each_record_their_calls() -> None:
    seen: list[int] = []

    def client(i: int) -> Callable[[], None]:
        def call() -> None:
            seen.append(i)
            _work()

        return call

    m = measure([client(0), client(1), client(2)], batch=1, window_s=0.02, repeats=2)
    assert m.clients == 3
    assert set(seen) == {0, 1, 2}
    assert m.calls + 3 * WARMUP_CALLS == len(seen)  # plus each client's untimed warm-up calls


def test_an_error_in_a_client_reaches_the_caller() -> None:
    def broken() -> None:
        raise ConnectionError("server gone")

    with pytest.raises(ConnectionError, match="server gone"):
        measure([broken, broken], batch=1, window_s=0.01, repeats=1)


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one client"):
        measure([], batch=1, window_s=0.1, repeats=1)


class _Recorder:
    """A meter that notes when it was warmed and measured, and does real work in each window."""

    clients = 1

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def warm(self, seconds: float) -> None:
        self.log.append(f"warm {self.name}")

    def window(self, seconds: float) -> tuple[int, float, list[float]]:
        self.log.append(self.name)
        _work()
        return 2, seconds, [seconds * 500.0, seconds * 500.0]


def test_interleaved_figures_take_turns_and_rotate_who_goes_first() -> None:
    log: list[str] = []
    meters = {name: _Recorder(name, log) for name in ("a", "b", "c")}
    figures = measure_interleaved(meters, batch=4, window_s=0.01, repeats=4, on_warm=lambda: log.append("warm"))
    assert log[:4] == ["warm a", "warm b", "warm c", "warm"]  # every meter warm before the counters reset
    assert log[4:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    for m in figures.values():
        assert len(m.windows) == 4 and m.calls == 8 and m.inferences == 32
        assert m.inferences_per_s == pytest.approx(8 / 0.01)


def test_a_real_client_measured_in_turns_matches_its_calls() -> None:
    counted = {"fast": 0, "slow": 0}

    def fast() -> None:
        counted["fast"] += 1

    def slow() -> None:
        counted["slow"] += 1
        _work()
        _work()

    figures = measure_interleaved({"fast": CallMeter([fast]), "slow": CallMeter([slow])}, 1, 0.02, 3)
    assert figures["fast"].calls + WARMUP_CALLS == counted["fast"]
    assert figures["slow"].calls + WARMUP_CALLS == counted["slow"]
    assert figures["fast"].inferences_per_s > figures["slow"].inferences_per_s
