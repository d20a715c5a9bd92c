"""The AI store's consistency rule (docs/runtime.md, "What the runtime keeps in memory").

The runtime answers AI reads from memory while the keyspace events say a key is unchanged.
These tests change keys every way a user can (relayed, pipelined, directly on the backing
Redis, FLUSHALL, a Redis restart) and check that no AI command ever sees the old value.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.conftest import wait_for
from tests.runtime.conftest import Backing, Runtime, running_stack
from tests.runtime.models import add_model, linear_model


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Backing, Runtime]]:
    with running_stack(tmp_path) as both:
        yield both


def _values(client: redis.Redis, key: str) -> list[bytes]:
    values: list[bytes] = client.execute_command("AI.TENSORGET", key, "VALUES")
    return values


def _tensorset(client: redis.Redis, key: str, *values: int) -> None:
    client.execute_command("AI.TENSORSET", key, "INT32", len(values), "VALUES", *values)


def _wrong_type(client: redis.Redis, key: str) -> bool:
    """True once AI.TENSORGET says the key holds another type."""
    try:
        _values(client, key)
    except redis.ResponseError as exc:
        return str(exc).startswith("WRONGTYPE")
    return False


def _gone(client: redis.Redis, key: str) -> bool:
    """True once AI.TENSORGET says the key is empty (a deletion the runtime has seen)."""
    try:
        _values(client, key)
    except redis.ResponseError as exc:
        return "tensor key is empty" in str(exc)
    return False


def _trusted_keys(client: redis.Redis) -> int:
    return int(client.info("modules")["ai_keys_trusted"])


def test_a_tensor_written_through_the_runtime_is_a_redis_key(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1, 2)
    _tensorset(client, "t", 3, 4)  # known to be a tensor now: the overwrite is a plain SET
    direct = redis.Redis(port=backing.port)
    assert client.exists("t") == 1 and direct.exists("t") == 1
    assert client.type("t") == b"AI_TENSOR"
    assert _values(client, "t") == [3, 4]
    assert _trusted_keys(client) >= 1


def test_a_pipelined_del_makes_the_next_tensorget_fail(pair: tuple[Backing, Runtime]) -> None:
    _, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1, 2)
    assert _values(client, "t") == [1, 2]  # now answered from memory
    pipe = client.pipeline(transaction=False)
    pipe.delete("t")
    pipe.execute_command("AI.TENSORGET", "t", "VALUES")
    deleted, error = pipe.execute(raise_on_error=False)
    assert deleted == 1
    assert isinstance(error, redis.ResponseError) and "tensor key is empty" in str(error)


def test_a_pipelined_overwrite_by_another_type_is_seen_by_tensorset(pair: tuple[Backing, Runtime]) -> None:
    _, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1, 2)
    _tensorset(client, "t", 1, 2)
    pipe = client.pipeline(transaction=False)
    pipe.set("t", "a plain string")
    pipe.execute_command("AI.TENSORSET", "t", "INT32", 1, "VALUES", 9)
    pipe.execute_command("AI.MODELEXECUTE", "nomodel", "INPUTS", 1, "t", "OUTPUTS", 1, "o")
    ok, refused, _ = pipe.execute(raise_on_error=False)
    assert ok is True
    assert isinstance(refused, redis.ResponseError) and "WRONGTYPE" in str(refused)
    assert client.get("t") == b"a plain string"  # not overwritten


def test_writes_made_directly_to_redis_are_seen(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    other = runtime.client()
    direct = redis.Redis(port=backing.port)
    _tensorset(client, "t", 1, 2)
    _tensorset(other, "u", 5, 6)
    assert _values(client, "t") == [1, 2]
    # Another runtime client's write, then a direct copy over the key: events withdraw what memory knew.
    _tensorset(other, "t", 7, 8)
    wait_for(lambda: _values(client, "t") == [7, 8], what="another client's overwrite")
    direct.copy("u", "t", replace=True)
    wait_for(lambda: _values(client, "t") == [5, 6], what="a direct COPY over the tensor")
    direct.delete("t")
    wait_for(lambda: _gone(client, "t"), what="a direct DEL")
    direct.expire("u", 1)
    wait_for(lambda: not direct.exists("u"), what="the expiry")
    with pytest.raises(redis.ResponseError, match="tensor key is empty"):
        _values(client, "u")


def test_a_store_command_over_a_tensor_is_seen_though_stream_and_collection_events_are_not_counted(
    pair: tuple[Backing, Runtime],
) -> None:
    """Memory skips the events of commands that only act on lists, hashes, sets, sorted sets and streams (a
    camera's XADD); SUNIONSTORE, ZRANGESTORE and SORT ... STORE replace a key of any type, and are seen."""
    backing, runtime = pair
    client = runtime.client()
    direct = redis.Redis(port=backing.port)
    try:
        direct.sadd("members", "a")
        direct.zadd("scores", {"a": 1})
        direct.rpush("items", "3", "1")
        for key, overwrite in (
            ("t1", lambda: direct.sunionstore("t1", ["members"])),
            ("t2", lambda: direct.zrangestore("t2", "scores", 0, -1)),
            ("t3", lambda: direct.sort("items", store="t3")),
        ):
            _tensorset(client, key, 1, 2)
            assert _values(client, key) == [1, 2]
            client.xadd(key + ":frames", {"img": "x"})  # events memory does not count, on other keys
            client.hset(key + ":meta", "f", "v")
            assert _values(client, key) == [1, 2]
            overwrite()
            wait_for(lambda key=key: _wrong_type(client, key), what=f"{key} replaced by another type")
    finally:
        client.close()
        direct.close()


def test_key_miss_and_new_key_events_leave_what_memory_holds(pair: tuple[Backing, Runtime]) -> None:
    """Gears' keymiss hooks turn on class `m` (and a user may turn on `n`): the misses and creations these
    announce change no value, so a tensor written to a new key stays in memory, not read back whole."""
    backing, runtime = pair
    client = runtime.client()
    direct = redis.Redis(port=backing.port)
    try:
        flags = direct.config_get("notify-keyspace-events")["notify-keyspace-events"]
        direct.config_set("notify-keyspace-events", flags + "mn")
        info = client.info("modules")
        for n in range(5):
            _tensorset(client, f"fresh{n}", n, n)  # the commit's TYPE of the absent key: a keymiss event
        client.exists("fresh0")  # relayed: the next AI read waits (a fence) until every event before is counted
        assert _values(client, "fresh4") == [4, 4]
        after = client.info("modules")
        assert after["ai_keys_trusted"] - info["ai_keys_trusted"] == 5  # each write's events were its own
        assert after["ai_keys_withdrawn"] == info["ai_keys_withdrawn"]
        assert all(_values(client, f"fresh{n}") == [n, n] for n in range(5))
        assert client.info("modules")["ai_tensor_cache_misses"] == info["ai_tensor_cache_misses"]  # from memory
        direct.delete("fresh0")  # a foreign event still withdraws the key
        wait_for(lambda: _gone(client, "fresh0"), what="the deleted tensor gone")
    finally:
        client.close()
        direct.close()


def test_flushall_through_the_runtime_forgets_everything(pair: tuple[Backing, Runtime]) -> None:
    _, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1, 2)
    assert _values(client, "t") == [1, 2]
    pipe = client.pipeline(transaction=False)
    pipe.flushall()
    pipe.execute_command("AI.TENSORGET", "t", "VALUES")
    flushed, error = pipe.execute(raise_on_error=False)
    assert flushed is True
    assert isinstance(error, redis.ResponseError) and "tensor key is empty" in str(error)


def test_a_flush_from_a_lua_script_or_a_transaction_forgets_everything(pair: tuple[Backing, Runtime]) -> None:
    """A Lua script's FLUSHALL, FLUSHDB or SWAPDB causes no key events either; the runtime saw only the
    EVAL and went on answering from memory what Redis no longer had. EVALSHA of a script loaded through
    the runtime, and scripts inside MULTI, too."""
    _, runtime = pair
    client = runtime.client()
    flushing = "redis.call('FLUSHALL') return 1"
    sha = client.script_load("return redis.call('flushdb')")
    swap = "redis.call('SWAPDB', 0, 1) return 1"
    cases = {
        "EVAL": lambda: client.eval(flushing, 0),
        "EVALSHA": lambda: client.evalsha(sha, 0),
        "SWAPDB": lambda: client.eval(swap, 0),
        "MULTI": lambda: client.pipeline(transaction=True).eval(flushing, 0).execute(),
    }
    for how, flush in cases.items():
        _tensorset(client, "t", 1, 2)
        assert _values(client, "t") == [1, 2]
        flush()
        assert _gone(client, "t"), how
        client.flushall()


def test_select_keeps_databases_apart(pair: tuple[Backing, Runtime]) -> None:
    _, runtime = pair
    zero = runtime.client()
    one = redis.Redis(port=runtime.port, db=1, protocol=2)
    _tensorset(zero, "t", 1, 2)
    _tensorset(one, "t", 3, 4)
    assert _values(zero, "t") == [1, 2]
    assert _values(one, "t") == [3, 4]
    one.delete("t")
    assert _values(zero, "t") == [1, 2]


def test_junk_published_on_key_event_channels_misleads_nothing(pair: tuple[Backing, Runtime]) -> None:
    """Any client may PUBLISH on __keyevent@...__ channels: malformed or fake, thousands of distinct ones
    (more than the parsed channel names the runtime keeps), and real events in another DB still land."""
    backing, runtime = pair
    three = redis.Redis(port=runtime.port, db=3, protocol=2)
    direct = redis.Redis(port=backing.port, db=3)
    _tensorset(three, "t", 1, 2)
    assert _values(three, "t") == [1, 2]
    pipe = direct.pipeline(transaction=False)
    for i in range(6000):
        pipe.publish(f"__keyevent@x{i}__:del", "t")  # no DB number
        pipe.publish(f"__keyevent@{i + 16}__:del", "t")  # another DB's "event" for the same key name
    pipe.publish("__keyevent@3__:no-such-event", "t")
    pipe.execute()
    assert _values(three, "t") == [1, 2]  # fake events for other DBs changed nothing; the key is unchanged
    assert runtime.client().ping()
    direct.delete("t")
    wait_for(lambda: _gone(three, "t"), what="a direct DEL in DB 3 after the junk")


def test_a_redis_restart_serves_what_redis_loaded_not_what_memory_held(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    _tensorset(client, "t", 1, 2)
    backing.save()
    _tensorset(client, "t", 3, 4)  # never saved: Redis has no save points in this fixture
    assert _values(client, "t") == [3, 4]
    backing.stop()
    backing.start()
    client = runtime.client()
    wait_for(lambda: _answers(client), what="the runtime serving again")
    assert _values(client, "t") == [1, 2]


def test_a_model_replaced_behind_the_runtimes_back_is_reloaded(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    first, _, _ = linear_model(features=4, classes=3, seed=1)
    second, _, _ = linear_model(features=4, classes=3, seed=2)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", first)
    client.execute_command("AI.MODELSTORE", "other", "ONNX", "CPU", "BLOB", second)
    client.execute_command("AI.TENSORSET", "x", "FLOAT", *x.shape, "BLOB", x.tobytes())

    def run(model: str) -> bytes:
        client.execute_command("AI.MODELEXECUTE", model, "INPUTS", 1, "x", "OUTPUTS", 1, "y")
        blob: bytes = client.execute_command("AI.TENSORGET", "y", "BLOB")
        return blob

    before, expected = run("m"), run("other")
    assert before != expected
    assert run("m") == before  # from memory
    redis.Redis(port=backing.port).copy("other", "m", replace=True)
    wait_for(lambda: run("m") == expected, what="the replaced model")


def test_tensors_survive_a_runtime_restart_and_deletes_still_apply(pair: tuple[Backing, Runtime]) -> None:
    backing, runtime = pair
    client = runtime.client()
    client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    client.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    client.close()
    runtime.stop()
    redis.Redis(port=backing.port).delete("a")
    runtime.start()
    client = runtime.client()
    with pytest.raises(redis.ResponseError, match="tensor key is empty"):
        client.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_memory_holds_the_live_tensors_not_their_history(pair: tuple[Backing, Runtime]) -> None:
    _, runtime = pair
    client = runtime.client()
    blob = np.ones((256, 1024), dtype=np.float32).tobytes()  # 1 MiB
    for _ in range(40):
        client.execute_command("AI.TENSORSET", "frame", "FLOAT", 256, 1024, "BLOB", blob)
    held = int(client.info("modules")["ai_tensor_cache_bytes"])
    assert len(blob) <= held < 3 * len(blob)  # the current value (an in-flight one at most), not 40 versions
    client.delete("frame")
    wait_for(
        lambda: int(client.info("modules")["ai_tensor_cache_bytes"]) == 0, what="the deleted tensor leaving memory"
    )


def test_a_tensor_being_replaced_leaves_memory_while_its_successor_arrives(pair: tuple[Backing, Runtime]) -> None:
    _, runtime = pair
    client = runtime.client()
    old = np.full((256, 1024), 1, dtype=np.float32)
    new = np.full((256, 1024), 2, dtype=np.float32).tobytes()  # 1 MiB: a bulk received on its own
    client.execute_command("AI.TENSORSET", "frame", "FLOAT", 256, 1024, "BLOB", old.tobytes())
    assert int(client.info("modules")["ai_tensor_cache_bytes"]) == old.nbytes
    args = [b"AI.TENSORSET", b"frame", b"FLOAT", b"256", b"1024", b"BLOB"]
    head = b"*7\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args) + b"$%d\r\n" % len(new)
    with socket.create_connection(("127.0.0.1", runtime.port)) as writer:
        writer.sendall(head + new[:100_000])
        wait_for(lambda: int(client.info("modules")["ai_tensor_cache_bytes"]) == 0, what="the old copy leaving memory")
        # Until the write lands, the key holds the old tensor: a read gets it from Redis.
        got = client.execute_command("AI.TENSORGET", "frame", "BLOB")
        np.testing.assert_array_equal(np.frombuffer(got, np.float32).reshape(256, 1024), old)
        writer.sendall(new[100_000:] + b"\r\n")
        assert writer.recv(16) == b"+OK\r\n"
    assert client.execute_command("AI.TENSORGET", "frame", "BLOB") == new
    assert int(client.info("modules")["ai_tensor_cache_bytes"]) == len(new)


def test_debug_reload_serves_what_redis_reloaded(tmp_path: Path) -> None:
    with running_stack(tmp_path, ["--enable-debug-command", "yes"]) as (_, runtime):
        client = runtime.client()
        _tensorset(client, "t", 1, 2)
        client.save()
        _tensorset(client, "t", 3, 4)
        assert _values(client, "t") == [3, 4]
        assert client.execute_command("DEBUG", "RELOAD", "NOSAVE") == b"OK"
        assert _values(client, "t") == [1, 2]
