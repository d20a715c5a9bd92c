"""Fixtures for the runtime suites: a real redis-server and a real runtime on free loopback ports.

`--redis-url URL` runs the conformance suites against another server instead (a
Redis with the RedisAI/RedisGears modules loaded, to check the runtime against the
real thing).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from gearcam.runtime.keyevents import KeyEvents
from gearcam.runtime.relay import Address, BackendLink
from tests.conftest import free_port, log_file

ROOT = Path(__file__).resolve().parents[2]


def wait_ready(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[Any] | None = None, client: redis.Redis | None = None
) -> None:
    """Until a server answers PING on `port` (through `client` where it needs one of its own: TLS)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            if (client or redis.Redis(port=port, socket_timeout=1, retry=None)).ping():
                return
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError):
            return  # it answers; it wants a password
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc):
                return
            raise
        except redis.ConnectionError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered PING on port {port} within {timeout}s")


@dataclass
class Backing:
    """A real redis-server in a private directory."""

    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                   "--save", "", "--appendonly", "no", *self.extra]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(self.port, proc=self.proc)

    def start_with_password(self, password: str) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                   "--save", "", "--appendonly", "no", *self.extra]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                if redis.Redis(port=self.port, password=password, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def save(self, timeout: float = 20) -> None:
        """SAVE now; with save points set, Redis may be in a background save of its own, so wait that out."""
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.save()
                return
            except redis.ResponseError as exc:
                if "in progress" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@dataclass
class Runtime:
    """`python -m gearcam.runtime` fronting a Backing."""

    port: int
    backing_url: str
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)  # a command that runs it (prlimit --nofile=...)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log = log_file("runtime-")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        command = [*self.prefix, sys.executable, "-m", "gearcam.runtime", "--redis-url", self.backing_url, "--port", str(self.port),
                   *self.args]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.port, proc=self.proc)
        except Exception:
            raise RuntimeError(f"runtime did not start:\n{self.log.read_text()}") from None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)
            self.proc = None

    def output(self) -> str:
        return self.log.read_text() if self.log else ""

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, protocol=2)

    def gears_workers(self) -> list[int]:
        """The pids of its Gears worker processes (a killed one drops out once its command line is gone)."""
        assert self.proc is not None
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"gearcam.runtime.gears.worker" in cmdline:
                pids.append(int(entry.name))
        return pids


async def slow_proxy(target: int, delay: float, back: float = 0.0) -> tuple[asyncio.Server, int]:
    """A TCP proxy to port `target` that holds each chunk a client sends for `delay` s and each chunk it gets
    back for `back` s (in order): what a loaded machine does to a connection, made certain."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, wait: float) -> None:
        while data := await src.read(65536):
            await asyncio.sleep(wait)
            dst.write(data)
            await dst.drain()
        dst.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, upstream_writer, delay), pipe(upstream_reader, writer, back),
                             return_exceptions=True)  # fmt: skip

    port = free_port()
    return await asyncio.start_server(handle, "127.0.0.1", port), port


@asynccontextmanager
async def proxied_events(
    port: int, delay: float = 0.0, back: float = 0.0
) -> AsyncIterator[tuple[KeyEvents, BackendLink]]:
    """Key events subscribed to the Redis on `port` through slow_proxy(port, delay, back), not started yet (add
    listeners first), and a direct link to that Redis for the writes."""
    proxy, proxied = await slow_proxy(port, delay, back)
    events = KeyEvents(Address(host="127.0.0.1", port=proxied), 5.0)
    direct = await BackendLink.open(Address(host="127.0.0.1", port=port), 2.0)
    try:
        yield events, direct
    finally:
        await direct.close()
        await events.stop()
        proxy.close()


async def seen_soon(seen: list[tuple[str, bytes]], wanted: tuple[str, bytes], timeout: float = 1.5) -> bool:
    """Whether the key event `wanted` (event, key) reaches a listener appending to `seen` within `timeout`."""
    for _ in range(int(timeout / 0.01)):
        if wanted in seen:
            return True
        await asyncio.sleep(0.01)
    return wanted in seen


def _need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; run scripts/bootstrap --dev (installs Debian's redis-server)")


@pytest.fixture(scope="session")
def backing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backing]:
    _need_redis_server()
    server = Backing(free_port(), tmp_path_factory.mktemp("backing"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def runtime(backing: Backing) -> Iterator[Runtime]:
    server = Runtime(free_port(), backing.url)
    server.start()
    yield server
    server.stop()


@contextmanager
def runtime_in_front(
    backing: Backing, args: Sequence[str] = (), env: dict[str, str] | None = None, url: str | None = None
) -> Iterator[Runtime]:
    """A runtime of its own (flags `args`, environment `env`) in front of a shared redis-server, stopped after;
    `url`: how it reaches the server, if not plainly on its TCP port."""
    runtime = Runtime(free_port(), url or backing.url, args=list(args), env=dict(env or {}))
    try:
        runtime.start()  # inside: a runtime that never answered is stopped too
        yield runtime
    finally:
        runtime.stop()


@contextmanager
def running_stack(
    directory: Path, redis_args: Sequence[str] = (), runtime_args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[tuple[Backing, Runtime]]:
    """A redis-server of its own in `directory` and a runtime in front of it, both stopped afterwards."""
    backing = Backing(free_port(), directory, extra=list(redis_args))
    backing.start()
    try:
        with runtime_in_front(backing, runtime_args, env) as runtime:
            yield backing, runtime
    finally:
        backing.stop()


@contextmanager
def password_stack(directory: Path, password: str, database: str = "") -> Iterator[tuple[Backing, Runtime]]:
    """A redis-server of its own that asks for `password` and a runtime that logs in to it (and SELECTs
    `database`, if given), both stopped afterwards; the runtime's clients need the same password."""
    backing = Backing(free_port(), directory, extra=["--requirepass", password])
    backing.start_with_password(password)
    url = f"redis://:{password}@127.0.0.1:{backing.port}" + (f"/{database}" if database else "")
    try:
        with runtime_in_front(backing, url=url) as runtime:
            yield backing, runtime
    finally:
        backing.stop()


@contextmanager
def unix_stack(directory: Path, runtime_args: Sequence[str] = ()) -> Iterator[tuple[Backing, Runtime]]:
    """A redis-server of its own and a runtime in front of it that reaches it over a unix socket, as `invoke up`'s
    does the embedded one, both stopped afterwards."""
    sock_dir = Path(tempfile.mkdtemp(prefix="gearcam-"))  # short: a unix socket path has ~107 bytes
    path = sock_dir / "redis.sock"
    backing = Backing(free_port(), directory, extra=["--unixsocket", str(path), "--unixsocketperm", "700"])
    backing.start()
    try:
        with runtime_in_front(backing, runtime_args, url=f"unix://{path}") as runtime:
            yield backing, runtime
    finally:
        backing.stop()
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Backing, Runtime]]:
    """A redis-server that persists (RDB + AOF) and a runtime in front of it, for restart tests."""
    with running_stack(tmp_path, ["--save", "1 1", "--appendonly", "yes"]) as pair:
        yield pair


@pytest.fixture(scope="session")
def server_url(request: pytest.FixtureRequest) -> str:
    """The server under test: the runtime, or --redis-url."""
    url: str | None = request.config.getoption("--redis-url")
    if url:
        return url
    runtime: Runtime = request.getfixturevalue("runtime")
    return runtime.url


@pytest.fixture
def r(server_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server_url, socket_timeout=30, protocol=2)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def direct(backing: Backing) -> Iterator[redis.Redis]:
    """A client of the backing Redis itself, bypassing the runtime."""
    client = redis.Redis.from_url(backing.url)
    yield client
    client.close()


LOOK_S = 1.5  # how long a test listens for a reply that must not come while Redis holds writes back


@contextmanager
def writes_held(backing: Backing) -> Iterator[redis.Redis]:
    """The backing Redis holds every write back (reads still run) until the block ends."""
    direct = redis.Redis(port=backing.port)
    direct.execute_command("CLIENT", "PAUSE", 120_000, "WRITE")
    try:
        yield direct
    finally:
        direct.execute_command("CLIENT", "UNPAUSE")
        direct.close()


def silent_while_held(raw: RawClient) -> bool:
    """True if no reply arrives within LOOK_S (the runtime waits for Redis, which holds the write back)."""
    raw.sock.settimeout(LOOK_S)
    try:
        raw.read()
    except TimeoutError:
        return True
    finally:
        raw.sock.settimeout(30)
    return False


class RawClient:
    """A bare RESP client (socket + hiredis) that sees replies exactly as sent, e.g. the ERR prefix
    that redis-py strips from error messages."""

    def __init__(self, host: str, port: int) -> None:
        import hiredis

        self.sock = socket.create_connection((host, port), timeout=30)
        self.reader = hiredis.Reader(replyError=RawError)

    def call(self, *args: object) -> object:
        from gearcam.runtime.resp import encode_command

        self.sock.sendall(b"".join(encode_command([a if isinstance(a, bytes) else str(a) for a in args])))
        return self.read()

    def read(self) -> object:
        (reply,) = self.replies(1)
        return reply

    def replies(self, count: int) -> list[object]:
        """The next `count` replies, for bytes written with `sock.sendall` (see `frames`)."""
        out: list[object] = []
        while len(out) < count:
            reply = self.reader.gets()
            if reply is not False:
                out.append(reply)
                continue
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError(f"the server closed the connection after {len(out)} replies: {out!r}")
            self.reader.feed(data)
        return out

    def close(self) -> None:
        self.sock.close()


class RawError(Exception):
    pass


def frames(*commands: tuple[object, ...]) -> bytes:
    """Commands framed as a client writes them, to be sent in one write or cut anywhere."""
    from gearcam.runtime.resp import encode_command

    return b"".join(b"".join(encode_command([a if isinstance(a, bytes) else str(a) for a in c])) for c in commands)


@pytest.fixture
def wire(server_url: str, r: redis.Redis) -> Iterator[RawClient]:
    """A bare connection to the server under test (its database flushed by `r`)."""
    client = RawClient("127.0.0.1", int(server_url.rsplit(":", 1)[1]))
    yield client
    client.close()


def error_of(client: redis.Redis, *args: object) -> str:
    """The error reply of a command that must fail, exactly as the server wrote it."""
    kwargs = client.connection_pool.connection_kwargs
    raw = RawClient(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
    try:
        db = kwargs.get("db", 0)
        if db:
            raw.call("SELECT", db)
        reply = raw.call(*args)
    finally:
        raw.close()
    if isinstance(reply, RawError):
        return str(reply)
    raise AssertionError(f"{args[0]} succeeded with {reply!r}; an error reply was expected")


def raw_call(client: redis.Redis, *args: object) -> object:
    """One command over a bare connection, the reply undecoded by redis-py's callbacks."""
    kwargs = client.connection_pool.connection_kwargs
    raw = RawClient(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
    try:
        return raw.call(*args)
    finally:
        raw.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def the_client_holding_most_goes(port: int, budget: int) -> None:
    """Two clients' unfinished SETs pass `budget` bytes together (runtime.maxmemory_clients): the one holding the
    most is disconnected, and the other, which fits, finishes its request and is answered."""
    header = b"*3\r\n$3\r\nSET\r\n$13\r\nbudget:client\r\n$%d\r\n"
    small = socket.create_connection(("127.0.0.1", port), timeout=10)
    big = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        small.sendall(header % (budget * 2 // 3) + b"x" * (budget // 3))
        time.sleep(0.5)  # its part counted first
        try:
            big.sendall(header % (budget * 2))
            for _ in range(24):
                big.sendall(b"x" * (budget // 16))
        except OSError:
            pass  # reset by the runtime while sending
        assert _closed_by_peer(big), "the client holding the most was not disconnected"
        small.sendall(b"x" * (budget * 2 // 3 - budget // 3) + b"\r\n*1\r\n$4\r\nPING\r\n")
        reply = b""
        while not reply.endswith(b"+PONG\r\n"):
            reply += small.recv(64)
        assert reply == b"+OK\r\n+PONG\r\n"  # the smaller client kept its request
    finally:
        small.close()
        big.close()
