"""CLIENT LIST, CLIENT INFO and CLIENT KILL through the runtime show and reach clients where they connect from."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.runtime.conftest import Backing, RawClient, RawError, Runtime, password_stack, runtime_in_front


def _fields(line: bytes) -> dict[str, str]:
    return dict(field.decode().partition("=")[::2] for field in line.split())


def _listing(client: RawClient) -> list[dict[str, str]]:
    text = client.call("CLIENT", "LIST")
    assert isinstance(text, bytes)
    return [_fields(line) for line in text.splitlines()]


def _where(client: RawClient) -> str:
    host, port = client.sock.getsockname()[:2]
    return f"{host}:{port}"


@pytest.fixture
def pair(runtime: Runtime) -> Iterator[tuple[RawClient, RawClient]]:
    a, b = RawClient("127.0.0.1", runtime.port), RawClient("127.0.0.1", runtime.port)
    a.call("CLIENT", "SETNAME", "camera-a")
    b.call("CLIENT", "SETNAME", "camera-b")
    yield a, b
    a.close()
    b.close()


def test_client_list_shows_each_client_where_it_connects_from(
    runtime: Runtime, pair: tuple[RawClient, RawClient]
) -> None:
    a, b = pair
    listed = {line["name"]: line for line in _listing(a)}
    for client, name in ((a, "camera-a"), (b, "camera-b")):
        line = listed[name]
        assert line["addr"] == _where(client)  # not the runtime's link to Redis (a unix socket's path)
        assert line["laddr"] == f"127.0.0.1:{runtime.port}"
        assert int(line["id"]) == client.call("CLIENT", "ID")
    assert listed["camera-a"]["cmd"] == "client|list"
    assert "gearcam-runtime" not in listed  # the runtime's own links are no clients
    info = _fields(b.call("CLIENT", "INFO"))  # type: ignore[arg-type]
    assert (info["name"], info["addr"], info["id"]) == ("camera-b", _where(b), listed["camera-b"]["id"])


def test_client_list_names_the_module_command_a_client_ran_last(pair: tuple[RawClient, RawClient]) -> None:
    """As Redis lists a module's command (`cmd=ai.tensorset`), not what the runtime sent to Redis for it."""
    a, b = pair

    def last_of_b() -> str:
        return {line["name"]: line for line in _listing(a)}["camera-b"]["cmd"]

    assert b.call("AI.TENSORSET", "listed:t", "FLOAT", "2", "VALUES", "1", "2") == b"OK"
    assert last_of_b() == "ai.tensorset"
    assert b.call("AI.TENSORGET", "listed:t", "META") is not None
    assert last_of_b() == "ai.tensorget"
    b.call("RG.DUMPREGISTRATIONS")
    assert last_of_b() == "rg.dumpregistrations"
    assert b.call("TYPE", "listed:t") == b"AI_TENSOR"  # amended by the runtime (it asks Redis in a script)
    assert last_of_b() == "type"
    b.call("COMMAND", "INFO", "AI.TENSORGET")
    assert last_of_b() == "command|info"
    assert b.call("SET", "listed:s", "1") == b"OK"
    assert last_of_b() == "set"
    assert b.call("MULTI") == b"OK"  # queued, as Redis lists a command it queued
    assert b.call("AI.TENSORGET", "listed:t", "META") == b"QUEUED"
    assert last_of_b() == "ai.tensorget"
    b.call("EXEC")
    assert last_of_b() == "exec"


def test_client_kill_by_address_ends_that_client_only(pair: tuple[RawClient, RawClient]) -> None:
    a, b = pair
    assert a.call("CLIENT", "KILL", "ADDR", _where(b)) == 1
    with pytest.raises((ConnectionError, OSError)):
        b.call("PING")
    assert a.call("PING") == b"PONG"
    assert "camera-b" not in {line["name"] for line in _listing(a)}
    refused = a.call("CLIENT", "KILL", _where(b))  # the older form, for an address no client has any more
    assert isinstance(refused, RawError) and str(refused) == "ERR No such client"


def test_client_kill_in_the_older_form_and_by_id(runtime: Runtime, pair: tuple[RawClient, RawClient]) -> None:
    a, b = pair
    c = RawClient("127.0.0.1", runtime.port)
    try:
        assert a.call("CLIENT", "KILL", _where(b)) == b"OK"
        assert a.call("CLIENT", "KILL", "ID", c.call("CLIENT", "ID")) == 1
        for gone in (b, c):
            with pytest.raises((ConnectionError, OSError)):
                gone.call("PING")
        assert a.call("CLIENT", "KILL", "ADDR", _where(a), "SKIPME", "yes") == 0  # Redis' own filters still apply
    finally:
        c.close()


def test_clients_that_log_in_are_listed_where_they_connect_from(tmp_path: Path) -> None:
    """With a password the link's id is learnt at the client's AUTH (before it, Redis answers NOAUTH)."""
    with password_stack(tmp_path, "s3cret") as (_, runtime):
        client = RawClient("127.0.0.1", runtime.port)
        try:
            refused = client.call("CLIENT", "LIST")
            assert isinstance(refused, RawError) and str(refused).startswith("NOAUTH")
            assert client.call("AUTH", "s3cret") == b"OK"
            client.call("CLIENT", "SETNAME", "logged-in")
            (line,) = [line for line in _listing(client) if line["name"] == "logged-in"]
            assert line["addr"] == _where(client) and int(line["id"]) == client.call("CLIENT", "ID")
        finally:
            client.close()


def test_clients_of_the_backing_redis_itself_stay_listed(
    backing: Backing, runtime: Runtime, pair: tuple[RawClient, RawClient]
) -> None:
    a, _ = pair
    direct = redis.Redis(port=backing.port, client_name="straight-to-redis")
    try:
        direct.ping()
        listed = {line["name"]: line for line in _listing(a)}
        assert listed["straight-to-redis"]["laddr"] == f"127.0.0.1:{backing.port}"  # as Redis lists it, untouched
    finally:
        direct.close()


def test_a_unix_socket_client_is_listed_at_the_socket(backing: Backing, tmp_path: Path) -> None:
    path = str(tmp_path / "runtime.sock")
    with runtime_in_front(backing, ["--unixsocket", path]):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        sock.sendall(b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$5\r\nlocal\r\n*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n")
        data = b""
        while data.count(b"\r\n") < 3:
            data += sock.recv(65536)
        sock.close()
        info = _fields(data.split(b"\r\n")[2])
        assert (info["name"], info["addr"], info["laddr"]) == ("local", f"{path}:0", f"{path}:0")


def _info_fields(text: object) -> dict[str, str]:
    assert isinstance(text, bytes)
    return dict(line.partition(":")[::2] for line in text.decode().splitlines() if ":" in line)


def test_info_clients_counts_the_clients_client_list_shows(backing: Backing) -> None:
    """The runtime's own links to the backing Redis (key events, ACL checks, logs, Gears workers) are left out of
    INFO's connected_clients and blocked_clients, as CLIENT LIST leaves them out: on Redis a module's work is no
    client. Before, an idle runtime with one client said connected_clients:7."""
    with runtime_in_front(backing) as runtime:
        a, b = RawClient("127.0.0.1", runtime.port), RawClient("127.0.0.1", runtime.port)
        waiting = RawClient("127.0.0.1", runtime.port)
        try:
            waiting.sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$18\r\ninfo:clients:empty\r\n$1\r\n0\r\n")
            listed = _listing(a)
            while not any("b" in line["flags"] for line in listed):  # the BLPOP reached Redis
                listed = _listing(a)
            for asked in (("INFO",), ("INFO", "clients"), ("INFO", "everything")):
                counts = _info_fields(a.call(*asked))
                assert int(counts["connected_clients"]) == len(_listing(a)) >= 3, asked
                assert counts["blocked_clients"] == "1", asked
            direct = redis.Redis(port=backing.port)
            try:  # the backing Redis itself counts the links too
                assert direct.info("clients")["connected_clients"] > len(_listing(a))
            finally:
                direct.close()
            b.call("LPUSH", "info:clients:empty", "x")
            assert waiting.read() == [b"info:clients:empty", b"x"]
            assert _info_fields(a.call("INFO", "clients"))["blocked_clients"] == "0"
        finally:
            for client in (a, b, waiting):
                client.close()
