"""MONITOR through the runtime, as on Redis 7.0 with RedisAI and RedisGears loaded.

A monitor's own commands run unless they touch the keyspace, and their replies keep their
order among the feed's lines; the commands the runtime serves itself (`AI.*`, `RG.*`) appear
in every monitor's feed in Redis' own line format. The tests that do not need an owned command
hold for redis-server itself (`--redis-url`); each behaviour was first checked there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

from tests.runtime.conftest import RawClient, RawError, frames, password_stack
from tests.runtime.gears_helpers import unregister_all, wait_for

_LINE = re.compile(rb"(\d+)\.(\d{6}) \[(\d+) ([^\]]+)\] (.*)")


def _is_line(reply: object) -> bool:
    return isinstance(reply, bytes) and _LINE.fullmatch(reply) is not None


def _until(wire: RawClient, done: object) -> tuple[list[object], list[bytes]]:
    """Replies (up to and including `done`) and feed lines, read until `done` arrives."""
    replies: list[object] = []
    lines: list[bytes] = []
    while not replies or replies[-1] != done:
        (reply,) = wire.replies(1)
        if _is_line(reply):
            assert isinstance(reply, bytes)
            lines.append(reply)
        else:
            replies.append(reply)
    return replies, lines


def _start_monitor(wire: RawClient) -> None:
    wire.sock.sendall(frames(("MONITOR",)))
    replies, _ = _until(wire, b"OK")
    assert replies == [b"OK"]


def test_a_monitor_runs_what_redis_lets_it_and_refuses_the_keyspace(wire: RawClient) -> None:
    _start_monitor(wire)
    wire.sock.sendall(frames(("ECHO", "x"), ("GET", "k"), ("CLIENT", "GETNAME"), ("MONITOR",), ("PING",)))
    replies, lines = _until(wire, b"PONG")
    assert len(replies) == 4, replies  # the second MONITOR gets no reply at all, as on Redis
    assert replies[0] == b"x" and replies[2] is None and replies[3] == b"PONG"
    assert isinstance(replies[1], RawError) and str(replies[1]) == "ERR Replica can't interact with the keyspace"
    assert any(line.endswith(b'"ECHO" "x"') for line in lines)  # its own commands are in its feed
    wire.sock.sendall(frames(("RESET",), ("SET", "k", "v"), ("GET", "k")))
    assert _until(wire, b"v")[0] == [b"RESET", b"OK", b"v"]  # RESET ends MONITOR: the keyspace is back


def test_a_monitor_sees_other_clients_commands_in_order(wire: RawClient, server_url: str) -> None:
    _start_monitor(wire)
    other = redis.Redis.from_url(server_url)
    other.set("monitored", "1")
    other.echo("after")
    wire.sock.sendall(frames(("PING",)))
    _, lines = _until(wire, b"PONG")
    texts = [_LINE.fullmatch(line).group(5) for line in lines]  # type: ignore[union-attr]
    assert texts.index(b'"SET" "monitored" "1"') < texts.index(b'"ECHO" "after"')


def test_a_monitor_names_each_client_by_the_address_client_list_gives_it(wire: RawClient, server_url: str) -> None:
    # One client, one address, in MONITOR as in CLIENT LIST (and so in CLIENT KILL ADDR): through the runtime its
    # relayed and owned commands alike (before 2026-12-08 they showed the address of its link to the backing Redis).
    other = redis.Redis.from_url(server_url)
    address = other.client_info()["addr"].encode()
    _start_monitor(wire)
    other.set("named-by", "1")
    owned = _served_by_the_runtime(server_url)
    if owned:
        other.execute_command("AI.TENSORSET", "named-by-t", "INT8", 1, "VALUES", 1)
    wire.sock.sendall(frames(("ECHO", "end")))
    texts = _texts(_until(wire, b"end")[1])
    assert (address, b'"SET" "named-by" "1"') in texts, texts
    if owned:
        assert (address, b'"AI.TENSORSET" "named-by-t" "INT8" "1" "VALUES" "1"') in texts, texts
    other.close()


def test_an_owned_command_in_a_monitor_is_refused_as_a_module_command(wire: RawClient, server_url: str) -> None:
    if not _served_by_the_runtime(server_url):
        pytest.skip("needs the gearcam runtime (redis-server has no AI.* commands)")
    _start_monitor(wire)
    wire.sock.sendall(frames(("AI.TENSORSET", "t", "FLOAT", "1", "VALUES", "1"), ("ECHO", "next")))
    replies, _ = _until(wire, b"next")
    assert isinstance(replies[0], RawError) and str(replies[0]) == "ERR Replica can't interact with the keyspace"
    assert redis.Redis.from_url(server_url).exists("t") == 0


def test_a_monitor_sees_the_runtimes_own_commands_as_redis_would_show_them(wire: RawClient, server_url: str) -> None:
    # RedisAI's commands run inside Redis and are in every monitor's feed; here the runtime serves
    # them, so it writes their lines. Quoting, client address and DB must read as Redis' own lines:
    # the same binary argument goes through a relayed SET (Redis writes that line) and an owned
    # AI.TENSORSET (the runtime writes it).
    if not _served_by_the_runtime(server_url):
        pytest.skip("needs the gearcam runtime (redis-server has no AI.* commands)")
    _start_monitor(wire)
    other = redis.Redis.from_url(server_url, db=3)
    blob = bytes(range(256))
    other.set("plain", blob)
    other.execute_command("ai.tensorset", "tensor", "UINT8", 256, "BLOB", blob)
    wire.sock.sendall(frames(("PING",)))
    _, lines = _until(wire, b"PONG")
    plain = next(_LINE.fullmatch(line) for line in lines if b'"plain"' in line)
    owned = next(_LINE.fullmatch(line) for line in lines if b'"tensor"' in line)
    assert plain is not None and owned is not None
    assert owned.group(3) == plain.group(3) == b"3"  # the DB
    assert owned.group(4) == plain.group(4)  # the same client, as Redis names it
    quoted = plain.group(5).split(b" ", 2)[2]
    assert owned.group(5) == b'"ai.tensorset" "tensor" "UINT8" "256" "BLOB" ' + quoted  # as the client typed it
    assert 0 <= float(owned.group(1) + b"." + owned.group(2)) - float(plain.group(1) + b"." + plain.group(2)) < 5


def test_subscribing_from_a_monitor_is_refused_with_the_way_out(wire: RawClient, server_url: str) -> None:
    if not _served_by_the_runtime(server_url):
        pytest.skip("a deliberate difference: redis-server subscribes a monitor")
    _start_monitor(wire)
    wire.sock.sendall(frames(("SUBSCRIBE", "a", "b"), ("PING",)))
    replies, _ = _until(wire, b"PONG")
    assert isinstance(replies[0], RawError) and "subscribe on another connection" in str(replies[0])
    assert replies[1:] == [b"PONG"]


def _served_by_the_runtime(server_url: str) -> bool:
    # redis-py parses MODULE LIST into one dict a module (until 2026-12-07 this read it as lists, so found no
    # module anywhere and skipped the runtime's own tests below).
    modules = redis.Redis.from_url(server_url).module_list()
    return any(module[b"name"] == b"ai" for module in modules)


def test_a_monitor_sees_a_hooked_owned_command_when_the_hook_runs_it(wire: RawClient, server_url: str) -> None:
    # Redis shows the command a hook's call_next() runs (RM_Call's commands are fed to monitors); the runtime
    # writes that line for the AI.* command it serves, with the arguments the hook passed.
    if not _served_by_the_runtime(server_url):
        pytest.skip("needs the gearcam runtime (redis-server has no AI.* commands)")
    other = redis.Redis.from_url(server_url)
    hook = (
        "GB('CommandReader').map(lambda x: call_next(x[1], *x[2:-1], '7')).register(hook='AI.TENSORSET', mode='sync')"
    )
    assert other.execute_command("RG.PYEXECUTE", hook, "ID", "monitored-hook") == b"OK"
    try:
        _start_monitor(wire)
        assert other.execute_command("AI.TENSORSET", "hooked", "INT8", 1, "VALUES", 1) == b"OK"
        assert other.execute_command("AI.TENSORGET", "hooked", "VALUES") == [7]
        wire.sock.sendall(frames(("PING",)))
        _, lines = _until(wire, b"PONG")
        assert any(line.endswith(b'"AI.TENSORSET" "hooked" "INT8" "1" "VALUES" "7"') for line in lines), lines
    finally:
        unregister_all(other)


def _texts(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Each line's client and command, as the feed shows them."""
    return [(m.group(4), m.group(5)) for m in map(_LINE.fullmatch, lines) if m is not None]


def test_a_monitor_sees_the_clients_commands_and_none_the_runtime_sends_for_itself(
    wire: RawClient, server_url: str
) -> None:
    # RedisAI stores and reads through the module API, which Redis never shows to MONITOR; the runtime does that work
    # with commands (the value's SET, its commit script and the script's calls, the key-event fence, CLIENT ID) on
    # the client's own link. The feed shows the client's commands only, a client's own value that looks like a
    # stored tensor and its own script's calls included (before 2026-12-08 every command of the runtime's was there).
    if not _served_by_the_runtime(server_url):
        pytest.skip("needs the gearcam runtime (redis-server has no AI.* commands)")
    other = redis.Redis.from_url(server_url)
    other.ping()  # connected (and identified by the runtime) before the feed starts
    _start_monitor(wire)
    other.execute_command("AI.TENSORSET", "mt", "FLOAT", 2, "VALUES", 1, 2)  # a new key: the checked commit
    other.execute_command("AI.TENSORSET", "mt", "FLOAT", 2, "VALUES", 1, 3)  # over a tensor: a plain SET
    other.set("lookalike", b"\x00gcmT7 a client's own bytes")
    assert other.execute_command("AI.TENSORGET", "mt", "VALUES") == [1.0, 3.0]  # after a relayed write: a fence
    assert other.eval("return redis.call('GET', KEYS[1])", 1, "lookalike") == b"\x00gcmT7 a client's own bytes"
    other.delete("mt")
    wire.sock.sendall(frames(("PING",)))
    _, lines = _until(wire, b"PONG")
    client = _texts(lines)[0][0]
    assert _texts(lines) == [
        (client, b'"AI.TENSORSET" "mt" "FLOAT" "2" "VALUES" "1" "2"'),
        (client, b'"AI.TENSORSET" "mt" "FLOAT" "2" "VALUES" "1" "3"'),
        (client, b'"SET" "lookalike" "\\x00gcmT7 a client\'s own bytes"'),
        (client, b'"AI.TENSORGET" "mt" "VALUES"'),
        (client, b'"EVAL" "return redis.call(\'GET\', KEYS[1])" "1" "lookalike"'),
        (b"lua", b'"GET" "lookalike"'),
        (client, b'"DEL" "mt"'),
    ], lines


def test_a_monitor_sees_gears_code_and_its_readers_under_rm_calls_client(wire: RawClient, server_url: str) -> None:
    # Redis feeds its monitors what RM_Call runs, under a client with no socket ("?:0", as SLOWLOG shows it): Gears
    # code's execute() and a StreamReader's reads. Gears code's Redis commands go out on its worker's links, its
    # AI.* commands to the runtime, which writes their line; neither shows a link of the runtime's (before 2026-12-08
    # the first showed the worker's link and the second was missing). Secrets stay hidden there as in a client's.
    if not _served_by_the_runtime(server_url):
        pytest.skip("needs the gearcam runtime (redis-server has no AI.* commands)")
    other = redis.Redis.from_url(server_url)
    warm = "GB('ShardsIDReader').map(lambda x: execute('PING')).run()"
    assert other.execute_command("RG.PYEXECUTE", warm) == [[b"PONG"], []]  # the worker started, before the feed
    _start_monitor(wire)
    code = (
        "GB('ShardsIDReader')"
        ".map(lambda x: execute('SET', 'from-code', '1'))"
        ".map(lambda x: execute('AI.TENSORSET', 'from-code-t', 'INT8', '1', 'VALUES', '5')).run()"
    )
    assert other.execute_command("RG.PYEXECUTE", code) == [[b"OK"], []]
    reader = "GB('StreamReader').foreach(lambda x: execute('INCR', 'read-seen')).register('read:*')"
    try:
        assert other.execute_command("RG.PYEXECUTE", reader, "ID", "monitored-reader") == b"OK"
        other.xadd("read:1", {"a": 1})
        wait_for(lambda: other.get("read-seen") == b"1", "the StreamReader's run")
        wire.sock.sendall(frames(("PING",)))
        _, lines = _until(wire, b"PONG")
    finally:
        unregister_all(other)
    texts = _texts(lines)
    client = texts[0][0]
    assert {who for who, _ in texts} == {client, b"?:0"}, lines  # nothing of the runtime's links, or a worker's
    assert (b"?:0", b'"SET" "from-code" "1"') in texts
    assert (b"?:0", b'"AI.TENSORSET" "from-code-t" "INT8" "1" "VALUES" "5"') in texts
    assert (b"?:0", b'"INCR" "read-seen"') in texts
    assert any(who == b"?:0" and what.startswith(b'"XACK" "read:1"') for who, what in texts), lines
    assert other.execute_command("AI.TENSORGET", "from-code-t", "VALUES") == [5]


def test_two_monitors_see_the_same_feed(wire: RawClient, server_url: str) -> None:
    # Each line's fate is decided once (deciding uses up the mark of the runtime's command), so a second monitor is
    # shown what the first is.
    if not _served_by_the_runtime(server_url):
        pytest.skip("needs the gearcam runtime (redis-server has no AI.* commands)")
    second = RawClient("127.0.0.1", int(server_url.rsplit(":", 1)[1]))
    other = redis.Redis.from_url(server_url)
    other.ping()
    try:
        _start_monitor(wire)
        _start_monitor(second)
        for value in (1, 2, 3):
            other.execute_command("AI.TENSORSET", "both", "INT8", 1, "VALUES", value)
            other.set("both-plain", value)
        wire.sock.sendall(frames(("ECHO", "end")))
        first_lines = _until(wire, b"end")[1]
        second.sock.sendall(frames(("ECHO", "end")))
        second_lines = _until(second, b"end")[1]
    finally:
        second.close()
    expected = [w for value in (1, 2, 3) for w in (b'"AI.TENSORSET" "both" "INT8" "1" "VALUES" "%d"' % value,
                                                   b'"SET" "both-plain" "%d"' % value)]  # fmt: skip
    for lines in (first_lines, second_lines):
        assert [what for _, what in _texts(lines) if b"both" in what] == expected, lines


def test_a_gears_workers_links_logging_in_are_not_shown(tmp_path: Path) -> None:
    # A worker's links log in (AUTH, SELECT, CLIENT SETNAME) as the runtime's do: RedisGears' RM_Call needs no
    # login, so a monitor is shown none of it, only Gears code's commands under "?:0" (before 2026-12-08 it was
    # shown `"AUTH" "(redacted)"` and `"SELECT" "2"` under "?:0" when a worker started while a client watched).
    with password_stack(tmp_path, "secret", database="2") as (_, runtime):
        wire = RawClient("127.0.0.1", runtime.port)
        assert wire.call("AUTH", "secret") == b"OK"  # the runtime asks its clients for the backing Redis' password
        _start_monitor(wire)
        other = redis.Redis(port=runtime.port, password="secret")
        code = "GB('ShardsIDReader').map(lambda x: execute('SET', 'from-new-worker', '1')).run()"
        assert other.execute_command("RG.PYEXECUTE", code) == [[b"OK"], []]  # its worker starts now
        wire.sock.sendall(frames(("ECHO", "end")))
        texts = _texts(_until(wire, b"end")[1])
        wire.close()
        other.close()
    assert [what for who, what in texts if who == b"?:0"] == [b'"SET" "from-new-worker" "1"'], texts
    assert len({who for who, _ in texts}) == 2, texts  # the client's and "?:0": no link of the runtime's
