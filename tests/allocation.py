"""Page faults of a frame's worth of allocations, counted in a process of its own (gearcam/allocator.py).

`FAULTS` defines `pickle_faults()`: the faults of the calling thread while it pickles 100
model-run requests carrying one frame's tensor (602 KB), as a Gears worker sends them to the
runtime, after 5 to warm up; about 149 a tensor on glibc's own thresholds, none on gearcam's.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

__all__ = ["FAULTS", "faults_in_a_process", "need_glibc"]

FAULTS = textwrap.dedent("""\
    import os, pickle, resource
    def pickle_faults(_=None):
        message = ("req", 1, "ai.model_run", ("m", [("x", "FLOAT", [1, 224, 224, 3], os.urandom(602112))], [], True))
        for _ in range(5):
            pickle.dumps(message, protocol=5)
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        for _ in range(100):
            pickle.dumps(message, protocol=5)
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
""")


def need_glibc() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip(f"the thresholds are glibc's; this Python runs on {platform.libc_ver()[0] or 'another libc'}")


def faults_in_a_process(before: str = "", python: str = sys.executable, env: dict[str, str] | None = None) -> int:
    """`pickle_faults()` in a fresh `python` that first runs `before`; glibc's own thresholds unless it sets them."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    code = f"{before}\n{FAULTS}\nprint(pickle_faults())"
    done = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout.split()[-1])
