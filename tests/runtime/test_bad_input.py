"""Broken requests get a clear error or a closed connection; nobody else is disturbed and nothing is half-written."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from tests.runtime.conftest import Backing, Runtime, error_of, runtime_in_front
from tests.runtime.models import add_model


def _port(r: redis.Redis) -> int:
    return int(r.connection_pool.connection_kwargs["port"])


def _exchange(port: int, payload: bytes, wait: float = 0.5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        time.sleep(wait)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_broken_framing_gets_a_protocol_error_and_a_closed_connection(r: redis.Redis) -> None:
    reply = _exchange(_port(r), b"*1\r\n$x\r\n")
    assert reply.startswith(b"-ERR Protocol error")
    assert r.ping()


def test_an_unknown_command_gets_redis_own_error(r: redis.Redis) -> None:
    assert error_of(r, "NOSUCHCOMMAND", "x").startswith("ERR unknown command 'NOSUCHCOMMAND'")


@pytest.fixture
def small_limit(backing: Backing) -> Iterator[Runtime]:
    with runtime_in_front(backing, ["--max-request-size", "1000000"]) as runtime:
        yield runtime


def test_a_request_over_the_size_limit_is_refused_and_the_runtime_serves_on(small_limit: Runtime) -> None:
    blob = b"x" * 2_000_000
    reply = _exchange(small_limit.port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n" % (len(blob), blob))
    assert b"-ERR Protocol error: request of " in reply and b"runtime.max_request_size" in reply
    client = redis.Redis(port=small_limit.port)
    assert client.ping() and client.exists("k") == 0


def test_a_client_that_hangs_up_mid_tensor_leaves_nothing_behind(r: redis.Redis) -> None:
    data = np.zeros((64, 224, 224, 3), np.float32).tobytes()
    header = (
        b"*9\r\n$12\r\nAI.TENSORSET\r\n$4\r\nhalf\r\n$5\r\nFLOAT\r\n$2\r\n64\r\n$3\r\n224\r\n$3\r\n224\r\n$1\r\n3\r\n"
    )
    with socket.create_connection(("127.0.0.1", _port(r))) as sock:
        sock.sendall(header + b"$4\r\nBLOB\r\n$%d\r\n" % len(data) + data[: len(data) // 2])
    time.sleep(0.3)
    assert r.exists("half") == 0
    assert r.ping()


def test_a_client_that_hangs_up_while_its_model_runs_does_not_disturb_others(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 100000, 2)
    with socket.create_connection(("127.0.0.1", _port(r))) as sock:
        sock.sendall(b"*8\r\n$15\r\nAI.MODELEXECUTE\r\n$1\r\nm\r\n$6\r\nINPUTS\r\n$1\r\n2\r\n$1\r\na\r\n$1\r\na\r\n"
                     b"$7\r\nOUTPUTS\r\n$1\r\n1\r\n$1\r\nc\r\n")  # fmt: skip
    others = []

    def other() -> None:
        client = redis.Redis(port=_port(r), protocol=2)
        client.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 2, "VALUES", 1, 2)
        others.append(client.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "x", "x", "OUTPUTS", 1, "y"))

    threads = [threading.Thread(target=other) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert others == [b"OK"] * 3


def test_a_model_blob_that_does_not_parse_changes_nothing(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "kept", "ONNX", "CPU", "BLOB", add_model())
    for blob in (b"", b"\x08\x01garbage", b"\xff" * 64):
        assert error_of(r, "AI.MODELSTORE", "kept", "ONNX", "CPU", "BLOB", blob)
    assert r.execute_command("AI.MODELGET", "kept", "BLOB") == add_model()


def test_a_wrong_shape_then_a_right_one(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    r.execute_command("AI.TENSORSET", "bad", "FLOAT", 2, 5)
    r.execute_command("AI.TENSORSET", "good", "FLOAT", 2, 2)
    with pytest.raises(redis.ResponseError):
        r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "bad", "bad", "OUTPUTS", 1, "c")
    assert r.exists("c") == 0
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "good", "good", "OUTPUTS", 1, "c") == b"OK"


def _pipeline(port: int, *commands: tuple[object, ...]) -> list[object]:
    """Send the commands in one write on a fresh connection and read one reply each."""
    from tests.runtime.conftest import RawClient

    client = RawClient("127.0.0.1", port)
    try:
        from gearcam.runtime.resp import encode_command

        payload = b"".join(b"".join(encode_command([str(a) for a in c])) for c in commands)
        client.sock.sendall(payload)
        return [client.read() for _ in commands]
    finally:
        client.close()


@pytest.mark.parametrize(
    "shape",
    [
        ["4294967296", "4294967296", "VALUES"],  # the element count wraps to 0 in 64 bits
        ["100000", "100000", "100000"],
        ["1"] * 1000,
        ["4294967296", "4294967296", "BLOB", "x"],
        ["9223372036854775808"],
        ["99999999999999999999999999", "VALUES", "1"],
    ],
    ids=["wrapping-count", "1e15-zeros", "1000-dims", "huge-blob-claim", "over-long-long", "huge-dim-values"],
)
def test_a_tensor_shape_the_runtime_cannot_hold_is_an_error_and_pipelined_replies_arrive(
    r: redis.Redis, shape: list[str]
) -> None:
    replies = _pipeline(_port(r), ("SET", "before", "1"), ("AI.TENSORSET", "t", "FLOAT", *shape), ("GET", "before"))
    assert replies[0] == b"OK" and replies[2] == b"1"
    assert isinstance(replies[1], Exception) and str(replies[1]).startswith("ERR ")
    assert r.exists("t") == 0 and r.ping()


def test_a_shape_over_the_redis_string_limit_says_why(r: redis.Redis) -> None:
    message = error_of(r, "AI.TENSORSET", "t", "FLOAT", 100000, 100000, 100000)
    assert "more than the 536870912 a Redis string holds" in message and "smaller shape" in message


def test_a_count_that_wraps_in_64_bits_is_not_taken_for_zero_values(r: redis.Redis) -> None:
    assert "536870912" in error_of(r, "AI.TENSORSET", "t", "FLOAT", 4294967296, 4294967296, "VALUES")


def test_a_batch_size_over_a_long_long_gets_redisai_error(r: redis.Redis) -> None:
    message = error_of(r, "AI.MODELSTORE", "m", "ONNX", "CPU", "BATCHSIZE", 2**70, "BLOB", add_model())
    assert message == "ERR Invalid argument for BATCHSIZE"


def test_a_min_batch_size_over_the_batch_size_is_refused_with_the_fix(r: redis.Redis) -> None:
    message = error_of(r, "AI.MODELSTORE", "m", "ONNX", "CPU", "BATCHSIZE", 2, "MINBATCHSIZE", 100, "BLOB", add_model())
    assert message.startswith("ERR MINBATCHSIZE 100 is larger than BATCHSIZE 2") and "at most BATCHSIZE" in message
    assert r.exists("m") == 0


@pytest.mark.parametrize(
    ("marker", "kind", "command"),
    [
        (b"\x00gcmT", "tensor", ("AI.TENSORGET", "forged", "META")),
        (b"\x00gcmM", "model", ("AI.MODELGET", "forged", "META")),
        (b"\x00gcmS", "script", ("AI.SCRIPTGET", "forged", "META")),
    ],
)
@pytest.mark.parametrize(
    "header",
    [b"\x05\x00\x00\x00{bad}", b"\xff\xff\xff\x00{}", b"\x02\x00\x00\x00[]", b'\x0d\x00\x00\x00{"shape":"x"}', b"\x01"],
    ids=["bad-json", "header-past-the-end", "not-an-object", "wrong-fields", "truncated"],
)
def test_a_forged_value_with_a_valid_marker_is_called_corrupt(
    r: redis.Redis, direct: redis.Redis, marker: bytes, kind: str, command: tuple[str, ...], header: bytes
) -> None:
    direct.set("forged", marker + header)
    message = error_of(r, *command)
    assert message.startswith(f"ERR key 'forged' holds a corrupt {kind} value"), message
    assert "DEL forged" in message and "internal error" not in message
    assert r.ping()
