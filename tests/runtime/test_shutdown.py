"""SHUTDOWN through the runtime: its Redis shuts down as asked, and the runtime stops with it, as Redis with the modules.

Before, the backing Redis shut down and the runtime went on answering every client "cannot reach the
backing Redis" (under `invoke up`, a front for a Redis that was gone until Ctrl-C).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port
from tests.runtime.conftest import ROOT, Backing, Runtime


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Backing, Runtime]]:
    """A redis-server and a runtime of their own: the test may shut them down."""
    backing = Backing(free_port(), tmp_path)
    backing.start()
    runtime = Runtime(free_port(), backing.url)
    try:
        runtime.start()
        yield backing, runtime
    finally:
        runtime.stop()
        if backing.proc is not None and backing.proc.poll() is None:
            backing.stop()


def test_shutdown_save_stops_redis_then_the_runtime_and_keeps_the_data(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    client.set("shutdown:kept", "yes")
    client.execute_command("AI.TENSORSET", "shutdown:t", "FLOAT", 2, "VALUES", 1, 2)
    with socket.create_connection(("127.0.0.1", runtime.port), timeout=30) as raw:
        raw.sendall(b"SHUTDOWN SAVE\r\n")
        assert raw.recv(1024) == b""  # the connection ends without a reply, as Redis ends it
    assert backing.proc is not None and runtime.proc is not None
    assert backing.proc.wait(30) == 0
    assert runtime.proc.wait(30) == 0  # stopped as asked, not failed
    assert "SHUTDOWN: the backing Redis closed the link, shutting down; the gearcam runtime stops with it" in (
        runtime.output()
    )
    assert "Traceback" not in runtime.output()
    backing.start()  # the data was saved: the same redis-server reads it back, the tensor's record too
    again = Runtime(free_port(), backing.url)
    again.start()
    try:
        assert again.client().get("shutdown:kept") == b"yes"
        assert again.client().execute_command("AI.TENSORGET", "shutdown:t", "VALUES") == [b"1", b"2"]
    finally:
        again.stop()


def test_a_shutdown_redis_refuses_leaves_everything_running(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    admin = redis.Redis(port=backing.port)
    admin.acl_setuser("no-shutdown", enabled=True, passwords=["+pw"], commands=["+@all", "-shutdown"], keys=["*"])
    limited = redis.Redis(port=runtime.port, username="no-shutdown", password="pw", protocol=2)
    client = runtime.client()
    try:
        with pytest.raises(redis.ResponseError) as refused:
            limited.execute_command("SHUTDOWN")
        assert str(refused.value) == "this user has no permissions to run the 'shutdown' command"
        with pytest.raises(redis.ResponseError) as none:
            client.execute_command("SHUTDOWN", "ABORT")  # Redis' own answer: no shutdown to abort
        assert "shutdown" in str(none.value).lower()
        assert client.ping() is True
        assert admin.ping() is True
        assert runtime.proc is not None and runtime.proc.poll() is None
    finally:
        limited.close()
        client.close()
        admin.close()


_HUNG_STOP = """
import asyncio, logging, sys
from gearcam.runtime import cli

class Hung:
    async def stop(self):
        await asyncio.Event().wait()  # a stop that never ends

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
print("stopped" if asyncio.run(cli._stop(Hung(), 0.5)) else "hung", flush=True)
"""


def test_a_stop_that_hangs_says_what_it_waits_for_and_ends_the_process() -> None:
    """The runtime's stop is bounded (cli._stop): past its limit the log names every task's await and every
    thread, and `_serve` then stops the embedded redis-server and ends the process with status 1, rather than
    running on with its ports closed."""
    done = subprocess.run([sys.executable, "-c", _HUNG_STOP], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.strip() == "hung"
    assert "the gearcam runtime did not stop within 0.5 s; exiting anyway" in done.stderr
    assert "stop (<string>:7) -> wait (locks.py:" in done.stderr and "thread MainThread" in done.stderr
