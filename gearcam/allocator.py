"""glibc malloc thresholds for the processes that handle frames one after another.

glibc serves a block above 128 KiB with a mapping of its own (raising that threshold as such
blocks are freed) and hands its heap's top back to the kernel once twice that is free there.
A process that decodes a 640x480 frame, resizes it, and pickles a 602 KB tensor or encodes a
JPEG for every frame then gets most of those buffers from fresh pages the kernel must zero
and map: 149 page faults for every tensor a Gears worker pickled, 560-620 for every frame the
sample camera encoded. Fixed thresholds keep such buffers in the heap for the next frame
(docs/gears.md, "The worker's allocator", has the measurements).

The runtime is left as glibc sets it up, as is any process that loads a model before its first
frame: the loading raises glibc's thresholds far enough, the buffers a client's tensor arrives
in are reused already, and the same thresholds changed the runtime's CPU a frame within the noise.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_frame_buffers"]

MMAP_THRESHOLD = 4 * 1024 * 1024  # blocks up to this size come from the heap: a batch of 4 frames' tensors
TRIM_THRESHOLD = 16 * 1024 * 1024  # this much may stay free at the heap's top for the next frames

_M_TRIM_THRESHOLD = -1  # mallopt's parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def keep_frame_buffers() -> bool:
    """Fix this process' malloc thresholds (see the module's docstring); whether they were set.

    Not where GLIBC_TUNABLES is set (the operator's choice stands) or the C library is not glibc.
    """
    if "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # musl's mallopt does nothing and returns 0, as glibc does for a value it refuses.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
