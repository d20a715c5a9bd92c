"""Figures from timed windows: medians, latency percentiles and ratios.

AIBench quotes the overall rate and latency quantiles of each run; here every rate is
the median of ``repeats`` windows, so one disturbed window (other work on the cores)
does not move the figure, and every comparison is a ratio of two figures of one run.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Measurement", "Window", "percentile", "ratio"]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks, as numpy's default."""
    if not values:
        raise ValueError("no values to take a percentile of")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either figure was not measured (or ``b`` is zero)."""
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass(frozen=True)
class Window:
    """One timed window: how many calls finished, each carrying ``batch`` items, in ``seconds``."""

    calls: int
    seconds: float
    batch: int

    @property
    def inferences(self) -> int:
        return self.calls * self.batch

    @property
    def rate(self) -> float:
        return self.inferences / self.seconds


@dataclass
class Measurement:
    """One figure: the windows it came from and every call's latency (ms)."""

    batch: int
    clients: int
    windows: list[Window]
    latencies_ms: list[float] = field(repr=False)

    @property
    def calls(self) -> int:
        return sum(w.calls for w in self.windows)

    @property
    def inferences(self) -> int:
        return sum(w.inferences for w in self.windows)

    @property
    def inferences_per_s(self) -> float:
        return statistics.median(w.rate for w in self.windows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "clients": self.clients,
            "calls": self.calls,
            "inferences": self.inferences,
            "seconds": sum(w.seconds for w in self.windows),
            "window_rates": [w.rate for w in self.windows],
            "inferences_per_s": self.inferences_per_s,
            "latency_ms": {
                **{f"p{q}": percentile(self.latencies_ms, q) for q in (50, 95, 99)},
                "mean": statistics.fmean(self.latencies_ms),  # comparable with AI.INFO's mean engine time
                "max": max(self.latencies_ms),  # bounds any one call's part (a queued run's wait)
            },
        }
