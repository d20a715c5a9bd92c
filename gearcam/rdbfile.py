"""An RDB file read key by key, each key as the DUMP payload that RESTORE takes.

A Redis that had RedisAI or RedisGears loaded writes their data into its RDB file: tensors,
models and scripts as module values, RedisGears' registrations as module aux data. A Redis
without those modules refuses the whole file at start, so a node that moves to gearcam
with only its data directory cannot load it anywhere. Nothing here decodes a value: each
key's bytes are delimited (every type Redis 6.0 to 7.2 writes, walked as `rdbLoadObject`
reads them) and wrapped as a DUMP payload (type byte, value, the file's RDB version, CRC-64),
which the runtime's RESTORE turns into its own objects for RedisAI's types and relays to
Redis for the rest. What is not a key (aux fields, module aux data, functions) is
collected in `Contents` so the import can say what it did not bring.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gearcam.crc64 import crc64
from gearcam.rdbformat import Cursor, FormatError, module_type

__all__ = ["Contents", "Key", "RdbFile", "TYPE_NAMES"]

# RDB value types (rdb.h): the plain ones a DUMP payload can carry, by what RESTORE makes of them.
TYPE_NAMES = {
    0: "string", 1: "list", 2: "set", 3: "zset", 4: "hash", 5: "zset", 7: "module", 9: "hash", 10: "list",
    11: "set", 12: "zset", 13: "hash", 14: "list", 15: "stream", 16: "hash", 17: "zset", 18: "list",
    19: "stream", 20: "set", 21: "stream",
}  # fmt: skip
_ONE_STRING = {0, 9, 10, 11, 12, 13, 16, 17, 20}  # a string, or one blob (ziplist, intset, listpack)
_STREAMS = {15: 1, 19: 2, 21: 3}  # type -> its layout's version
_MODULE_OLD, _MODULE_2 = 6, 7
_OP_FUNCTION2, _OP_FUNCTION_PRE_GA, _OP_MODULE_AUX, _OP_IDLE, _OP_FREQ = 245, 246, 247, 248, 249
_OP_AUX, _OP_RESIZEDB, _OP_EXPIRETIME_MS, _OP_EXPIRETIME, _OP_SELECTDB, _OP_EOF = 250, 251, 252, 253, 254, 255
_OP_SLOT_INFO = 244
_NEWEST = 11  # RDB version of Redis 7.2; 7.4 adds hash field expiry (types 22-25, version 12)


@dataclass(frozen=True)
class Key:
    """One key of the file: where its value lies, and what RESTORE needs besides it."""

    db: int
    name: bytes
    type_code: int
    module: str | None  # a module value's type name (AI__MODEL, ...)
    expires_at_ms: int | None
    idle_s: int | None
    freq: int | None
    _value: bytes  # the value's bytes in the file, after the type byte and the key's name
    _version: int

    @property
    def type(self) -> str:
        return self.module or TYPE_NAMES[self.type_code]

    @property
    def size(self) -> int:
        """The value's bytes in the file (compressed where Redis compressed them)."""
        return len(self._value)

    def payload(self) -> bytes:
        """The DUMP payload of this key's value (made when asked: a walk over the file computes no checksums)."""
        body = b"".join((bytes([self.type_code]), self._value, struct.pack("<H", self._version)))
        return body + struct.pack("<Q", crc64(body))


@dataclass
class Contents:
    """What the file holds besides keys: Redis' aux fields, modules' aux data (by module type), functions."""

    aux: dict[str, str] = field(default_factory=dict)
    module_aux: Counter[str] = field(default_factory=Counter)
    functions: list[bytes] = field(default_factory=list)  # each library's code, as FUNCTION LOAD takes it


class RdbFile:
    """An RDB file opened for reading: `check()` once (the checksum and the whole walk), then `keys()`.

    With `preamble`, the RDB is the start of an append-only file (commands follow it): its
    checksum covers the RDB alone, found by the walk; `end` is where the commands begin.
    """

    def __init__(self, path: Path, preamble: bool = False) -> None:
        self.path = path
        self.preamble = preamble
        self.end = 0  # known once a walk reached the EOF record
        try:
            with path.open("rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if path.stat().st_size else None
        except OSError as exc:
            raise FormatError(f"cannot read {path}: {exc.strerror}") from exc
        self._view = memoryview(self._map) if self._map is not None else memoryview(b"")
        self.contents = Contents()
        header = bytes(self._view[:9])
        version = int(header[5:]) if len(header) == 9 and header.startswith(b"REDIS") and header[5:].isdigit() else -1
        if version < 0 or version > _NEWEST:
            self.close()
            if version < 0:
                raise FormatError(f"{path} is not an RDB file (it does not begin with REDIS and a 4-digit version)")
            raise FormatError(
                f"{path} is RDB version {version}, newer than the {_NEWEST} of Redis 7.2 (the newest a "
                "Redis with RedisAI or RedisGears 1.2 writes)"
            )
        self.version = version

    def close(self) -> None:
        self._view.release()
        if self._map is not None:
            self._map.close()

    def __enter__(self) -> RdbFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> Counter[str]:
        """The file's checksum and a walk over every record: how many keys of each type, or FormatError."""
        if not self.preamble:
            self._check_sum(len(self._view))
        counts = Counter(key.type for key in self.keys())
        if self.preamble:
            self._check_sum(self.end)
        return counts

    def _check_sum(self, end: int) -> None:
        if self.version < 5 or end < 17:
            return
        with self._view[: end - 8] as body:
            stored = int(struct.unpack("<Q", self._view[end - 8 : end])[0])
            found = crc64(body) if stored else 0  # 0: written with rdbchecksum no
        if found != stored:
            raise FormatError(
                f"{self.path}'s checksum is {found:016x}, the file says {stored:016x}: it was altered or cut "
                "(copy it again from the old node)"
            )

    def keys(self) -> Iterator[Key]:
        self.contents = Contents()
        cursor = Cursor(self._view, f"RDB file {self.path}")
        cursor.pos = 9
        db, expires, idle, freq = 0, None, None, None
        while True:
            start = cursor.pos
            opcode = cursor.byte()
            if opcode == _OP_EOF:
                self.end = cursor.pos + (8 if self.version >= 5 else 0)  # the checksum follows
                if self.end > len(self._view):
                    raise FormatError(f"{self.path} ends inside the checksum after its last record (truncated?)")
                return
            if opcode == _OP_SELECTDB:
                db = cursor.number()
            elif opcode == _OP_RESIZEDB:
                cursor.number(), cursor.number()
            elif opcode == _OP_SLOT_INFO:
                cursor.number(), cursor.number(), cursor.number()
            elif opcode == _OP_AUX:
                field_name, value = cursor.string(), cursor.string()
                self.contents.aux[field_name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
            elif opcode == _OP_MODULE_AUX:
                self.contents.module_aux[module_type(cursor.number())[0]] += 1
                cursor.skip_module_fields()  # the `when` field, then the module's own
            elif opcode == _OP_FUNCTION2:
                self.contents.functions.append(cursor.string())
            elif opcode == _OP_EXPIRETIME_MS:
                expires = int(struct.unpack("<q", cursor.take(8))[0])
            elif opcode == _OP_EXPIRETIME:
                expires = int(struct.unpack("<i", cursor.take(4))[0]) * 1000
            elif opcode == _OP_IDLE:
                idle = cursor.number()
            elif opcode == _OP_FREQ:
                freq = cursor.byte()
            elif opcode == _OP_FUNCTION_PRE_GA:
                raise FormatError(
                    f"{self.path} holds functions in the form of a Redis 7.0 release candidate (opcode 246), "
                    "which this import does not read; load the file into that Redis and save it again"
                )
            else:
                name = cursor.string()
                value_at = cursor.pos
                module = _skip_value(cursor, opcode, start)
                yield Key(
                    db,
                    name,
                    opcode,
                    module,
                    expires,
                    idle,
                    freq,
                    bytes(self._view[value_at : cursor.pos]),
                    self.version,
                )
                expires, idle, freq = None, None, None


def _skip_value(cursor: Cursor, type_code: int, start: int) -> str | None:
    """Moves past a value of `type_code` as rdbLoadObject reads it; a module value's type name, else None."""
    if type_code in _ONE_STRING:
        cursor.skip_string()
    elif type_code in (1, 2, 14):  # plain list or set; quicklist of ziplists
        for _ in range(cursor.number()):
            cursor.skip_string()
    elif type_code == 18:  # quicklist of listpacks: each node's container kind, then the node
        for _ in range(cursor.number()):
            cursor.number()
            cursor.skip_string()
    elif type_code == 4:
        for _ in range(cursor.number() * 2):
            cursor.skip_string()
    elif type_code == 3:  # scores as text: a length byte, or 253-255 for nan, +inf, -inf
        for _ in range(cursor.number()):
            cursor.skip_string()
            size = cursor.byte()
            if size < 253:
                cursor.take(size)
    elif type_code == 5:  # scores as binary doubles
        for _ in range(cursor.number()):
            cursor.skip_string()
            cursor.take(8)
    elif type_code in _STREAMS:
        _skip_stream(cursor, _STREAMS[type_code])
    elif type_code == _MODULE_2:
        name, _ = module_type(cursor.number())
        cursor.skip_module_fields()
        return name
    elif type_code == _MODULE_OLD:
        raise FormatError(
            f"the value at byte {start} of {cursor.what} is a module value of the kind Redis 4 wrote (type 6), "
            "which only its module can read; load the file into a Redis with that module and save it again"
        )
    elif type_code in (22, 23, 24, 25):
        raise FormatError(
            f"the value at byte {start} of {cursor.what} is a hash with field expiry (Redis 7.4 or newer), "
            "which no Redis with RedisAI or RedisGears 1.2 writes"
        )
    else:
        raise FormatError(f"unknown record type {type_code} at byte {start} of {cursor.what}")
    return None


def _skip_stream(cursor: Cursor, layout: int) -> None:
    for _ in range(cursor.number()):  # listpacks: the master id, then the listpack
        cursor.skip_string()
        cursor.skip_string()
    cursor.number(), cursor.number(), cursor.number()  # length, last id (ms, seq)
    if layout >= 2:
        for _ in range(5):  # first id, max deleted id, entries added
            cursor.number()
    for _ in range(cursor.number()):  # consumer groups
        cursor.skip_string()
        cursor.number(), cursor.number()  # last delivered id
        if layout >= 2:
            cursor.number()  # entries read
        for _ in range(cursor.number()):  # pending entries: id, delivery time, delivery count
            cursor.take(16 + 8)
            cursor.number()
        for _ in range(cursor.number()):  # consumers
            cursor.skip_string()
            cursor.take(8 if layout < 3 else 16)  # seen time (and active time)
            for _ in range(cursor.number()):
                cursor.take(16)
