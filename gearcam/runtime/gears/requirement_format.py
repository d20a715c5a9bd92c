"""RedisGears 1.2's serialization of an exported requirement: RG.PYEXPORTREQ's chunks, RG.PYIMPORTREQ's arguments.

What gears-cli keeps in the `data.bin` of its `export-requirements` zip files. So a requirement exported
from a RedisGears node imports into the runtime, and one the runtime exports imports into RedisGears
(the Jetson image's, for a node without network), wheels for its platform permitting. The layout, as
RedisGears 1.2.7's buffer writer lays it out (its C sources read for the facts): little-endian 64-bit
integers; a string is its length with the NUL that ends it, then its bytes and the NUL; a buffer is its
length, then its bytes. Version 2: the requirement's name, the OS it was built for, whether it is
in the requirements dictionary, the number of wheels, and each wheel's file name and contents.
Version 1 lacks the dictionary flag, version 0 the OS too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["CHUNK_BYTES", "VERSION", "Exported", "RequirementFormatError", "deserialize", "serialize"]

VERSION = 2
CHUNK_BYTES = 10 * 1024 * 1024  # RedisGears' bulk size for RG.PYEXPORTREQ's chunks
_LONG = struct.Struct("<q")


class RequirementFormatError(ValueError):
    """The data is not a requirement RedisGears serialized; the message is RedisGears' own."""


@dataclass(frozen=True)
class Exported:
    name: str  # the requirement as it was asked for ("redis==3.5.3")
    compiled_os: str
    in_dictionary: bool
    wheels: list[tuple[str, bytes]]  # file name, contents


def serialize(exported: Exported) -> bytes:
    parts = [_LONG.pack(VERSION), _string(exported.name), _string(exported.compiled_os)]
    parts += [_LONG.pack(int(exported.in_dictionary)), _LONG.pack(len(exported.wheels))]
    for file_name, data in exported.wheels:
        parts += [_string(file_name), _LONG.pack(len(data)), data]
    return b"".join(parts)


def deserialize(blob: bytes) -> Exported:
    """The requirement in `blob`; RequirementFormatError with RedisGears' text where the data ends early."""
    reader = _Reader(memoryview(blob))
    version = reader.long("Bad serialization format on reading requirement version")
    if version > VERSION:
        raise RequirementFormatError("Requirement version is not compatible, upgrade to newer RedisGears.")
    name = reader.string("Bad serialization format on reading requirement name")
    compiled_os = reader.string("Bad serialization format on reading requirement os") if version >= 1 else ""
    in_dictionary = bool(reader.long("Bad serialization format on reading requirement")) if version >= 2 else True
    count = reader.long("Bad serialization format on reading requirement wheels amount")
    wheels = []
    for _ in range(max(count, 0)):
        file_name = reader.string("Bad serialization format on reading wheel file name")
        wheels.append((file_name, bytes(reader.buffer("Bad serialization format on reading wheel file data"))))
    return Exported(name, compiled_os, in_dictionary, wheels)


def _string(text: str) -> bytes:
    data = text.encode() + b"\0"
    return _LONG.pack(len(data)) + data


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._at = 0

    def long(self, error: str) -> int:
        if self._at + _LONG.size > len(self._data):
            raise RequirementFormatError(error)
        (value,) = _LONG.unpack_from(self._data, self._at)
        self._at += _LONG.size
        return int(value)

    def buffer(self, error: str) -> memoryview:
        size = self.long(error)
        if size < 0 or self._at + size > len(self._data):
            raise RequirementFormatError(error)
        self._at += size
        return self._data[self._at - size : self._at]

    def string(self, error: str) -> str:
        data = bytes(self.buffer(error))
        return data[:-1].decode("utf-8", "replace") if data.endswith(b"\0") else data.decode("utf-8", "replace")
