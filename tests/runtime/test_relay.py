"""Everything the runtime does not own is relayed: blocking reads, pub/sub, transactions, auth, pipelines."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.runtime.conftest import Backing, RawClient, Runtime, error_of, free_port, password_stack, running_stack
from tests.runtime.models import add_model


def test_xread_block_is_woken_by_a_write_through_the_runtime_and_directly(r: redis.Redis, direct: redis.Redis,
                                                                           server_url: str) -> None:  # fmt: skip
    results: list[object] = []

    def reader() -> None:
        client = redis.Redis.from_url(server_url)
        results.append(client.xread({"s": "$"}, block=5000))
        results.append(client.xread({"s": results[0][0][1][0][0]}, block=5000))  # type: ignore[index]

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.3)
    r.xadd("s", {"n": "1"})
    time.sleep(0.3)
    direct.xadd("s", {"n": "2"})
    thread.join(10)
    assert results[0][0][1][0][1] == {b"n": b"1"}  # type: ignore[index]
    assert results[1][0][1][0][1] == {b"n": b"2"}  # type: ignore[index]


@pytest.mark.parametrize("protocol", [2, 3])
def test_subscribers_get_messages_published_through_the_runtime_and_directly(
    server_url: str, r: redis.Redis, direct: redis.Redis, protocol: int
) -> None:
    client = redis.Redis.from_url(server_url, protocol=protocol)
    pubsub = client.pubsub()
    pubsub.subscribe("news")
    pubsub.psubscribe("cam*")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"  # type: ignore[index]
    r.publish("news", "one")
    direct.publish("camera:0", "two")
    first = pubsub.get_message(timeout=5)
    second = pubsub.get_message(timeout=5)
    assert (first["data"], second["data"]) == (b"one", b"two")  # type: ignore[index]
    pubsub.unsubscribe("news")
    pubsub.punsubscribe("cam*")
    pubsub.close()
    assert client.ping()
    client.close()


def test_leaving_subscribe_mode_gives_back_normal_commands(server_url: str) -> None:
    with socket.create_connection(("127.0.0.1", int(server_url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nx\r\n")
        time.sleep(0.2)
        sock.sendall(b"*1\r\n$3\r\nGET\r\n")
        time.sleep(0.2)
        sock.sendall(b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$1\r\nx\r\n*1\r\n$4\r\nPING\r\n")
        time.sleep(0.3)
        data = sock.recv(65536)
    assert b"only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context" in data
    assert data.endswith(b"+PONG\r\n")


def test_multi_exec_discard_and_watch(r: redis.Redis, server_url: str) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.set("a", 1).incr("a").get("a")
    assert pipe.execute() == [True, 2, b"2"]
    raw = RawClient("127.0.0.1", r.connection_pool.connection_kwargs["port"])
    assert [raw.call("MULTI"), raw.call("SET", "b", 1), raw.call("DISCARD")] == [b"OK", b"QUEUED", b"OK"]
    raw.close()
    assert r.exists("b") == 0
    with r.pipeline() as watched:
        watched.watch("a")
        redis.Redis.from_url(server_url).set("a", 100)
        watched.multi()
        watched.set("a", 5)
        with pytest.raises(redis.WatchError):
            watched.execute()
    assert r.get("a") == b"100"


def test_select_isolates_keys_including_ai_tensors(server_url: str) -> None:
    db1 = redis.Redis.from_url(server_url + "/1", protocol=2)
    db0 = redis.Redis.from_url(server_url + "/0", protocol=2)
    db1.flushdb()
    db1.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 7)
    assert db1.type("t") == b"AI_TENSOR"
    assert db0.exists("t") == 0
    assert db1.execute_command("AI.TENSORGET", "t", "VALUES") == [b"7"]
    db1.flushdb()


def test_client_name_is_per_connection(r: redis.Redis) -> None:
    r.client_setname("gearcam-test")
    assert r.client_getname() == "gearcam-test"


def test_a_long_mixed_pipeline_answers_in_order(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    pipe = r.pipeline(transaction=False)
    for i in range(250):
        pipe.set(f"k{i}", i)
        pipe.execute_command("AI.TENSORSET", f"t{i % 7}", "FLOAT", 1, 2, "VALUES", i, 1)
        pipe.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, f"t{i % 7}", f"t{i % 7}", "OUTPUTS", 1, "o")
        pipe.execute_command("AI.TENSORGET", "o", "VALUES")
        pipe.incr("counter")
    out = pipe.execute()
    for i in range(250):
        assert out[5 * i : 5 * i + 5] == [True, b"OK", b"OK", [str(2 * i).encode(), b"2"], i + 1]


def test_large_values_round_trip_byte_exact(r: redis.Redis) -> None:
    big = os.urandom(5 * 1024 * 1024)
    r.set("big", big)
    assert r.get("big") == big
    frame = os.urandom(64 * 1024)
    entry = r.xadd("camera:0", {"img": frame, "count": 1})
    assert r.xrange("camera:0")[0] == (entry, {b"img": frame, b"count": b"1"})


def test_inline_commands_work_over_a_raw_socket(server_url: str) -> None:
    with socket.create_connection(("127.0.0.1", int(server_url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b"+PONG\r\n"
        sock.sendall(b"ECHO hello\r\n")
        assert sock.recv(100) == b"$5\r\nhello\r\n"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[Backing, Runtime]]:
    with password_stack(tmp_path, "s3cret") as pair:
        yield pair


def test_auth_with_a_password_and_an_acl_user(secured: tuple[Backing, Runtime]) -> None:
    backing, runtime = secured
    anonymous = redis.Redis(port=runtime.port, retry=None, protocol=2)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("x")
    assert error_of(anonymous, "AI.TENSORSET", "t", "FLOAT", 1).startswith("NOAUTH")
    client = redis.Redis(port=runtime.port, password="s3cret", protocol=2)
    assert client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 3) == b"OK"
    admin = redis.Redis(port=backing.port, password="s3cret")
    admin.acl_setuser("camera", enabled=True, passwords=["+campw"], keys=["camera:*"], commands=["+@all"])
    camera = redis.Redis(port=runtime.port, username="camera", password="campw", protocol=2)
    assert camera.xadd("camera:0", {"img": b"x"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        camera.get("t")
    with pytest.raises(redis.exceptions.NoPermissionError):
        camera.execute_command("AI.TENSORGET", "t", "VALUES")


def test_commands_the_runtime_serves_itself_need_auth_too(secured: tuple[Backing, Runtime]) -> None:
    _, runtime = secured
    anonymous = redis.Redis(port=runtime.port, retry=None, protocol=2)
    for command in (
        ("RG.DUMPREGISTRATIONS",),
        ("RG.PYEXECUTE", "GB().run()"),
        ("AI.INFO", "m"),
        ("AI.CONFIG", "GET", "MODEL_CHUNK_SIZE"),
    ):
        assert error_of(anonymous, *command) == "NOAUTH Authentication required.", command
    client = redis.Redis(port=runtime.port, retry=None, protocol=2)
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("AUTH", "s3cret").execute_command("RG.DUMPREGISTRATIONS")
    assert pipe.execute() == [True, []]
    client.close()


def test_a_large_tensor_round_trips_through_the_runtime(r: redis.Redis) -> None:
    data = np.random.default_rng(1).random((8, 224, 224, 3), dtype=np.float32)
    r.execute_command("AI.TENSORSET", "frames", "FLOAT", *data.shape, "BLOB", data.tobytes())
    got = r.execute_command("AI.TENSORGET", "frames", "BLOB")
    assert got == data.tobytes()
    assert error_of(r, "AI.TENSORGET", "frames", "JSON") == "ERR unsupported data format"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _descendants(pid: int) -> list[int]:
    found, children = [pid], {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    for parent in found:
        found.extend(children.get(parent, []))
    return found


def test_links_to_the_backing_redis_carry_tcp_keepalive(tmp_path: Path) -> None:
    # A backing Redis on another host that goes silent (power cut, partition) sends no reset: only TCP
    # keepalive (and a user timeout) end the runtime's and the Gears workers' links to it, so replies
    # and key events do not wait on it forever. Read off the kernel's table for the live processes.
    with running_stack(tmp_path) as (backing, runtime):
        client = redis.Redis.from_url(runtime.url)
        client.set("k", "v")
        assert client.execute_command("RG.PYEXECUTE", "GB('ShardsIDReader').map(lambda x: execute('GET', 'k')).run()")
        assert runtime.proc is not None
        inodes = set().union(*(_socket_inodes(pid) for pid in _descendants(runtime.proc.pid)))
        timers = []  # /proc/net/tcp's "tr" of each established link from these processes to the backing port
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == backing.port and fields[3] == "01" and fields[9] in inodes:
                timers.append(fields[5].split(":")[0])
        # the key events' link, the client's link, the Gears AI link and a worker's execute() link at least
        assert len(timers) >= 3, timers
        assert set(timers) == {"02"}, f"links without a keepalive timer (02): {timers}"


def test_a_pipeline_cut_by_a_lost_link_raises_once_and_leaves_no_failure_unretrieved() -> None:
    # A Redis that dies with replies due: the first await raises; the others' failures must not reach
    # asyncio's "exception was never retrieved" (an ERROR line in the log at every backing restart).
    import asyncio
    import gc

    import uvloop

    from gearcam.errors import NetworkError
    from gearcam.runtime.relay import Address, BackendLink

    async def scenario() -> list[dict[str, object]]:
        unretrieved: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: unretrieved.append(context))

        async def die(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.transport.abort()

        port = free_port()
        server = await asyncio.start_server(die, "127.0.0.1", port)
        link = await BackendLink.open(Address(host="127.0.0.1", port=port), 2.0)
        try:
            with pytest.raises(NetworkError):
                await link.pipeline([(b"GET", b"a"), (b"GET", b"b"), (b"GET", b"c")])
        finally:
            await link.close()
            server.close()
        del link
        gc.collect()
        await asyncio.sleep(0.05)
        return unretrieved

    assert uvloop.run(scenario()) == []
