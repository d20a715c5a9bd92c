"""Damaged copies of a file's bytes, for the fuzzes of the readers of untrusted files (rdbfile, aoffile)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = ["FUZZ", "damaged"]

# Derandomized, so CI runs the same examples each time; no deadline (CI machines are slow and noisy).
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def damaged(data: bytes, keep: int = 0) -> st.SearchStrategy[bytes]:
    """`data` with up to 4 bytes changed, then up to 12 bytes inserted somewhere; the first `keep` bytes
    (a header the damage should get past) are left alone."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        copy = bytearray(data)
        for at, value in draw(st.lists(st.tuples(st.integers(keep, len(data) - 1), st.integers(0, 255)), max_size=4)):
            copy[at] = value
        cut = draw(st.integers(keep, len(data)))
        return bytes(copy[:cut] + draw(st.binary(max_size=12)) + copy[cut:])

    return build()
