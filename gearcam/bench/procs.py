"""The processes a benchmark measures: the runtime and the HTTP baseline, each fresh per backend.

Peak memory is the kernel's high-water mark of the process' resident set (``VmHWM`` in
``/proc/<pid>/status``), so each backend gets its own process: a second engine loaded
into the same process would inherit the first one's peak. CPU time comes from
``/proc/<pid>/stat`` (user + system clock ticks), and so do minor page faults: the pages a
process was given fresh by the kernel, each zeroed and mapped on first touch.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gearcam.config import PROJECT_ROOT
from gearcam.procfs import stat_fields
from gearcam.redis_server import EmbeddedRedis

__all__ = [
    "Child",
    "rss_mb",
    "stop_process",
    "child_env",
    "cpu_seconds",
    "free_port",
    "machine_cpu_seconds",
    "minor_faults",
    "peak_rss_mb",
    "redis_pid",
    "runtime_process",
    "served_process",
    "wait_for",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def child_env() -> dict[str, str]:
    """The environment for the processes the benchmark starts: TensorFlow's start-up chatter silenced."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float | None:
    """The process' peak resident memory in MiB, or None where /proc does not say (not Linux)."""
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float | None:
    """The process' resident memory now, in MiB (None where /proc does not say)."""
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used so far, or None without /proc."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (14, 15)


def minor_faults(pid: int) -> int | None:
    """Minor page faults of the process so far (`minflt`, field 10 of stat), or None without /proc.

    Each is a page the kernel zeroed and mapped on first touch: a server that is given its
    memory back and asks again for every request pays them on every request.
    """
    fields = stat_fields(pid)
    return None if fields is None else int(fields[7])


def children(pid: int, marker: bytes) -> list[int]:
    """Pids of `pid`'s child processes whose command line contains `marker` (the runtime's Gears workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def redis_pid(port: int) -> int:
    """The pid of the redis-server on ``port`` (from INFO), to read its memory and CPU."""
    import redis

    client = redis.Redis(port=port, socket_timeout=10)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, summed over cores; None without /proc."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields) - idle) / _TICKS, sum(fields) / _TICKS


@dataclass(frozen=True)
class Child:
    """A started server: where it listens and its pid (for memory and CPU)."""

    port: int
    pid: int


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    """Poll ``ready`` until it is true; fail naming ``what`` if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it answered; see its output above")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer within {timeout:g}s")
        time.sleep(0.05)


@contextmanager
def served_process(
    command: list[str], port: int, what: str, timeout: float = 120.0, also: Sequence[int] = ()
) -> Iterator[Child]:
    """Run ``command`` (which listens on ``port``), yield once it accepts connections, stop it after.

    ``also``: other ports it listens on, waited for too (the runtime binds its TLS port after
    its plain one, so a client that finds the plain port up may be early for the TLS port)."""
    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env())
    try:
        wait_for(lambda: all(_can_connect(p) for p in (port, *also)), proc, what, timeout)
        yield Child(port, proc.pid)
    finally:
        stop_process(proc, 30)


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextmanager
def runtime_process(backing_url: str, *flags: str, also: Sequence[int] = ()) -> Iterator[Child]:
    """A fresh ``python -m gearcam.runtime`` in front of ``backing_url`` (``also``: see served_process)."""
    port = free_port()
    command = [sys.executable, "-m", "gearcam.runtime", "--redis-url", backing_url, "--port", str(port),
               "--log-level", "WARNING", *flags]  # fmt: skip
    with served_process(command, port, "the gearcam runtime", also=also) as child:
        yield child


def backing_redis() -> EmbeddedRedis:
    """The runtime's backing redis-server as `invoke up` starts it: reached over a unix socket
    (`url`), with TCP on a free port for the baselines that talk to Redis directly (`port`)."""
    return EmbeddedRedis(port=0, unixsocket=True)
