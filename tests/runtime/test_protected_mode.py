"""Protected mode seen from another address (issue 14, item 3).

A private network namespace holds the backing redis-server, the runtime (listening on 0.0.0.0) and
the clients; 10.254.254.1 is added to its loopback interface, so a client bound to it is "another
host" to the runtime while no packet leaves this machine. Needs root and iproute2 (Debian's `ip`);
without them the decision and the reply are still covered by tests/unit/runtime/test_protected.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import pytest

from tests.runtime.conftest import ROOT

REMOTE = "10.254.254.1"
_CLIENT = """
import socket, sys
source, port, payload = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
sock = socket.socket()
sock.settimeout(2)
sock.bind((source, 0))
sock.connect(("127.0.0.1" if source.startswith("127.") else source, port))
sock.sendall(payload)
out = b""
try:
    while data := sock.recv(65536):
        out += data
    out += b"<closed>"
except (TimeoutError, ConnectionResetError):
    pass
sys.stdout.write(out.hex())
"""


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *command], capture_output=True, text=True, timeout=30)

    def start(self, *command: str) -> None:
        log = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = ("ip", "netns", "exec", self.name, *command)
        self.procs.append((subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log), log))

    def exchange(self, source: str, port: int, payload: bytes) -> bytes:
        result = self.run(sys.executable, "-c", _CLIENT, source, str(port), payload.hex())
        return bytes.fromhex(result.stdout) if result.returncode == 0 else b""

    def wait_ready(self, port: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.exchange("127.0.0.1", port, b"PING\r\n"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"nothing answered on port {port} in namespace {self.name}:\n{self.output()}")

    def stop(self) -> None:
        for proc, log in reversed(self.procs):
            proc.terminate()
            proc.wait(20)
            log.close()
        self.procs.clear()

    def output(self) -> str:
        """What the processes started so far wrote (for failure messages)."""
        texts = []
        for _, log in self.procs:
            log.seek(0)
            texts.append(log.read().decode(errors="replace"))
        return "\n".join(texts)


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 (apt-get install iproute2) to build a private network namespace")
    name = f"gearcam-test-{os.getpid()}"
    created = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
    try:
        space = Namespace(name)
        assert space.run("ip", "link", "set", "lo", "up").returncode == 0
        assert space.run("ip", "addr", "add", f"{REMOTE}/32", "dev", "lo").returncode == 0
        yield space
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _serve(space: Namespace, backing_args: list[str], runtime_args: list[str], url: str = "") -> int:
    """Start a redis-server (6390) and a runtime on 0.0.0.0 (6391) in the namespace; the runtime's port."""
    space.stop()
    space.start("redis-server", "--port", "6390", "--bind", "127.0.0.1", "--save", "", *backing_args)
    space.wait_ready(6390)
    backing_url = url or "redis://127.0.0.1:6390"
    space.start(sys.executable, "-m", "gearcam.runtime", "--redis-url", backing_url, "--host", "0.0.0.0",
                "--port", "6391", *runtime_args)  # fmt: skip
    space.wait_ready(6391)
    return 6391


def test_a_client_from_another_address_is_denied_as_redis_server_does(netns: Namespace) -> None:
    netns.stop()
    netns.start("redis-server", "--port", "6392", "--save", "")  # protected mode on, no password
    netns.wait_ready(6392)
    redis_reply = netns.exchange(REMOTE, 6392, b"PING\r\n")
    port = _serve(netns, [], [])
    reply = netns.exchange(REMOTE, port, b"*2\r\n$11\r\nRG.PYEXECUTE\r\n$3\r\nx=1\r\n")
    assert reply.startswith(b"-DENIED The gearcam runtime is running in protected mode") and reply.endswith(
        b"<closed>"
    ), reply
    # Redis' facts, and what to do
    for fact in (b"no password is set for the default user", b"only accepted from the loopback interface"):
        assert fact in reply and fact in redis_reply
    assert b"--protected-mode no" in reply and b"requirepass" in reply
    assert netns.exchange("127.0.0.1", port, b"PING\r\n") == b"+PONG\r\n"


def test_protected_mode_turned_off_on_purpose_lets_other_addresses_in(netns: Namespace) -> None:
    port = _serve(netns, [], ["--protected-mode", "no"])
    assert netns.exchange(REMOTE, port, b"PING\r\n") == b"+PONG\r\n"


def test_protected_mode_can_be_turned_off_from_the_environment(netns: Namespace) -> None:
    netns.stop()
    netns.start("redis-server", "--port", "6390", "--bind", "127.0.0.1", "--save", "")
    netns.wait_ready(6390)
    netns.start("env", "GEARCAM_RUNTIME__PROTECTED_MODE=false", sys.executable, "-m", "gearcam.runtime",
                "--redis-url", "redis://127.0.0.1:6390", "--host", "0.0.0.0", "--port", "6391")  # fmt: skip
    netns.wait_ready(6391)
    assert netns.exchange(REMOTE, 6391, b"PING\r\n") == b"+PONG\r\n"


def test_with_a_password_on_redis_other_addresses_must_authenticate_instead(netns: Namespace) -> None:
    port = _serve(netns, ["--requirepass", "pw"], [], url="redis://:pw@127.0.0.1:6390")
    assert netns.exchange(REMOTE, port, b"PING\r\n") == b"-NOAUTH Authentication required.\r\n"
    assert netns.exchange(REMOTE, port, b"AUTH pw\r\nPING\r\n") == b"+OK\r\n+PONG\r\n"


@pytest.fixture(scope="module", autouse=True)
def _stop_servers(netns: Namespace) -> Iterator[None]:
    yield
    netns.stop()
