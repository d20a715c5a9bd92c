"""Walking an RDB file key by key (gearcam/rdbfile.py) without a server: records, refusals, and fuzzed files.

The file is untrusted input (whatever a user copied off an old node), so the walk is fuzzed: any
file, damaged anywhere, is read or refused with a FormatError that says where; never another
exception, never a hang. Its checksum is zeroed (as `rdbchecksum no` writes it) so the damage
reaches the walk instead of stopping at the checksum.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given

from gearcam.crc64 import crc64
from gearcam.rdbfile import RdbFile
from gearcam.rdbformat import FormatError
from tests.runtime import rdb_payloads as dump
from tests.unit.damage import FUZZ, damaged


def _s(data: bytes) -> bytes:
    return dump.length(len(data)) + data


_STREAM = (  # the first layout, no entries: a group with one pending entry delivered to one consumer
    dump.length(0) + dump.length(0) + dump.length(5) + dump.length(1)
    + dump.length(1) + _s(b"g") + dump.length(5) + dump.length(1)
    + dump.length(1) + b"\x00" * 15 + b"\x05" + struct.pack("<q", 1000) + dump.length(1)
    + dump.length(1) + _s(b"c") + struct.pack("<q", 1000) + dump.length(1) + b"\x00" * 15 + b"\x05"
)  # fmt: skip
_RECORDS = [
    b"\xfa" + _s(b"redis-ver") + _s(b"6.2.6"),
    dump.module_aux("GEARS_DT0", 4, dump.Fields().uint(1).string(b"StreamReader\0").uint(0)),
    b"\xfe\x00\xfb\x07\x01",
    b"\x00" + _s(b"s") + b"\xc0\x7b",  # an integer-encoded string
    b"\xfc" + struct.pack("<q", 4_102_444_800_000) + b"\x00" + b"\xc1\x39\x05" + _s(b"v"),  # integer name, TTL
    b"\xf8\x05\x01" + _s(b"l") + dump.length(2) + _s(b"a") + _s(b"b"),  # with its idle time
    b"\xf9\x07\x03" + _s(b"z") + dump.length(1) + _s(b"m") + b"\x031.5",
    b"\x05" + _s(b"z2") + dump.length(1) + _s(b"m") + struct.pack("<d", 2.5),
    b"\x04" + _s(b"h") + dump.length(1) + _s(b"f") + _s(b"v"),
    b"\x0e" + _s(b"q") + dump.length(1) + _s(b"<ziplist>"),
    b"\x12" + _s(b"q2") + dump.length(1) + dump.length(2) + _s(b"<listpack>"),
    b"\x0f" + _s(b"st") + _STREAM,
    b"\xc3" + _s(b"k") + _s(b"v"),  # no record type is 195
]
_GOOD = _RECORDS[:-1]


def _file(records: list[bytes], version: int = 9, checksum: bool = True) -> bytes:
    body = b"REDIS%04d" % version + b"".join(records) + b"\xff"
    return body + (struct.pack("<Q", crc64(body)) if checksum else b"\0" * 8)


def _write(tmp: Path, data: bytes) -> Path:
    path = tmp / "dump.rdb"
    path.write_bytes(data)
    return path


def test_every_record_is_walked_and_keys_carry_what_restore_needs(tmp_path: Path) -> None:
    with RdbFile(_write(tmp_path, _file(_GOOD))) as rdb:
        assert rdb.check() == {"string": 2, "list": 3, "zset": 2, "hash": 1, "stream": 1}
        keys = {key.name: key for key in rdb.keys()}
        assert rdb.contents.aux == {"redis-ver": "6.2.6"} and rdb.contents.module_aux == {"GEARS_DT0": 1}
    assert list(keys) == [b"s", b"1337", b"l", b"z", b"z2", b"h", b"q", b"q2", b"st"]
    assert keys[b"1337"].expires_at_ms == 4_102_444_800_000 and keys[b"s"].expires_at_ms is None
    assert (keys[b"l"].idle_s, keys[b"l"].freq, keys[b"z"].freq) == (5, None, 7)
    payload = keys[b"h"].payload()  # type, value, RDB version, CRC-64 of them
    assert payload[:-10] == b"\x04" + dump.length(1) + _s(b"f") + _s(b"v") and payload[-10:-8] == b"\x09\x00"
    assert struct.unpack("<Q", payload[-8:])[0] == crc64(payload[:-8])


def test_a_module_value_is_named_by_its_type(tmp_path: Path) -> None:
    tensor = dump.key_record(b"t", dump.tensor("INT8", [1], b"\x01"))
    with RdbFile(_write(tmp_path, _file([tensor]))) as rdb:
        (key,) = rdb.keys()
    assert (key.type, key.module) == ("AI_TENSOR", "AI_TENSOR")
    assert key.payload()[:-10] == dump.tensor("INT8", [1], b"\x01")[:-10]  # the DUMP payload RedisAI gives


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", r"is not an RDB file"),
        (b"REDIS00x9", r"is not an RDB file"),
        (_file([], version=12), r"RDB version 12, newer than the 11 of Redis 7.2"),
        (_file([b"\x06" + _s(b"old") + b"\x00"]), r"module value of the kind Redis 4 wrote \(type 6\)"),
        (_file([b"\x18" + _s(b"h") + b"\x00"]), r"hash with field expiry \(Redis 7.4 or newer\)"),
        (_file([b"\xf6" + _s(b"#!lua")]), r"functions in the form of a Redis 7.0 release candidate"),
        (_file(_RECORDS), r"unknown record type 195 at byte \d+"),
        (_file(_GOOD)[:-30] + _file(_GOOD)[-9:], r"altered or cut"),
        (_file([b"\x00" + _s(b"k") + _s(b"x" * 100)], checksum=False)[:60] + b"\0" * 8, r"ends early \(truncated\?\)"),
    ],
    ids=[
        "empty",
        "bad header",
        "too new",
        "old module type",
        "hash field expiry",
        "7.0-rc functions",
        "unknown type",
        "checksum",
        "cut",
    ],
)
def test_what_cannot_be_read_is_refused_with_what_and_where(tmp_path: Path, data: bytes, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        with RdbFile(_write(tmp_path, data)) as rdb:
            rdb.check()


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"cannot read .*absent.rdb: No such file"):
        RdbFile(tmp_path / "absent.rdb")


_BASE = _file(_GOOD, checksum=False)


@FUZZ
@given(damaged(_BASE[:-8], keep=9))
def test_any_damage_is_read_or_refused_with_a_format_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), bytes(data) + b"\0" * 8)
        try:
            with RdbFile(path) as rdb:
                counts = rdb.check()
                payloads = [key.payload() for key in rdb.keys()]
        except FormatError as exc:
            assert str(path) in str(exc)  # every refusal names the file (and where in it)
        else:
            assert sum(counts.values()) == len(payloads)
