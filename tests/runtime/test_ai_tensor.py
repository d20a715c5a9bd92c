"""AI.TENSORSET / AI.TENSORGET against RedisAI 1.2's syntax, reply shapes and error strings."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from tests.runtime.conftest import error_of

DTYPES = {
    "FLOAT": np.float32, "DOUBLE": np.float64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16, "BOOL": np.bool_,
}  # fmt: skip


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_every_dtype_round_trips_through_blob(r: redis.Redis, dtype: str) -> None:
    data = (np.arange(6) % 2).astype(DTYPES[dtype]).reshape(2, 3)
    assert r.execute_command("AI.TENSORSET", "t", dtype, 2, 3, "BLOB", data.tobytes()) == b"OK"
    reply = r.execute_command("AI.TENSORGET", "t", "META", "BLOB")
    assert reply == [b"dtype", dtype.encode(), b"shape", [2, 3], b"blob", data.tobytes()]


def test_values_of_floats_are_bulk_strings_as_redis_formats_doubles(r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 3, "VALUES", "1", "0.1", "-2.5")
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"1", b"0.10000000149011612", b"-2.5"]


def test_values_of_integers_are_integers(r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "INT32", 2, "VALUES", 7, 8)
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [7, 8]


def test_negative_integers_within_range_are_accepted_unlike_redisai(r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "INT8", 2, "VALUES", -1, -128)
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [-1, -128]


def test_a_tensor_without_data_is_zero_filled(r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "DOUBLE", 2, 2)
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"0"] * 4


def test_string_tensors_use_nul_terminated_elements(r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "s", "STRING", 2, "VALUES", "cat", "dog")
    assert r.execute_command("AI.TENSORGET", "s", "BLOB") == b"cat\0dog\0"
    r.execute_command("AI.TENSORSET", "s2", "STRING", 2, "BLOB", b"a\0bc\0")
    assert r.execute_command("AI.TENSORGET", "s2", "VALUES") == [b"a", b"bc"]


def test_a_string_value_may_end_with_one_nul_as_redisai_allows(r: redis.Redis) -> None:
    assert r.execute_command("AI.TENSORSET", "s", "STRING", 2, "VALUES", "str_val1", "str_val2\0") == b"OK"
    assert r.execute_command("AI.TENSORGET", "s", "VALUES") == [b"str_val1", b"str_val2"]
    assert r.execute_command("AI.TENSORGET", "s", "BLOB") == b"str_val1\0str_val2\0"
    assert (
        error_of(r, "AI.TENSORSET", "s", "STRING", 1, "VALUES", "a\0\0") == "ERR C-string value contains null character"
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), [b"dtype", b"INT8", b"shape", [2], b"blob", b"\x01\x02"]),
        (("META",), [b"dtype", b"INT8", b"shape", [2]]),
        (("BLOB",), b"\x01\x02"),
        (("VALUES",), [1, 2]),
        (("META", "BLOB"), [b"dtype", b"INT8", b"shape", [2], b"blob", b"\x01\x02"]),
        (("META", "VALUES"), [b"dtype", b"INT8", b"shape", [2], b"values", [1, 2]]),
    ],
)
def test_tensorget_reply_shapes(r: redis.Redis, flags: tuple[str, ...], expected: object) -> None:
    r.execute_command("AI.TENSORSET", "t", "INT8", 2, "VALUES", 1, 2)
    assert r.execute_command("AI.TENSORGET", "t", *flags) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("t", "FLOAT"), "ERR wrong number of arguments for 'AI.TENSORSET' command"),
        (("t", "INT128", 1), "ERR invalid data type"),
        (("t", "FLOAT", "x"), "ERR invalid or negative value found in tensor shape"),
        (("t", "FLOAT", -2), "ERR invalid or negative value found in tensor shape"),
        (("t", "FLOAT", 1, "BLOB"), "ERR a single binary string should come after the BLOB argument in 'AI.TENSORSET' command"),
        (("t", "FLOAT", 1, "BLOB", b"\0" * 4, b"x"), "ERR a single binary string should come after the BLOB argument in 'AI.TENSORSET' command"),
        (("t", "FLOAT", 2, "VALUES", 1), "ERR wrong number of values was given in 'AI.TENSORSET' command"),
        (("t", "FLOAT", 2, "BLOB", b"\0" * 7), "ERR data length does not match tensor shape and type"),
        (("t", "FLOAT", 1, "VALUES", "abc"), "ERR invalid value"),
        (("t", "INT8", 1, "VALUES", 128), "ERR invalid value"),
        (("t", "UINT8", 1, "VALUES", -1), "ERR invalid value"),
        (("t", "INT32", 1, "VALUES", "1.5"), "ERR invalid value"),
        (("t", "BOOL", 2, "BLOB", b"\x01\x02"), "ERR BOOL tensor elements must be 0 or 1"),
        (("t", "STRING", 1, "VALUES", b"a\0b"), "ERR C-string value contains null character"),
        (("t", "STRING", 2, "BLOB", b"abc\0"), "ERR Number of string elements in data blob does not match tensor length"),
    ],
)  # fmt: skip
def test_tensorset_errors(r: redis.Redis, args: tuple[object, ...], message: str) -> None:
    assert error_of(r, "AI.TENSORSET", *args) == message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("missing",), "ERR tensor key is empty or in a different shard"),
        (("t", "JSON"), "ERR unsupported data format"),
        (("t", "BLOB", "VALUES"), "ERR both BLOB and VALUES specified"),
        (("t", "META", "BLOB", "VALUES", "X"), "ERR wrong number of arguments for 'AI.TENSORGET' command"),
    ],
)
def test_tensorget_errors(r: redis.Redis, args: tuple[object, ...], message: str) -> None:
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1)
    assert error_of(r, "AI.TENSORGET", *args) == message


def test_a_key_of_another_type_is_refused_and_kept(r: redis.Redis) -> None:
    r.rpush("list", "a")
    wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert error_of(r, "AI.TENSORSET", "list", "FLOAT", 1) == wrongtype
    assert error_of(r, "AI.TENSORGET", "list") == wrongtype
    assert r.lrange("list", 0, -1) == [b"a"]


def test_writes_go_on_after_the_backing_redis_forgot_the_runtimes_scripts(r: redis.Redis, direct: redis.Redis) -> None:
    """SCRIPT FLUSH on the backing Redis (or a SCRIPT FLUSH relayed, a failover to a fresh replica) drops the
    checked commit's script from under a connection that loaded it: its EVALSHA answers NOSCRIPT and the write
    sends the script itself. Before, every new key's AI.TENSORSET on that connection answered NOSCRIPT."""
    r.execute_command("AI.TENSORSET", "loaded", "FLOAT", 1, "VALUES", 1)
    for flush in (direct, r):
        flush.script_flush()
        for key in ("new-a", "new-b"):
            assert r.execute_command("AI.TENSORSET", key, "FLOAT", 1, "VALUES", 2) == b"OK"
            assert r.execute_command("AI.TENSORGET", key, "VALUES") == [b"2"]
            r.delete(key)
    r.set("plain", "v")
    direct.script_flush()
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):  # the commit still checks the key it writes
        r.execute_command("AI.TENSORSET", "plain", "FLOAT", 1, "VALUES", 1)
    assert r.get("plain") == b"v"


def test_an_empty_string_is_a_key_of_another_type_not_an_empty_key(r: redis.Redis) -> None:
    r.set("blank", "")  # GETRANGE answers it as it answers an absent key
    wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert error_of(r, "AI.TENSORGET", "blank") == wrongtype
    assert error_of(r, "AI.MODELGET", "blank") == wrongtype
    assert error_of(r, "AI.SCRIPTGET", "blank") == wrongtype
    assert error_of(r, "AI.TENSORGET", "absent") == "ERR tensor key is empty or in a different shard"
    assert r.get("blank") == b""


def test_the_key_is_checked_before_the_arguments_as_in_redisai(r: redis.Redis) -> None:
    r.set("k", "v")
    wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert error_of(r, "AI.TENSORGET", "k", "unsupported") == wrongtype
    assert error_of(r, "AI.TENSORSET", "k", "INT128", 1) == wrongtype
    assert error_of(r, "AI.TENSORSET", "k", "FLOAT", 2, "VALUES", 1) == wrongtype
    assert error_of(r, "AI.TENSORGET", "missing", "unsupported") == "ERR tensor key is empty or in a different shard"
    assert error_of(r, "AI.TENSORSET", "missing", "INT128", 1) == "ERR invalid data type"
    assert error_of(r, "AI.TENSORGET", "k", "META", "BLOB", "VALUES", "x") == (
        "ERR wrong number of arguments for 'AI.TENSORGET' command"
    )
    assert r.get("k") == b"v"


def test_type_names_the_module_type_and_plain_key_commands_work(r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1)
    r.set("plain", "x")
    assert r.type("t") == b"AI_TENSOR"
    assert r.type("plain") == b"string"
    assert r.exists("t") == 1
    assert r.expire("t", 100) and 0 < r.ttl("t") <= 100
    assert r.delete("t") == 1
    assert error_of(r, "AI.TENSORGET", "t") == "ERR tensor key is empty or in a different shard"


def test_tensorset_overwrites_a_tensor(r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
    r.execute_command("AI.TENSORSET", "t", "INT64", 2, "VALUES", 3, 4)
    assert r.execute_command("AI.TENSORGET", "t", "META", "VALUES") == [
        b"dtype",
        b"INT64",
        b"shape",
        [2],
        b"values",
        [3, 4],
    ]


def test_a_resp3_client_gets_floats_as_doubles(server_url: str) -> None:
    client = redis.Redis.from_url(server_url, protocol=3)
    client.execute_command("AI.TENSORSET", "t3", "FLOAT", 2, "VALUES", 1.5, 2)
    assert client.execute_command("AI.TENSORGET", "t3", "VALUES") == [1.5, 2.0]
    client.close()
