"""RESTORE of values DUMPed from a Redis with RedisAI 1.2: every encoding version, bad payloads, BUSYKEY and TTL."""

from __future__ import annotations

import importlib.util
import struct

import numpy as np
import pytest
import redis

from gearcam.crc64 import crc64
from tests.runtime import rdb_payloads as dump
from tests.runtime.conftest import error_of
from tests.runtime.models import add_model

VERSIONS = [0, 1, 2, 3, 4]
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")


def _floats(*values: float) -> bytes:
    return np.array(values, dtype="<f4").tobytes()


@pytest.mark.parametrize("encver", VERSIONS)
def test_a_tensor_of_every_encoding_version_becomes_a_runtime_tensor(r: redis.Redis, encver: int) -> None:
    payload = dump.tensor("INT32", [2, 1], np.array([1, 2], dtype="<i4").tobytes(), encver)
    assert r.restore("t", 0, payload) == b"OK"
    assert r.type("t") == b"AI_TENSOR"
    assert r.execute_command("AI.TENSORGET", "t", "META", "VALUES") == [b"dtype", b"INT32", b"shape", [2, 1],
                                                                        b"values", [1, 2]]  # fmt: skip


def test_string_and_bool_tensors_keep_their_elements(r: redis.Redis) -> None:
    r.restore("s", 0, dump.tensor("STRING", [3], b"cat\0\0tabby cat\0"))
    assert r.execute_command("AI.TENSORGET", "s", "VALUES") == [b"cat", b"", b"tabby cat"]
    r.restore("b", 0, dump.tensor("BOOL", [2, 2], bytes([1, 0, 0, 1]), encver=2))
    assert r.execute_command("AI.TENSORGET", "b", "META", "VALUES")[1::2] == [b"BOOL", [2, 2], [1, 0, 0, 1]]


def test_compressed_strings_are_unpacked(r: redis.Redis) -> None:
    values = np.tile(np.arange(8, dtype="<f8"), 64)
    r.restore("big", 0, dump.tensor("DOUBLE", [64, 8], values.tobytes(), compress=True))
    got = r.execute_command("AI.TENSORGET", "big", "BLOB")
    assert np.frombuffer(got, dtype="<f8").tolist() == values.tolist()


@pytest.mark.parametrize("encver", VERSIONS)
def test_a_model_of_every_encoding_version_is_stored_with_its_meta_and_runs(r: redis.Redis, encver: int) -> None:
    blob = add_model()
    batch = (4, 2, 100) if encver >= 2 else (4, 0, 0)  # MINBATCHSIZE without a timeout would wait for a second run
    payload = dump.model("ONNX", blob, encver, tag=f"v{encver}", batch=batch, chunk=100, compress=True)
    assert r.restore("m", 0, payload) == b"OK"
    meta = r.execute_command("AI.MODELGET", "m", "META")
    fields = dict(zip(meta[::2], meta[1::2], strict=True))
    assert fields[b"backend"] == b"ONNX" and fields[b"tag"] == f"v{encver}".encode()
    assert (fields[b"batchsize"], fields[b"minbatchsize"], fields[b"minbatchtimeout"]) == batch
    assert (fields[b"inputs"], fields[b"outputs"]) == ([b"a", b"b"], [b"c"])
    assert r.execute_command("AI.MODELGET", "m", "BLOB") == blob
    r.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 2, "VALUES", 1, 2)
    r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "x", "x", "OUTPUTS", 1, "y")
    assert r.execute_command("AI.TENSORGET", "y", "VALUES") == [b"2", b"4"]


def test_a_model_blob_that_does_not_load_is_refused_and_nothing_is_stored(r: redis.Redis) -> None:
    assert error_of(r, "RESTORE", "m", 0, dump.model("ONNX", b"not an onnx graph")) == (
        "No graph was found in the protobuf."  # RedisAI's words for it, as AI.MODELSTORE answers
    )
    assert r.exists("m") == 0


@needs_torch
@pytest.mark.parametrize("encver", VERSIONS)
def test_a_script_of_every_encoding_version_keeps_source_tag_and_entry_points(r: redis.Redis, encver: int) -> None:
    source = "def bar(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0] + tensors[1]\n"
    assert r.restore("s", 0, dump.script(source, encver, tag="T", entry_points=["bar"])) == b"OK"
    entry_points = [b"bar"] if encver >= 3 else []  # older scripts had none
    assert r.execute_command("AI.SCRIPTGET", "s", "META") == [b"device", b"CPU", b"tag", b"T",
                                                              b"Entry Points", entry_points]  # fmt: skip
    assert r.execute_command("AI.SCRIPTGET", "s", "SOURCE") == source.encode()
    if encver >= 3:
        r.execute_command("AI.TENSORSET", "x", "FLOAT", 2, "VALUES", 1, 2)
        r.execute_command("AI.SCRIPTEXECUTE", "s", "bar", "INPUTS", 2, "x", "x", "OUTPUTS", 1, "y")
        assert r.execute_command("AI.TENSORGET", "y", "VALUES") == [b"2", b"4"]


def test_a_wrong_checksum_is_refused_as_redis_refuses_it(r: redis.Redis) -> None:
    payload = bytearray(dump.tensor("FLOAT", [1], _floats(1)))
    payload[-1] ^= 0xFF
    assert error_of(r, "RESTORE", "t", 0, bytes(payload)).startswith("ERR DUMP payload version or checksum are wrong")
    assert r.exists("t") == 0


def test_a_truncated_payload_says_so(r: redis.Redis) -> None:
    fields = dump.Fields().uint(2).uint(32).sint(1).sint(4).string(_floats(1, 2, 3, 4))
    whole = dump.payload("AI_TENSOR", 4, fields)
    body = whole[:-10][:-12]  # the value cut short, then a valid footer again
    cut = body + struct.pack("<H", 9)
    cut += struct.pack("<Q", crc64(cut))
    message = error_of(r, "RESTORE", "t", 0, cut)
    assert message.startswith("ERR Bad data format") and "truncated" in message
    assert r.exists("t") == 0


def test_an_encoding_version_newer_than_redisai_1_2_is_refused(r: redis.Redis) -> None:
    payload = dump.payload("AI_TENSOR", 5, dump.Fields().uint(2).uint(32).sint(1).sint(1).string(_floats(1)))
    message = error_of(r, "RESTORE", "t", 0, payload)
    assert "encoding version 5" in message and "0-4" in message


def test_busykey_without_replace_and_replace_overwrites_any_key(r: redis.Redis) -> None:
    r.set("k", "plain")
    payload = dump.tensor("FLOAT", [2], _floats(1, 2))
    assert error_of(r, "RESTORE", "k", 0, payload) == "BUSYKEY Target key name already exists."
    assert r.get("k") == b"plain"
    assert r.restore("k", 0, payload, replace=True) == b"OK"
    assert r.execute_command("AI.TENSORGET", "k", "VALUES") == [b"1", b"2"]
    r.execute_command("AI.TENSORGET", "k", "VALUES")  # now known to the runtime's memory
    r.restore("k", 0, dump.tensor("FLOAT", [2], _floats(7, 8)), replace=True)
    assert r.execute_command("AI.TENSORGET", "k", "VALUES") == [b"7", b"8"]


def test_the_ttl_and_options_are_redis_own(r: redis.Redis) -> None:
    payload = dump.tensor("FLOAT", [1], _floats(1))
    r.restore("t", 60_000, payload)
    assert 0 < r.pttl("t") <= 60_000
    r.restore("i", 0, payload, idletime=1000)
    assert r.object("idletime", "i") >= 1000
    r.restore("gone", 1, payload, absttl=True)  # 1 ms after the epoch: already expired
    assert r.exists("gone") == 0
    assert error_of(r, "RESTORE", "x", 0, payload, "NOSUCHOPTION").startswith("ERR syntax error")


def test_other_payloads_are_relayed_to_redis_untouched(r: redis.Redis) -> None:
    r.rpush("list", "a", "b")
    assert r.restore("copy", 0, r.dump("list")) == b"OK"
    assert r.lrange("copy", 0, -1) == [b"a", b"b"]
    assert error_of(r, "RESTORE", "x", 0, b"garbage") == "ERR DUMP payload version or checksum are wrong"
    assert error_of(r, "RESTORE", "x", 0) == "ERR wrong number of arguments for 'restore' command"


def test_a_dump_of_a_restored_model_restores_through_redis(r: redis.Redis) -> None:
    r.restore("m", 0, dump.model("ONNX", add_model()))
    assert r.restore("m2", 0, r.dump("m")) == b"OK"
    assert r.execute_command("AI.MODELGET", "m2", "BLOB") == add_model()


def test_restore_inside_multi_is_queued_in_redis_as_it_is(r: redis.Redis) -> None:
    r.set("src", "plain")
    with r.pipeline(transaction=True) as pipe:
        pipe.restore("copy", 0, r.dump("src"))
        pipe.restore("t", 0, dump.tensor("FLOAT", [1], _floats(1)))  # Redis does not know RedisAI's types
        results = pipe.execute(raise_on_error=False)
    assert results[0] == b"OK" and r.get("copy") == b"plain"
    assert "Bad data format" in str(results[1]) and r.exists("t") == 0


def test_a_payload_of_several_megabytes_restores_whole(r: redis.Redis) -> None:
    values = np.arange(600_000, dtype="<f4")  # 2.4 MB: checked and re-encoded off the event loop
    r.restore("big", 0, dump.tensor("FLOAT", [600_000], values.tobytes()))
    assert np.array_equal(np.frombuffer(r.execute_command("AI.TENSORGET", "big", "BLOB"), dtype="<f4"), values)
