"""maxclients: one client more than the limit is refused in Redis' words, and the limit fits the open files.

Before, the runtime took every connection until it ran out of file descriptors, and then its own links
(key events, Gears workers, the backing Redis) failed with the clients'.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import redis

from tests.conftest import free_port
from tests.runtime.conftest import Backing, Runtime, error_of, runtime_in_front

REFUSED = b"-ERR max number of clients reached\r\n"


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"PING\r\n")
    return sock


def _connect_when_free(port: int) -> socket.socket:
    deadline = time.monotonic() + 10
    while True:
        sock = _connect(port)
        if _answer(sock) == b"+PONG\r\n":
            return sock
        sock.close()
        assert time.monotonic() < deadline, "no place came free"
        time.sleep(0.05)


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def _info_field(client: redis.Redis, section: str, name: str) -> int:
    return int(client.info(section)[name])


@pytest.fixture
def limited(backing: Backing) -> Iterator[Runtime]:
    with runtime_in_front(backing, ["--maxclients", "3"]) as runtime:
        yield runtime


def test_one_client_past_maxclients_is_refused_in_redis_words(limited: Runtime) -> None:
    with ExitStack() as held:
        first = held.enter_context(_connect(limited.port))
        assert _answer(first) == b"+PONG\r\n"
        others = [held.enter_context(_connect(limited.port)) for _ in range(2)]
        assert [_answer(s) for s in others] == [b"+PONG\r\n"] * 2
        refused = held.enter_context(_connect(limited.port))
        assert _answer(refused) == REFUSED
        assert refused.recv(1024) == b""  # and closed, as Redis closes it
        first.sendall(b"CONFIG GET maxclients\r\nINFO\r\n")  # the connected ones go on
        first.settimeout(10)
        reply = b""
        while b"rejected_connections:" not in reply or not reply.endswith(b"\r\n\r\n"):
            reply += first.recv(65536)
        assert b"maxclients\r\n$1\r\n3\r\n" in reply and b"\r\nmaxclients:3\r\n" in reply
        assert int(reply.split(b"rejected_connections:")[1].split(b"\r\n")[0]) >= 1
        others[0].close()  # a place is free again
    with ExitStack() as held:  # once the runtime has seen them go (their sockets' end), as Redis frees them
        again = [held.enter_context(_connect_when_free(limited.port)) for _ in range(3)]
        assert len(again) == 3


def test_config_set_maxclients_as_redis_takes_it(limited: Runtime, direct: redis.Redis) -> None:
    client = limited.client()
    for value, words in (("abc", "argument couldn't be parsed into an integer"),
                         ("0", "argument must be between 1 and 4294967295 inclusive"),
                         ("4294967296", "argument must be between 1 and 4294967295 inclusive"),
                         ("4000000000", "The operating system is not able to handle the specified number of "
                                        "clients, try with ")):  # fmt: skip
        assert f"CONFIG SET failed (possibly related to argument 'maxclients') - {words}" in error_of(
            client, "CONFIG", "SET", "maxclients", value
        )
    assert client.config_get("maxclients") == {"maxclients": "3"}
    backing_limit = direct.config_get("maxclients")
    with ExitStack() as held:
        held.enter_context(_connect(limited.port))
        held.enter_context(_connect(limited.port))
        assert _answer(held.enter_context(_connect(limited.port))) == REFUSED  # client, and two more
        assert client.config_set("maxclients", 4)
        assert _answer(held.enter_context(_connect(limited.port))) == b"+PONG\r\n"  # at once, for new clients
        assert client.config_set("maxclients", 1)  # lowered: the connected ones stay, as in Redis
        assert client.ping() and _info_field(client, "clients", "maxclients") == 1
    assert direct.config_get("maxclients") == backing_limit  # the backing Redis' own limit is its own
    rejected = _info_field(client, "stats", "rejected_connections")
    assert rejected >= 1
    client.config_resetstat()
    assert _info_field(client, "stats", "rejected_connections") == 0
    # total_connections_received counts the runtime's clients (the backing Redis' counts the runtime's links).
    assert _info_field(client, "stats", "total_connections_received") == 0
    assert client.config_set("maxclients", 10)
    with _connect(limited.port) as one, _connect(limited.port) as two:
        assert _answer(one) == _answer(two) == b"+PONG\r\n"
    assert _info_field(client, "stats", "total_connections_received") == 2


def test_maxclients_fits_the_open_files_limit(backing: Backing) -> None:
    """With 300 files, 1,000 clients cannot be held: the runtime says so and takes what fits (two files a
    client, 128 of its own). Before, the 139th client was told "cannot reach the backing Redis ... Too many open
    files; is redis-server running?" and a client of the runtime's own work was reset."""
    runtime = Runtime(free_port(), backing.url, args=["--maxclients", "1000"], prefix=["prlimit", "--nofile=300:300"])
    runtime.start()
    try:
        probe = runtime.client()
        assert probe.config_get("maxclients") == {"maxclients": "86"}
        assert "maxclients 1000 needs 2128 open files and the limit is 300: maxclients is 86" in runtime.output()
        with ExitStack() as held:
            clients = [held.enter_context(_connect(runtime.port)) for _ in range(85)]  # and the probe's
            assert all(_answer(s) == b"+PONG\r\n" for s in clients)
            assert _answer(held.enter_context(_connect(runtime.port))) == REFUSED
            # Every one of them has its link to Redis, and the runtime's own work goes on.
            assert all(s.sendall(b"SET k v\r\n") is None and _answer(s) == b"+OK\r\n" for s in clients)
            assert probe.execute_command("AI.TENSORSET", "fits", "FLOAT", 1, "VALUES", 1) == b"OK"
    finally:
        runtime.stop()
