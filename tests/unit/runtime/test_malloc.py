"""gearcam.runtime.malloc: freed tensors go back to the kernel."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from gearcam.runtime.malloc import LARGE_BUFFER, return_large_buffers

_GLIBC = platform.libc_ver()[0] == "glibc"

# In a fresh interpreter: a freed 8 MiB buffer raises glibc's dynamic threshold, so the next
# ones come from the heap and stay resident once freed; with the fixed threshold they do not.
_PROBE = """
import sys
from gearcam.runtime.malloc import return_large_buffers
if sys.argv[1] == "fixed":
    assert return_large_buffers()
def resident_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
first = bytearray(16 << 20)  # zeroed, so resident; its free raises glibc's dynamic threshold
del first
before = resident_mb()
held, kept = [], []
for _ in range(8):
    held.append(bytearray(8 << 20))  # 64 MiB in all, zeroed
    kept.append(bytearray(4096))  # what else the process keeps, between them on the heap
del held
print(resident_mb() - before)
"""


@pytest.mark.skipif(not _GLIBC, reason="mallopt(M_MMAP_THRESHOLD) is glibc's")
def test_the_threshold_is_set_on_glibc() -> None:
    assert return_large_buffers(LARGE_BUFFER)


@pytest.mark.skipif(not _GLIBC, reason="mallopt(M_MMAP_THRESHOLD) is glibc's")
def test_freed_tensor_sized_buffers_do_not_stay_resident() -> None:
    def kept_mb(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
        return float(out.stdout)

    assert kept_mb("fixed") < 4  # all eight given back
    assert kept_mb("dynamic") > 32  # the heap kept them: the test can tell the difference
