"""Reading RedisAI DUMP payloads (gearcam/runtime/ai/rdb.py) and Redis' CRC-64, without a server."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from gearcam import rdbformat
from gearcam.crc64 import crc64
from gearcam.runtime.ai import rdb
from gearcam.runtime.ai.errors import AIError
from tests.runtime import rdb_payloads as dump


def _bytewise(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
    return crc


def test_crc64_matches_redis_check_value() -> None:
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # the value in Redis' crc64.c self-test


def test_crc64_of_long_input_matches_the_bit_by_bit_definition_and_continues() -> None:
    data = os.urandom(200_003)
    assert crc64(data) == _bytewise(data)
    assert crc64(data[77_777:], crc64(data[:77_777])) == crc64(data)


def test_the_module_id_carries_the_type_name_and_version() -> None:
    assert rdbformat.module_id("AI__MODEL", 3) == dump.module_id("AI__MODEL", 3)
    assert rdb.redisai_type(dump.script("def f(x):\n    return x\n", 2)) == ("AI_SCRIPT", 2)


@pytest.mark.parametrize("payload", [b"", b"\x00\x03abc\t\x00" + bytes(8), b"\x07\x81" + bytes(20)])
def test_payloads_of_other_types_are_not_redisai(payload: bytes) -> None:
    assert rdb.redisai_type(payload) is None
    with pytest.raises(AIError, match="not a DUMP of a RedisAI"):
        rdb.decode(payload)


def test_a_field_of_the_wrong_type_names_the_position() -> None:
    fields = dump.Fields().string(b"x")  # a tensor starts with its type code, a number
    with pytest.raises(AIError, match=r"field of type 5 where type 2 was expected at byte 10"):
        rdb.decode(dump.payload("AI_TENSOR", 4, fields))


def test_an_unknown_tensor_type_is_refused() -> None:
    fields = dump.Fields().uint(2).uint(16).sint(1).sint(1).string(b"\0\0")  # float16: not in RedisAI 1.2
    with pytest.raises(AIError, match="type code 2, 16 bits"):
        rdb.decode(dump.payload("AI_TENSOR", 4, fields))


def test_model_chunks_that_do_not_add_up_are_refused() -> None:
    fields = dump.Fields().uint(3).cstring("CPU").string(b"").uint(0).uint(0).uint(0).uint(0).uint(0)
    fields.uint(10).uint(1).string(b"12345")
    with pytest.raises(AIError, match="chunks hold 5 bytes where its header says 10"):
        rdb.decode(dump.payload("AI__MODEL", 4, fields))


def test_a_runtime_value_becomes_a_string_dump_payload_with_a_valid_footer() -> None:
    payload = rdb.string_payload((b"head", memoryview(b"tail")))
    assert payload[:2] == b"\x00\x08" and payload[2:10] == b"headtail"
    assert struct.unpack("<Q", payload[-8:])[0] == crc64(payload[:-8])


def test_string_tensors_are_split_at_their_offsets() -> None:
    restored = rdb.decode(dump.tensor("STRING", [2, 2], b"a\0bb\0\0ccc\0"))
    assert isinstance(restored, rdb.RestoredTensor)
    assert restored.tensor.array.tolist() == [[b"a", b"bb"], [b"", b"ccc"]]
    restored = rdb.decode(dump.tensor("UINT16", [3], np.array([1, 2, 65535], "<u2").tobytes(), encver=1))
    assert isinstance(restored, rdb.RestoredTensor) and restored.tensor.values() == [1, 2, 65535]
