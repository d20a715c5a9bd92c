"""CLIENT REPLY ON / OFF / SKIP, as clients that send fire-and-forget writes use it (coredis' noreply).

The runtime pairs every reply of the backing Redis with a command, so it keeps the mode
itself and silences replies on the way out (connection.py `_Slot.silent`). The tests without
`AI.*` commands hold for Redis 7.0 itself too (`--redis-url`), but for two of the runtime's own
choices: the transaction refusal (Redis breaks the framing of the EXEC reply instead) and the
close after a silenced protocol error (Redis leaves that connection open, its close waiting for a
reply it never writes).
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import redis

from tests.runtime.conftest import RawClient, RawError, Runtime, frames


def _nothing_more(wire: RawClient) -> None:
    """No reply is waiting after the ones read (ECHO's comes next)."""
    wire.sock.sendall(frames(("ECHO", "last")))
    assert wire.replies(1) == [b"last"]


@pytest.mark.parametrize("one_write", [True, False], ids=["one write", "one command a write"])
def test_replies_off_answers_nothing_until_on_past_the_reply_window(
    wire: RawClient, r: redis.Redis, one_write: bool
) -> None:
    commands = [("CLIENT", "REPLY", "OFF")] + [("SET", f"k{i}", i) for i in range(3000)]
    commands += [("SET", "s", "text"), ("INCR", "s"), ("NOSUCHCOMMAND",), ("AI.TENSORGET", "missing", "VALUES")]
    commands += [("AI.TENSORSET", "t", "INT8", 2, "VALUES", 3, 4), ("MULTI",), ("INCR", "n"), ("EXEC",)]
    if one_write:
        wire.sock.sendall(frames(*commands))
    else:
        for command in commands[:50]:  # each on its own (the plain relay and the read loop both see them)
            wire.sock.sendall(frames(command))
            time.sleep(0.001)
        wire.sock.sendall(frames(*commands[50:]))
    wire.sock.sendall(frames(("CLIENT", "REPLY", "ON"), ("PING",)))
    assert wire.replies(2) == [b"OK", b"PONG"]
    _nothing_more(wire)
    assert r.get("k2999") == b"2999" and r.get("n") == b"1"
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [3, 4]


def test_skip_silences_the_next_command_whoever_serves_it(wire: RawClient, r: redis.Redis) -> None:
    blob = np.arange(4, dtype=np.float32).tobytes()
    wire.sock.sendall(frames(
        ("CLIENT", "REPLY", "SKIP"), ("AI.TENSORSET", "t", "FLOAT", 4, "BLOB", blob), ("PING",),
        ("CLIENT", "REPLY", "SKIP"), ("GET",), ("ECHO", "after an error"),
        ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "SKIP"), ("SET", "a", 1), ("GET", "a"),
        ("CLIENT", "REPLY", "SKIP"), ("MULTI",), ("INCR", "a"), ("EXEC",),
    ))  # fmt: skip
    assert wire.replies(4) == [b"PONG", b"after an error", b"1", b"QUEUED"]
    assert wire.replies(1) == [[2]]
    _nothing_more(wire)
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"0", b"1", b"2", b"3"]


def test_on_answers_even_after_skip_and_skip_does_nothing_while_off(wire: RawClient) -> None:
    wire.sock.sendall(frames(("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "ON"), ("PING",)))
    assert wire.replies(2) == [b"OK", b"PONG"]
    wire.sock.sendall(frames(
        ("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "ON"), ("ECHO", "x"),
    ))  # fmt: skip
    assert wire.replies(2) == [b"OK", b"x"]
    _nothing_more(wire)


def test_malformed_client_reply_gets_redis_error_and_changes_nothing(wire: RawClient) -> None:
    wire.sock.sendall(frames(("CLIENT", "REPLY", "MAYBE"), ("CLIENT", "REPLY"), ("PING",)))
    first, second, pong = wire.replies(3)
    assert isinstance(first, RawError) and str(first) == "ERR syntax error"
    assert isinstance(second, RawError) and "wrong number of arguments for 'client|reply' command" in str(second)
    assert pong == b"PONG"


def test_a_user_without_client_reply_is_refused_and_keeps_its_replies(wire: RawClient, r: redis.Redis) -> None:
    r.execute_command("ACL", "SETUSER", "noreply-user", "on", ">pw", "~*", "+@all", "-client|reply")
    try:
        wire.sock.sendall(frames(("AUTH", "noreply-user", "pw"), ("CLIENT", "REPLY", "OFF"), ("SET", "a", 1)))
        ok, refused, stored = wire.replies(3)
        assert ok == b"OK" and stored == b"OK"
        assert isinstance(refused, RawError) and str(refused).startswith("NOPERM")
        assert "client|reply" in str(refused)
    finally:
        r.execute_command("ACL", "DELUSER", "noreply-user")


def test_silenced_protocol_errors_still_close_the_connection(wire: RawClient, r: redis.Redis) -> None:
    wire.sock.sendall(frames(("CLIENT", "REPLY", "OFF"), ("SET", "a", 1)) + b"*1\r\n$x\r\n")
    wire.sock.settimeout(5)
    assert wire.sock.recv(100) == b""  # closed, having said nothing
    assert r.get("a") == b"1"


def test_client_reply_inside_multi_is_refused_by_the_runtime(runtime: Runtime) -> None:
    wire = RawClient("127.0.0.1", runtime.port)
    try:
        wire.sock.sendall(frames(("MULTI",), ("SET", "a", 1), ("CLIENT", "REPLY", "OFF"), ("EXEC",), ("PING",)))
        ok, queued, refused, aborted, pong = wire.replies(5)
        assert (ok, queued, pong) == (b"OK", b"QUEUED", b"PONG")
        assert str(refused) == (
            "ERR the gearcam runtime cannot run CLIENT REPLY OFF inside MULTI; the transaction is discarded: "
            "send it before MULTI or after EXEC"
        )
        assert isinstance(aborted, RawError) and str(aborted).startswith("EXECABORT")
    finally:
        wire.close()


def test_subscribe_mode_while_off_gets_its_pushes_but_not_ping_or_error_replies(
    wire: RawClient, r: redis.Redis
) -> None:
    # As Redis 7.0 (checked on redis-server): pub/sub confirmations and messages are pushes, which
    # CLIENT REPLY OFF does not silence; PING's reply and a refused command's error are replies.
    wire.sock.sendall(frames(("CLIENT", "REPLY", "OFF"), ("SUBSCRIBE", "ch"), ("PING",), ("PING", "hi"), ("GET", "x")))
    assert wire.replies(1) == [[b"subscribe", b"ch", 1]]
    assert r.publish("ch", "msg") == 1
    assert wire.replies(1) == [[b"message", b"ch", b"msg"]]
    wire.sock.sendall(frames(("PING",), ("UNSUBSCRIBE",)))
    assert wire.replies(1) == [[b"unsubscribe", b"ch", 0]]
    wire.sock.sendall(frames(("CLIENT", "REPLY", "ON"), ("PING",)))
    assert wire.replies(2) == [b"OK", b"PONG"]


def test_skip_before_subscribe_is_spent_on_it(wire: RawClient) -> None:
    # SKIP silences the next command's reply; SUBSCRIBE's confirmation is a push, so it arrives,
    # and the SKIP is spent: the PING after is answered.
    wire.sock.sendall(frames(("CLIENT", "REPLY", "SKIP"), ("SUBSCRIBE", "ch"), ("PING",)))
    assert wire.replies(2) == [[b"subscribe", b"ch", 1], [b"pong", b""]]


@pytest.mark.parametrize("subscribed", [False, True], ids=["plain", "in subscribe mode"])
def test_reset_turns_replies_back_on(wire: RawClient, subscribed: bool) -> None:
    # RESET clears the reply mode before it answers (Redis' clearClientConnectionState).
    wire.sock.sendall(
        frames(("CLIENT", "REPLY", "OFF"), *([("SUBSCRIBE", "ch")] if subscribed else []), ("SET", "a", 1))
    )
    if subscribed:
        assert wire.replies(1) == [[b"subscribe", b"ch", 1]]
    wire.sock.sendall(frames(("RESET",)))
    assert wire.replies(1) == [b"RESET"]
    wire.sock.sendall(frames(("PING",)))
    assert wire.replies(1) == [b"PONG"]


def test_a_command_pipelined_after_the_last_unsubscribe_runs_outside_subscribe_mode(wire: RawClient) -> None:
    # Redis leaves subscribe mode when it runs the UNSUBSCRIBE, so the next command of the same write
    # runs normally; one sent while a channel is still subscribed is refused.
    wire.sock.sendall(frames(("SUBSCRIBE", "a", "b")))
    assert wire.replies(2) == [[b"subscribe", b"a", 1], [b"subscribe", b"b", 2]]
    wire.sock.sendall(frames(("UNSUBSCRIBE", "a"), ("GET", "x"), ("UNSUBSCRIBE", "b"), ("SET", "k", 1), ("PING",)))
    unsubscribed_a, refused, unsubscribed_b, stored, pong = wire.replies(5)
    assert unsubscribed_a == [b"unsubscribe", b"a", 1]
    assert isinstance(refused, RawError) and "only (P|S)SUBSCRIBE" in str(refused)
    assert (unsubscribed_b, stored, pong) == ([b"unsubscribe", b"b", 0], b"OK", b"PONG")


def _replies_until(wire: RawClient, wanted: object) -> list[object]:
    """Replies up to and including `wanted`, without monitor lines (a monitor also sees the server's own
    background commands, whenever they come)."""
    seen: list[object] = []
    while not seen or seen[-1] != wanted:
        (reply,) = wire.replies(1)
        if not (isinstance(reply, bytes) and re.match(rb"\d+\.\d+ \[", reply)):
            seen.append(reply)
    return seen


def test_a_monitor_while_off_gets_nothing_until_reset(wire: RawClient, r: redis.Redis) -> None:
    # Redis 7.0 (checked on redis-server): MONITOR's OK and every monitor line are dropped while off;
    # RESET ends MONITOR, turns replies on and answers.
    wire.sock.sendall(frames(("CLIENT", "REPLY", "OFF"), ("MONITOR",)))
    time.sleep(0.2)
    r.set("seen-by-monitor", 1)
    wire.sock.sendall(frames(("PING",), ("RESET",), ("PING",)))
    assert wire.replies(2) == [b"RESET", b"PONG"]


def test_skip_before_monitor_silences_its_ok_only(wire: RawClient, r: redis.Redis) -> None:
    wire.sock.sendall(frames(("CLIENT", "REPLY", "SKIP"), ("MONITOR",)))
    time.sleep(0.2)
    r.set("seen-by-monitor", 1)
    lines = []
    while not lines or b'"seen-by-monitor"' not in lines[-1]:
        (line,) = wire.replies(1)
        assert line != b"OK", "MONITOR's reply came through a SKIP"
        assert isinstance(line, bytes)
        lines.append(line)
    wire.sock.sendall(frames(("PING",), ("RESET",), ("PING",)))
    assert _replies_until(wire, b"RESET") == [b"PONG", b"RESET"]  # PING is answered in MONITOR; RESET ends it
    assert wire.replies(1) == [b"PONG"]


def test_skip_silences_reset_too(wire: RawClient) -> None:
    # RESET clears OFF, but a SKIP is already applied to RESET itself (checked on redis-server 7.0).
    wire.sock.sendall(frames(("CLIENT", "REPLY", "SKIP"), ("RESET",), ("PING",)))
    assert wire.replies(1) == [b"PONG"]
    _nothing_more(wire)
