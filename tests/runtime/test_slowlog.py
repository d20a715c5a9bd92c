"""SLOWLOG through the runtime: one log of the backing Redis' entries and the runtime's own commands.

On Redis with RedisAI and RedisGears loaded, `AI.*` and `RG.*` commands are logged with the
others, in the order they ran, with the client's address and name; the runtime's own look at
the backing Redis' log never shows. The thresholds are the backing Redis' settings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.runtime.conftest import Backing, running_stack, unix_stack


@pytest.fixture
def logged(r: redis.Redis) -> Iterator[redis.Redis]:
    """A client of the runtime with every command logged (slowlog-log-slower-than 0), put back after."""
    r.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    r.execute_command("SLOWLOG", "RESET")
    yield r
    r.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000", "slowlog-max-len", "128")
    r.execute_command("SLOWLOG", "RESET")


def _names(entries: list[list[object]]) -> list[bytes]:
    return [e[3][0] for e in entries]  # type: ignore[index]


def test_owned_and_relayed_commands_are_logged_in_the_order_they_ran(logged: redis.Redis) -> None:
    logged.execute_command("CLIENT", "SETNAME", "slow-client")
    blob = np.arange(4, dtype=np.float32).tobytes()
    logged.execute_command("AI.TENSORSET", "slow:t", "FLOAT", 2, 2, "BLOB", blob)
    logged.execute_command("EXISTS", "slow:t")
    logged.execute_command("AI.TENSORGET", "slow:t", "META")
    entries = logged.execute_command("SLOWLOG", "GET", "4")
    assert _names(entries) == [b"AI.TENSORGET", b"EXISTS", b"AI.TENSORSET", b"CLIENT"]
    assert entries[0][3] == [b"AI.TENSORGET", b"slow:t", b"META"]
    ids = [e[0] for e in entries]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4  # ids count up in the order entries were made
    address = logged.execute_command("CLIENT", "INFO").decode().split(" addr=")[1].split()[0]
    for entry in entries:
        assert entry[4] == address.encode()  # CLIENT LIST's address for this client, owned or relayed
        assert entry[5] == b"slow-client"
        assert isinstance(entry[2], int) and entry[2] >= 0
        assert abs(entry[1] - time.time()) < 60
    everything = logged.execute_command("SLOWLOG", "GET", "-1")
    assert b"gearcam-slowlog" not in [e[5] for e in everything]  # the runtime's own looks are left out
    assert logged.execute_command("SLOWLOG", "LEN") == len(everything) + 1  # and that SLOWLOG GET
    assert _names(logged.execute_command("SLOWLOG", "GET", "1")) == [b"SLOWLOG"]  # logged after it ran, as Redis does


def test_a_value_read_back_whole_is_not_logged(logged: redis.Redis) -> None:
    blob = np.arange(4, dtype=np.float32).tobytes()
    logged.execute_command("AI.TENSORSET", "slow:w", "FLOAT", 4, "BLOB", blob)
    logged.execute_command("EXPIRE", "slow:w", 1000)  # an event memory did not expect: the tensor is read from Redis
    misses = logged.info("modules")["ai_tensor_cache_misses"]
    assert logged.execute_command("AI.TENSORGET", "slow:w", "BLOB") == blob
    assert logged.info("modules")["ai_tensor_cache_misses"] > misses  # read whole, as RedisAI reads: unlogged
    names = [n for n in _names(logged.execute_command("SLOWLOG", "GET", "-1")) if n != b"INFO"]
    assert names == [b"AI.TENSORGET", b"EXPIRE", b"AI.TENSORSET", b"SLOWLOG"]


def test_a_pipeline_is_logged_in_the_order_its_commands_ran(logged: redis.Redis) -> None:
    pipe = logged.pipeline(transaction=False)
    for n in range(4):
        pipe.execute_command("AI.TENSORSET", f"slow:p{n}", "FLOAT", 1, "VALUES", n)
        pipe.execute_command("SET", f"slow:plain{n}", n)
    pipe.execute()
    entries = logged.execute_command("SLOWLOG", "GET", "8")
    assert [e[3][1] for e in reversed(entries)] == [
        key for n in range(4) for key in (f"slow:p{n}".encode(), f"slow:plain{n}".encode())
    ]


def test_commands_are_logged_after_the_backing_redis_forgot_the_runtimes_scripts(logged: redis.Redis) -> None:
    logged.execute_command("SCRIPT", "FLUSH")  # as after a restart: the look on the client's link gets NOSCRIPT
    for n in range(3):
        logged.execute_command("AI.TENSORSET", f"slow:f{n}", "FLOAT", 1, "VALUES", n)
    keys = [e[3][1] for e in logged.execute_command("SLOWLOG", "GET", "-1") if e[3][0] == b"AI.TENSORSET"]
    assert keys == [b"slow:f2", b"slow:f1", b"slow:f0"]
    assert _names(logged.execute_command("SLOWLOG", "GET", "-1"))[-1] == b"SLOWLOG"  # the RESET, oldest


def test_a_restricted_users_commands_are_logged_under_its_own_address(logged: redis.Redis, server_url: str) -> None:
    logged.execute_command("ACL", "SETUSER", "slow-user", "reset", "on", ">pw", "~slow:*", "+@all", "-evalsha")
    try:
        user = redis.Redis.from_url(server_url, username="slow-user", password="pw", socket_timeout=30)
        user.execute_command("CLIENT", "SETNAME", "restricted")
        user.execute_command("AI.TENSORSET", "slow:mine", "FLOAT", 1, "VALUES", 1)  # no look on its link: no EVALSHA
        address = user.execute_command("CLIENT", "INFO").decode().split(" addr=")[1].split()[0].encode()
        entries = [e for e in logged.execute_command("SLOWLOG", "GET", "-1") if e[3][0] == b"AI.TENSORSET"]
        assert [(e[3][1], e[4], e[5]) for e in entries] == [(b"slow:mine", address, b"restricted")]
        user.close()
    finally:
        logged.execute_command("ACL", "DELUSER", "slow-user")


def test_an_execution_is_logged_with_no_more_than_the_time_its_client_waited(logged: redis.Redis) -> None:
    logged.execute_command("AI.TENSORSET", "slow:a", "FLOAT", 2, "VALUES", 1, 2)
    began = time.monotonic()
    logged.execute_command(
        "AI.DAGEXECUTE", "LOAD", 1, "slow:a", "PERSIST", 1, "slow:b", "|>",
        "AI.TENSORSET", "slow:b", "FLOAT", 2, "VALUES", 3, 4, "|>",
        "AI.TENSORGET", "slow:a", "VALUES",
    )  # fmt: skip
    waited_us = (time.monotonic() - began) * 1_000_000
    (entry,) = [e for e in logged.execute_command("SLOWLOG", "GET", "3") if e[3][0] == b"AI.DAGEXECUTE"]
    assert 0 < entry[2] <= waited_us


def test_gears_codes_calls_of_the_modules_commands_are_logged_as_redis_logs_rm_call(logged: redis.Redis) -> None:
    # Redis logs what RM_Call runs, under its client with no socket ("?:0") and no name.
    code = "GB('ShardsIDReader').map(lambda x: execute('AI.TENSORSET', 'slow:g', 'FLOAT', 1, 'VALUES', 3)).run()"
    assert logged.execute_command("RG.PYEXECUTE", code) == [[b"OK"], []]
    entries = logged.execute_command("SLOWLOG", "GET", "-1")
    (tensorset,) = [e for e in entries if e[3][0] == b"AI.TENSORSET"]
    assert tensorset[3] == [b"AI.TENSORSET", b"slow:g", b"FLOAT", b"1", b"VALUES", b"3"]
    assert (tensorset[4], tensorset[5]) == (b"?:0", b"")
    pyexecute = [e for e in entries if e[3][0] == b"RG.PYEXECUTE"]
    assert pyexecute and pyexecute[0][0] > tensorset[0]  # the execution that ran it is logged once it ended


def test_gears_codes_redis_commands_are_logged_under_rm_calls_client_too(logged: redis.Redis) -> None:
    # Gears code's Redis commands go out on its worker's links; Redis logs what RM_Call runs under "?:0" with no name,
    # a script's calls before the script as for any client (before 2026-12-08 these entries were left out, as the
    # runtime's own links' are).
    code = (
        "GB('ShardsIDReader')"
        ".map(lambda x: execute('SET', 'slow:plain', 'v'))"
        ".map(lambda x: execute('EVAL', \"return redis.call('GET', KEYS[1])\", '1', 'slow:plain')).run()"
    )
    assert logged.execute_command("RG.PYEXECUTE", code) == [[b"v"], []]
    entries = logged.execute_command("SLOWLOG", "GET", "-1")
    mine = [(e[3], e[4], e[5]) for e in reversed(entries) if b"slow:plain" in e[3]]
    assert mine == [
        ([b"SET", b"slow:plain", b"v"], b"?:0", b""),
        ([b"GET", b"slow:plain"], b"?:0", b""),
        ([b"EVAL", b"return redis.call('GET', KEYS[1])", b"1", b"slow:plain"], b"?:0", b""),
    ], entries


def test_gears_codes_commands_are_logged_over_a_unix_socket_where_every_client_has_one_address(
    tmp_path: Path,
) -> None:
    # `invoke up` reaches its embedded Redis over a unix socket, where Redis logs every client under the socket's
    # address: the workers' links are told by their name (CODE_NAME), the runtime's own ones by theirs (before
    # 2026-12-08 Gears code's entries were left out there, with the runtime's).
    with unix_stack(tmp_path) as (_, runtime):
        client = redis.Redis(port=runtime.port, socket_timeout=30)
        client.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        client.execute_command("SLOWLOG", "RESET")
        code = "GB('ShardsIDReader').map(lambda x: execute('SET', 'slow:unix', 'v')).run()"
        assert client.execute_command("RG.PYEXECUTE", code) == [[b"OK"], []]
        client.execute_command("AI.TENSORSET", "slow:unix-t", "FLOAT", 1, "VALUES", 1)
        entries = client.execute_command("SLOWLOG", "GET", "-1")
        assert [(e[3], e[4], e[5]) for e in entries if e[3][0] == b"SET"] == [
            ([b"SET", b"slow:unix", b"v"], b"?:0", b"")
        ]
        assert [e[3][0] for e in entries if b"slow:unix-t" in e[3]] == [b"AI.TENSORSET"]  # not the runtime's SET
        assert not [e for e in entries if e[5] in (b"gearcam-runtime", b"gearcam-gears")], entries
        client.close()


def test_config_set_through_the_runtime_holds_for_the_next_command(logged: redis.Redis) -> None:
    logged.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "-1")
    logged.execute_command("AI.TENSORSET", "slow:off", "FLOAT", 1, "VALUES", 1)
    logged.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    logged.execute_command("AI.TENSORSET", "slow:on", "FLOAT", 1, "VALUES", 1)
    keys = [e[3][1] for e in logged.execute_command("SLOWLOG", "GET", "-1") if e[3][0] == b"AI.TENSORSET"]
    assert keys == [b"slow:on"]


def test_a_look_that_read_the_thresholds_before_a_config_set_does_not_undo_it(backing: Backing) -> None:
    from gearcam.runtime.relay import Address
    from gearcam.runtime.slowlog import SlowLog

    async def scenario() -> int:
        log = SlowLog(Address(host="127.0.0.1", port=backing.port), 5.0, lambda address: address)
        await log.catch_up()
        look = asyncio.ensure_future(log.catch_up())  # reads slowlog-log-slower-than: 10000
        await asyncio.sleep(0)
        log.configured([b"CONFIG", b"SET", b"slowlog-log-slower-than", b"0"])  # answered while it was out
        await look
        await log.close()
        return log.slower_than_us

    assert asyncio.run(scenario()) == 0


def test_slowlog_max_len_bounds_the_log_and_reset_empties_it(logged: redis.Redis) -> None:
    logged.execute_command("CONFIG", "SET", "slowlog-max-len", "3")
    for n in range(5):
        logged.execute_command("AI.TENSORSET", f"slow:{n}", "FLOAT", 1, "VALUES", n)
    entries = logged.execute_command("SLOWLOG", "GET", "-1")
    assert len(entries) == 3 and [e[3][1] for e in entries] == [b"slow:4", b"slow:3", b"slow:2"]
    newest_id = entries[0][0]
    assert logged.execute_command("SLOWLOG", "RESET") == b"OK"
    assert logged.execute_command("SLOWLOG", "LEN") == 1  # SLOWLOG RESET itself, logged after it ran
    logged.execute_command("AI.TENSORGET", "slow:4", "META")
    after = logged.execute_command("SLOWLOG", "GET")
    assert _names(after)[:2] == [b"AI.TENSORGET", b"SLOWLOG"] and after[0][0] > newest_id  # ids go on counting


def test_long_commands_are_cut_as_redis_cuts_them(logged: redis.Redis, direct: redis.Redis) -> None:
    values = [str(n) for n in range(40)]
    logged.execute_command("AI.TENSORSET", "slow:long", "FLOAT", 40, "VALUES", *values)
    logged.execute_command("AI.TENSORSET", "slow:blob", "INT8", 200, "BLOB", b"x" * 200)
    logged.execute_command("RPUSH", "slow:list", *(["y" * 200] + values))  # relayed: cut by Redis itself
    relayed, blob, long = logged.execute_command("SLOWLOG", "GET", "3")
    assert len(long[3]) == 32 and long[3][-1] == b"... (14 more arguments)" and long[3][-2] == values[25].encode()
    assert blob[3][-1] == b"x" * 128 + b"... (72 more bytes)"
    assert len(relayed[3]) == 32 and relayed[3][-1] == b"... (12 more arguments)"  # 43 arguments
    assert relayed[3][2] == b"y" * 128 + b"... (72 more bytes)"


def test_settings_changed_on_the_backing_redis_itself_hold_within_a_second(
    logged: redis.Redis, direct: redis.Redis
) -> None:
    def settled_then(key: str) -> None:
        time.sleep(1.2)  # past the runtime's trust in the thresholds it read last
        logged.execute_command("AI.TENSORSET", "slow:judged-by-the-old", "FLOAT", 1, "VALUES", 1)  # reads them again
        time.sleep(0.3)
        logged.execute_command("AI.TENSORSET", key, "FLOAT", 1, "VALUES", 1)

    direct.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "-1")
    settled_then("slow:quiet")
    direct.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    settled_then("slow:loud")
    keys = [e[3][1] for e in logged.execute_command("SLOWLOG", "GET", "-1") if e[3][0] == b"AI.TENSORSET"]
    assert b"slow:loud" in keys and b"slow:quiet" not in keys


def test_entries_made_after_a_redis_restart_are_taken_in(tmp_path: Path) -> None:
    with running_stack(tmp_path, ["--slowlog-log-slower-than", "0"]) as (backing, runtime):
        client = redis.Redis(port=runtime.port, socket_timeout=30)
        for n in range(20):
            client.execute_command("AI.TENSORSET", f"slow:{n}", "FLOAT", 1, "VALUES", n)
        assert client.execute_command("SLOWLOG", "LEN") >= 20
        direct = redis.Redis(port=backing.port)
        assert direct.execute_command("SLOWLOG", "GET", "1")[0][0] >= 20  # well past where its ids start again
        direct.close()
        _restart(backing)
        client = redis.Redis(port=runtime.port, socket_timeout=30)
        _until_answered(client)
        client.execute_command("SET", "after-restart", "1")
        client.execute_command("AI.TENSORSET", "slow:after", "FLOAT", 1, "VALUES", 1)
        names = [e[3][:2] for e in client.execute_command("SLOWLOG", "GET", "20")]
        assert [b"AI.TENSORSET", b"slow:after"] in names and [b"SET", b"after-restart"] in names
        client.close()


def _restart(backing: Backing) -> None:
    backing.stop()
    backing.start()


def _until_answered(client: redis.Redis) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_what_the_runtime_sends_for_its_own_commands_is_told_from_what_clients_send() -> None:
    from gearcam.runtime.ai.store import COMMIT_TYPED, KIND_MODEL
    from gearcam.runtime.keyevents import FENCE_CHANNEL
    from gearcam.runtime.relay import INTERNAL_NAME
    from gearcam.runtime.slowlog import internal, shown

    runtimes = [
        ([b"GET", b"k"], INTERNAL_NAME),  # anything on the runtime's own links
        ([b"SET", b"k", KIND_MODEL + b"..."], b""),
        ([b"SET", b"gearcam:tmp:1f", b"v", b"PX", b"60000"], b""),
        ([b"GETRANGE", b"k", b"0", b"255"], b""),
        ([b"GETRANGE", b"k", b"0", b"4095"], b""),
        ([b"GETRANGE", b"k", b"0", b"8191"], b""),  # a long header
        ([b"GETRANGE", b"k", b"0", b"-1"], b""),  # a whole value
        ([b"EVALSHA", COMMIT_TYPED.sha, b"2", b"k", b"t", b"x"], b""),
        ([b"SCRIPT", b"LOAD", *shown([COMMIT_TYPED.source])], b""),
        ([b"PUBLISH", FENCE_CHANNEL, b"7"], b""),
    ]
    clients = [
        ([b"GET", b"k"], b"app"),
        ([b"SET", b"k", b"plain"], b""),
        ([b"GETRANGE", b"k", b"0", b"254"], b""),
        ([b"GETRANGE", b"k", b"1", b"-1"], b""),
        ([b"GETRANGE", b"k", b"0", b"-2"], b""),
        ([b"EVALSHA", b"0" * 40, b"0"], b""),
        ([b"SCRIPT", b"LOAD", b"return 1"], b""),
        ([b"PUBLISH", b"news", b"7"], b""),
    ]
    assert [internal(argv, name) for argv, name in runtimes] == [True] * len(runtimes)
    assert [internal(argv, name) for argv, name in clients] == [False] * len(clients)
