"""Memory and CPU from /proc, for this very process (Linux)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gearcam.bench.procs import cpu_seconds, machine_cpu_seconds, minor_faults, peak_rss_mb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


def _figures_of_a_python_that_touches(megabytes: int) -> tuple[float, int]:
    """The peak RSS and minor faults of a fresh interpreter that touched `megabytes` (this process's own
    figures depend on earlier tests)."""
    code = (
        "import sys\n"
        f"block = bytearray({megabytes} * 1024 * 1024)\n"
        "for i in range(0, len(block), 4096):\n"
        "    block[i] = 1\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        peak, faults = peak_rss_mb(proc.pid), minor_faults(proc.pid)
        assert peak is not None and faults is not None
        return peak, faults
    finally:
        proc.communicate("", timeout=30)


def test_the_peak_resident_set_and_the_page_faults_grow_with_what_the_process_touched() -> None:
    small, small_faults = _figures_of_a_python_that_touches(0)
    large, large_faults = _figures_of_a_python_that_touches(64)
    assert small > 3 and large >= small + 48
    # 64 MiB touched a page at a time: at least one fault per fresh 4 KiB page (fewer only with huge pages).
    pages = 64 * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE")
    assert large_faults - small_faults >= pages * 0.9 or _huge_pages_always()


def _huge_pages_always() -> bool:
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


def test_cpu_seconds_count_this_process_work_and_the_machine_busy_share_is_bounded() -> None:
    start, machine = cpu_seconds(os.getpid()), machine_cpu_seconds()
    assert start is not None and machine is not None
    x = 0
    for i in range(3_000_000):
        x += i * i
    end, machine_end = cpu_seconds(os.getpid()), machine_cpu_seconds()
    assert end is not None and machine_end is not None
    assert end > start
    # Both come from the same clock ticks; on a fully busy machine they are equal but for float rounding.
    assert 0 <= machine_end[0] - machine[0] <= machine_end[1] - machine[1] + 1e-6


def test_a_process_that_is_gone_has_no_figures() -> None:
    gone = 2**22 + 12345
    assert peak_rss_mb(gone) is None and cpu_seconds(gone) is None and minor_faults(gone) is None
