"""Figures from windows: percentiles as numpy computes them, ratios, and counts that add up."""

from __future__ import annotations

import numpy as np
import pytest

from gearcam.bench.stats import Measurement, Window, percentile, ratio


def test_percentile_matches_numpys_linear_interpolation() -> None:
    values = list(np.random.default_rng(3).exponential(5.0, 257))
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_ratio_is_none_when_either_side_was_not_measured() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(3.0, None) is None and ratio(3.0, 0.0) is None


def test_a_measurement_counts_inferences_as_calls_times_batch_and_quotes_the_median_window() -> None:
    windows = [Window(10, 1.0, 4), Window(30, 1.0, 4), Window(20, 2.0, 4)]
    m = Measurement(4, 1, windows, [1.0, 2.0, 3.0])
    out = m.to_dict()
    assert out["calls"] == 60 and out["inferences"] == 240
    assert out["window_rates"] == [40.0, 120.0, 40.0]
    assert out["inferences_per_s"] == 40.0
    assert out["latency_ms"] == {
        "p50": 2.0,
        "p95": pytest.approx(2.9),
        "p99": pytest.approx(2.98),
        "mean": 2.0,
        "max": 3.0,
    }


def test_the_engine_figures_are_read_from_ai_info_and_info_modules_and_absent_ones_stay_unknown() -> None:
    from gearcam.bench.serving import engine_runs, engine_time

    info = [b"key", b"m", b"type", b"MODEL", b"duration", 7500, b"samples", 3, b"calls", 3, b"errors", 0]
    assert engine_time(info) == {"runs": 3, "mean_ms": 2.5}
    assert engine_time([b"key", b"m", b"duration", 0, b"calls", 0]) == {"runs": 0, "mean_ms": None}
    modules = b"# ai_runtime\r\nai_queue_CPU_engine_runs:41\r\nai_queue_CPU_busy_seconds:1.5\r\n"
    assert engine_runs(modules, "CPU") == 41
    assert engine_runs(modules, "GPU:0") is None  # a device without a queue, or RedisAI itself


def test_the_mean_wait_in_the_queue_is_read_between_two_info_modules_replies() -> None:
    from gearcam.bench.serving import mean_wait_ms, queue_waiting

    before = queue_waiting(
        b"# ai_runtime\r\nai_queue_CPU_queued_requests:10\r\nai_queue_CPU_wait_seconds:0.5\r\n", "CPU"
    )
    after = queue_waiting(
        b"# ai_runtime\r\nai_queue_CPU_queued_requests:14\r\nai_queue_CPU_wait_seconds:0.9\r\n", "CPU"
    )
    assert before == (10, 0.5) and after == (14, 0.9)
    assert mean_wait_ms(before, after) == pytest.approx(100.0)
    assert mean_wait_ms(after, after) is None  # every run inline meanwhile: nothing waited
    assert queue_waiting(b"# ai_runtime\r\nai_queue_CPU_engine_runs:41\r\n", "CPU") is None  # RedisAI, or older
    assert mean_wait_ms(None, after) is None
