"""Give tensor-sized buffers back to the kernel as soon as they are freed.

glibc's malloc serves a large request with its own mapping, unmapped on free, but only
until the first such free: then it raises its threshold (up to 32 MiB) and serves later
ones from the heap, which keeps what it frees. A runtime receiving batch-32 image tensors
(18 MiB each) then held one or two freed copies for good: its resident set moved between
253 and 269 MiB from run to run on the same load (lite0-onnx-int8, batch sweep to 32), and
a 4 GB device pays for the high mark. A fixed threshold keeps every buffer of 1 MiB or
more in its own mapping; the page faults that costs were not measurable beside the engine's
run (A/B at batch 4 and 16, docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import logging

__all__ = ["LARGE_BUFFER", "return_large_buffers"]

logger = logging.getLogger(__name__)

LARGE_BUFFER = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def return_large_buffers(threshold: int = LARGE_BUFFER) -> bool:
    """Have malloc map buffers of `threshold` bytes or more apart; False where the C library has no such knob."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not done:
        logger.debug("this C library ignores M_MMAP_THRESHOLD: freed tensors may stay resident")
    return done
