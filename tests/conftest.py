"""Helpers every suite may use: free loopback ports and one embedded Redis per session.

Suite-specific fixtures live in the suite's own conftest.py (tests/runtime/conftest.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from gearcam.procfs import stat_fields
from gearcam.redis_server import EmbeddedRedis

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # the shared data folder, next to the repository
SAMPLES = ROOT / "gearcam" / "camera" / "samples"


_LOGS: list[Path] = []  # this run's folder for the servers' logs, once the session fixture made it


@pytest.fixture(scope="session", autouse=True)
def _server_logs(tmp_path_factory: pytest.TempPathFactory) -> None:
    _LOGS.append(tmp_path_factory.mktemp("logs"))


def log_file(prefix: str) -> Path:
    """A new log file for a server a test starts, under pytest's temporary folder (it keeps the last three runs').

    Not /tmp: a run starts some 1,500 servers, whose logs piled up there on a developer's machine.
    """
    folder = _LOGS[-1] if _LOGS else None
    return Path(tempfile.mkstemp(prefix=prefix, suffix=".log", dir=folder)[1])


def data_file(name: str) -> Path:
    """A test picture from ../shared/data (relative to the repository root), else the bundled sample copy."""
    shared = SHARED_DATA / name
    return shared if shared.exists() else SAMPLES / name


def wait_for(check: Callable[[], T], what: str = "condition", timeout: float = 20.0, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something true; fail after ``timeout`` s naming ``what`` (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}; last value {value!r}")
        time.sleep(every)


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that this test run has not handed out before.

    The kernel may give one free port to two binds in a row; a redis-server and a runtime started on
    it would have one fail while the other answers for both.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def free_ports(count: int) -> list[int]:
    """`count` free ports, for services configured together."""
    return [free_port() for _ in range(count)]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-url", default=None, help="run the conformance suites against this server (e.g. one with the modules)"
    )


@pytest.fixture(scope="session")
def embedded_redis() -> Iterator[EmbeddedRedis]:
    """One real redis-server for the session, on a free loopback port; tests must not depend on its keys."""
    with EmbeddedRedis() as server:
        yield server


# An owner that starts its server in `dir` on `port`, writes a key, prints the server's pid and waits to be killed.
_OWNER = """
import sys, time
from pathlib import Path
from gearcam.procfs import stat_fields
from gearcam.redis_server import EmbeddedRedis
server = EmbeddedRedis(int(sys.argv[2]), dir=Path(sys.argv[1]), save_on_stop=True)
server.start()
client = server.client()
client.set("kept", "yes")
print(client.info("server")["process_id"], flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


@contextmanager
def left_running_redis(directory: Path, port: int) -> Iterator[int]:
    """The pid of a redis-server an EmbeddedRedis started in `directory` on `port` (key `kept` written, save
    points set) whose owner was then killed with SIGKILL, as the OOM killer would: the server runs on.
    Killed at the end if it still runs, so no test leaves one behind."""
    with subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(directory), str(port)], stdout=subprocess.PIPE, text=True
    ) as owner:
        assert owner.stdout is not None
        left = int(owner.stdout.readline())
        owner.kill()
    try:
        assert alive(left)
        yield left
    finally:
        if alive(left):
            os.kill(left, signal.SIGKILL)
