"""Plain commands relayed as they came (connection.py `_take_plain`): the same answers, in the same order.

While a client's read loop waits with nothing buffered, the complete plain commands at the
start of what arrives are passed to Redis without being parsed and re-encoded, and a plain
command that runs past the read (a frame larger than a read) is passed as its bytes arrive.
Whatever follows them (an owned command, a transaction, a hook, a broken frame, half a
command) is read as before, so these tests mix them in one write and check every reply and
its place.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from gearcam.runtime.resp import encode_command
from tests.runtime.conftest import Backing, RawClient, RawError, frames
from tests.runtime.gears_helpers import pyexecute, unregister_all


@pytest.fixture
def gears(r: redis.Redis) -> Iterator[redis.Redis]:
    """The runtime client with no registration left over before or after the test."""
    unregister_all(r)
    yield r
    unregister_all(r)


def _text(reply: object) -> object:
    return str(reply) if isinstance(reply, RawError) else reply


def test_plain_owned_and_transaction_commands_in_one_write_answer_in_order(wire: RawClient) -> None:
    frame = os.urandom(64 * 1024)
    wire.sock.sendall(frames(
        ("SET", "a", 1),
        ("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 3),
        ("GET", "a"),
        ("MULTI",), ("SET", "b", 2), ("INCR", "a"), ("EXEC",),
        ("AI.TENSORGET", "t", "VALUES"),
        ("INCR", "a"),
        ("XADD", "s", "*", "img", frame),
        ("XLEN", "s"),
        ("GET", "b"),
    ))  # fmt: skip
    replies = wire.replies(12)
    assert replies[:4] == [b"OK", b"OK", b"1", b"OK"]
    assert replies[4:7] == [b"QUEUED", b"QUEUED", [b"OK", 2]]
    assert replies[7:9] == [[b"3"], 3]
    assert isinstance(replies[9], bytes) and b"-" in replies[9]  # the entry's id
    assert replies[10:] == [1, b"2"]


def test_a_command_cut_across_writes_is_read_whole_after_the_plain_ones_before_it(wire: RawClient) -> None:
    value = os.urandom(200 * 1024)
    data = frames(("SET", "before", 1), ("SET", "big", value), ("GET", "before"))
    cut = len(frames(("SET", "before", 1))) + 1000  # inside the large value
    wire.sock.sendall(data[:cut])
    assert wire.replies(1) == [b"OK"]
    wire.sock.sendall(data[cut:] + frames(("STRLEN", "big"), ("GET", "big")))
    assert wire.replies(4) == [b"OK", b"1", len(value), value]


def test_broken_framing_after_plain_commands_is_refused_after_their_replies(wire: RawClient) -> None:
    wire.sock.sendall(frames(("SET", "a", 1), ("GET", "a")) + b"*1\r\n$x\r\n")
    replies = wire.replies(3)
    assert replies[:2] == [b"OK", b"1"]
    assert _text(replies[2]) == "ERR Protocol error: invalid bulk length"


def test_inline_and_empty_commands_between_plain_ones_are_served_as_redis_serves_them(wire: RawClient) -> None:
    wire.sock.sendall(frames(("SET", "a", 1)) + b"*0\r\n" + b"GET a\r\n" + frames(("INCR", "a")) + b"\r\n")
    assert wire.replies(3) == [b"OK", b"1", 2]


def test_thousands_of_plain_commands_in_one_write_pass_the_reply_window(wire: RawClient) -> None:
    wire.sock.sendall(frames(*[("INCR", "n")] * 3000))
    assert wire.replies(3000) == list(range(1, 3001))


def test_a_hook_registered_meanwhile_answers_the_next_plain_command(wire: RawClient, gears: redis.Redis) -> None:
    wire.sock.sendall(frames(("HSET", "h", "f", "v")))
    assert wire.replies(1) == [1]
    code = "GB('CommandReader').map(lambda x: 'hooked ' + str(call_next(*x[1:]))).register(hook='hset', mode='sync')"
    assert pyexecute(gears, code) == b"OK"
    wire.sock.sendall(frames(("HSET", "h", "g", "w"), ("HGET", "h", "g")))
    assert wire.replies(2) == [b"hooked 1", b"w"]


def test_plain_commands_inside_a_transaction_keep_their_places_among_the_queued_owned_ones(wire: RawClient) -> None:
    wire.sock.sendall(frames(("MULTI",)))
    assert wire.replies(1) == [b"OK"]
    wire.sock.sendall(
        frames(("SET", "x", 1), ("AI.MODELEXECUTE", "m", "INPUTS", 1, "a", "OUTPUTS", 1, "b"), ("GET", "x"))
    )
    assert wire.replies(3) == [b"QUEUED", b"QUEUED", b"QUEUED"]
    wire.sock.sendall(frames(("EXEC",)))
    (result,) = wire.replies(1)
    assert isinstance(result, list) and len(result) == 3
    assert result[0] == b"OK" and isinstance(result[1], RawError) and result[2] == b"1"


def _partial_commands_in_redis(direct: redis.Redis) -> list[dict[str, object]]:
    """Clients of the backing Redis holding over 1 MB of a command not run yet (arguments read, or unread input)."""
    return [c for c in direct.client_list() if int(c.get("qbuf", 0)) + int(c.get("argv-mem", 0)) > 1 << 20]


def test_a_frame_larger_than_a_read_is_relayed_as_it_arrives_and_stored_whole(
    wire: RawClient, r: redis.Redis, direct: redis.Redis, server_url: str, backing: Backing
) -> None:
    frame = os.urandom(3 * 1024 * 1024)
    data = frames(("SET", "before", 1), ("XADD", "cam", "*", "img", frame, "n", 7))
    header = data.index(b"$1\r\nn\r\n")  # the bulk header after the frame, cut in two below
    pieces = [data[:100_000], data[100_000 : len(data) // 2], data[len(data) // 2 : header + 2], data[header + 2 :]]
    for piece in pieces[:-1]:
        wire.sock.sendall(piece)
        time.sleep(0.05)
    if server_url != backing.url:  # through the runtime: Redis has the command's start before its end is sent
        deadline = time.monotonic() + 10
        while not _partial_commands_in_redis(direct) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _partial_commands_in_redis(direct), "the frame's first bytes were not relayed as they arrived"
    wire.sock.sendall(pieces[-1] + frames(("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 2), ("XLEN", "cam")))
    replies = wire.replies(4)
    assert replies[0] == b"OK" and b"-" in replies[1] and replies[2:] == [b"OK", 1]
    ((_id, fields),) = r.xrange("cam")
    assert fields == {b"img": frame, b"n": b"7"}


def test_broken_framing_inside_a_command_relayed_as_it_arrives_is_the_parsers_error_and_nothing_runs(
    wire: RawClient, r: redis.Redis
) -> None:
    start = b"".join(encode_command([b"SET", b"a", b"1"])) + b"*7\r\n$4\r\nXADD\r\n$3\r\ncam\r\n$1\r\n*\r\n"
    wire.sock.sendall(start + b"$3\r\nimg\r\n$100000\r\n" + b"x" * 50_000)
    assert wire.replies(1) == [b"OK"]
    wire.sock.sendall(b"x" * 50_000 + b"\r\nnot a bulk header\r\n")
    (error,) = wire.replies(1)
    assert _text(error) == "ERR Protocol error: expected '$', got 'n'"
    with pytest.raises(ConnectionError, match="closed the connection after 0 replies"):
        wire.replies(1)
    assert r.get("a") == b"1" and r.exists("cam") == 0


def test_a_frame_relayed_as_it_arrives_waits_for_a_stalled_redis_and_arrives_whole(
    wire: RawClient, r: redis.Redis, server_url: str, backing: Backing
) -> None:
    """The runtime does not hold the frame while Redis does not read: it stops reading the client."""
    if backing.proc is None or server_url == backing.url:
        pytest.skip("needs the runtime in front of the test's own redis-server")
    frame = os.urandom(48 * 1024 * 1024)  # far more than loopback buffers hold
    sent = threading.Event()

    def send() -> None:
        wire.sock.sendall(frames(("XADD", "cam", "*", "img", frame), ("XLEN", "cam")))
        sent.set()

    sender = threading.Thread(target=send)
    os.kill(backing.proc.pid, signal.SIGSTOP)
    try:
        sender.start()
        assert not sent.wait(1.0), "the runtime read the whole frame while Redis was stopped"
    finally:
        os.kill(backing.proc.pid, signal.SIGCONT)
    sender.join(30)
    replies = wire.replies(2)
    assert isinstance(replies[0], bytes) and b"-" in replies[0] and replies[1] == 1
    ((_id, fields),) = r.xrange("cam")
    assert fields == {b"img": frame}
