"""Timed windows around real work, from one and from several clients."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from gearcam.bench.measure import WARMUP_CALLS, measure


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
