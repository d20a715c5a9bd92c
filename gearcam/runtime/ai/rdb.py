"""RedisAI's own serialized values (what DUMP gives on a Redis with the module) read into the runtime's objects.

A DUMP payload is one RDB value, then the RDB version (2 bytes, little-endian) and a
CRC-64 of everything before it (8 bytes, little-endian). A module value is the type
byte 7, the module id (a length-encoded 64-bit number: the 9-character type name in
6-bit symbols, then a 10-bit encoding version) and a list of tagged fields (1 signed,
2 unsigned, 3 float, 4 double, 5 string) closed by 0. RedisAI 1.2 names its types
AI_TENSOR, AI__MODEL and AI_SCRIPT and has written encoding versions 0 to 4; which
fields come in which order per version is in `_tensor`, `_model` and `_script`.

The runtime keeps its objects as Redis strings, so `string_payload` makes the DUMP
payload of such a string: RESTORE of it then keeps Redis' own BUSYKEY, TTL, IDLETIME
and FREQ handling.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gearcam.crc64 import crc64
from gearcam.rdbformat import OP_EOF, Cursor, FormatError, module_type
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.ai.store import ModelMeta, ScriptMeta
from gearcam.runtime.ai.tensor import Tensor

__all__ = [
    "MAX_ENCVER",
    "TYPE_NAMES",
    "RestoredModel",
    "RestoredScript",
    "RestoredTensor",
    "decode",
    "redisai_type",
    "string_payload",
]

TYPE_NAMES = ("AI_TENSOR", "AI__MODEL", "AI_SCRIPT")
MAX_ENCVER = 4  # RedisAI 1.2.x
_RDB_TYPE_STRING = 0
_RDB_TYPE_MODULE_2 = 7
_RDB_VERSION = 9  # written by Redis 6.0-6.2; Redis 7 reads it too
_BACKENDS = ("TF", "TFLITE", "TORCH", "ONNX")  # RedisAI's RAI_Backend numbers
_DTYPES = {  # (DLPack type code, bits) -> RedisAI type; 6 and 7 are RedisAI's bool and string
    (0, 8): "INT8", (0, 16): "INT16", (0, 32): "INT32", (0, 64): "INT64",
    (1, 8): "UINT8", (1, 16): "UINT16", (2, 32): "FLOAT", (2, 64): "DOUBLE",
    (6, 8): "BOOL", (7, 8): "STRING",
}  # fmt: skip
_BAD = "ERR Bad data format"


@dataclass
class RestoredTensor:
    tensor: Tensor


@dataclass
class RestoredModel:
    meta: ModelMeta
    blob: bytes


@dataclass
class RestoredScript:
    meta: ScriptMeta
    source: str


Restored = RestoredTensor | RestoredModel | RestoredScript


class _Reader(Cursor):
    def cstring(self) -> str:
        """A string RedisAI saved with its terminating NUL."""
        return self.module_string().rstrip(b"\0").decode("utf-8", "replace")


def redisai_type(payload: bytes | memoryview) -> tuple[str, int] | None:
    """(type name, encoding version) if `payload` is a DUMP of a RedisAI value; None for anything else."""
    view = memoryview(payload)
    if len(view) < 11 or view[0] != _RDB_TYPE_MODULE_2 or view[1] != 0x81:
        return None
    ident = int(struct.unpack(">Q", view[2:10])[0])
    name, encver = module_type(ident)
    return (name, encver) if name in TYPE_NAMES else None


def _check_footer(view: memoryview) -> None:
    version = int(struct.unpack("<H", view[-10:-8])[0])
    expected = int(struct.unpack("<Q", view[-8:])[0])
    found = crc64(view[:-8])
    if found != expected:
        raise AIError(
            f"ERR DUMP payload version or checksum are wrong: the checksum is {found:016x}, the payload says "
            f"{expected:016x} (RDB version {version}); the payload was altered or cut: DUMP the key again"
        )


def decode(payload: bytes | memoryview) -> Restored:
    """The tensor, model or script in a RedisAI DUMP payload; AIError saying what is wrong otherwise."""
    view = memoryview(payload).cast("B")
    found = redisai_type(view)
    if found is None:
        raise AIError(f"{_BAD}: not a DUMP of a RedisAI tensor, model or script")
    name, encver = found
    what = {"AI_TENSOR": "tensor", "AI__MODEL": "model", "AI_SCRIPT": "script"}[name]
    _check_footer(view)
    if encver > MAX_ENCVER:
        raise AIError(
            f"{_BAD}: {name} encoding version {encver} is newer than the 0-{MAX_ENCVER} of RedisAI 1.2 that the "
            "gearcam runtime reads; store the object again with AI.TENSORSET/AI.MODELSTORE/AI.SCRIPTSTORE"
        )
    reader = _Reader(view[:-10], f"{what} payload")
    reader.pos = 10
    restored: Restored
    try:
        if name == "AI_TENSOR":
            restored = RestoredTensor(_tensor(reader, encver))
        elif name == "AI__MODEL":
            restored = _model(reader, encver)
        else:
            restored = _script(reader, encver)
        if reader.byte() != OP_EOF or reader.pos != len(reader.data):
            raise AIError(f"{_BAD}: unexpected data after the {what} at byte {reader.pos - 1}")
    except FormatError as exc:
        raise AIError(f"{_BAD}: {exc}; DUMP the key again and pass the whole payload") from None
    return restored


def _tensor(reader: _Reader, encver: int) -> Tensor:
    if encver < 4:
        reader.unsigned(), reader.unsigned()  # device type and id: always the CPU
        bits, code, lanes = reader.unsigned(), reader.unsigned(), reader.unsigned()
        shape = [reader.unsigned() for _ in range(reader.unsigned())]
        for _ in shape:
            reader.unsigned()  # strides: RedisAI keeps row-major data and ignores them
        reader.unsigned()  # byte offset, likewise
    else:
        code, bits, lanes = reader.unsigned(), reader.unsigned(), 1
        shape = [reader.signed() for _ in range(reader.signed())]
    dtype = _DTYPES.get((code, bits))
    if dtype is None or lanes != 1:
        raise AIError(f"{_BAD}: tensor of DLPack type code {code}, {bits} bits, {lanes} lanes is not a RedisAI type")
    if any(d <= 0 for d in shape):
        raise AIError(f"{_BAD}: tensor shape {shape} has a dimension below 1")
    blob = reader.module_string()
    if dtype == "STRING":
        offsets = [reader.unsigned() for _ in range(_count(shape))]
        blob = b"".join(blob[o:].split(b"\0", 1)[0] + b"\0" for o in offsets)
    return Tensor.from_blob(dtype, shape, blob)


def _count(shape: list[int]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total


def _model(reader: _Reader, encver: int) -> RestoredModel:
    number = reader.unsigned()
    if number >= len(_BACKENDS):
        raise AIError(f"{_BAD}: model backend number {number} is not one of RedisAI's {', '.join(_BACKENDS)}")
    meta = ModelMeta(backend=_BACKENDS[number], device=reader.cstring())
    meta.tag = reader.cstring() if encver == 0 else reader.module_string().decode("utf-8", "replace")
    meta.batchsize, meta.minbatchsize = reader.unsigned(), reader.unsigned()
    if encver >= 2:
        meta.minbatchtimeout = reader.unsigned()
    meta.inputs = [reader.cstring() for _ in range(reader.unsigned())]
    meta.outputs = [reader.cstring() for _ in range(reader.unsigned())]
    if encver == 0:
        blob = reader.module_string()
    else:
        size = reader.unsigned()
        blob = b"".join(reader.module_string() for _ in range(reader.unsigned()))
        if len(blob) != size:
            raise AIError(f"{_BAD}: the model's chunks hold {len(blob)} bytes where its header says {size}")
    return RestoredModel(meta, blob)


def _script(reader: _Reader, encver: int) -> RestoredScript:
    meta = ScriptMeta(device=reader.cstring())
    meta.tag = reader.cstring() if encver == 0 else reader.module_string().decode("utf-8", "replace")
    source = reader.cstring()
    if encver >= 3:
        meta.entry_points = [reader.cstring() for _ in range(reader.unsigned())]
    return RestoredScript(meta, source)


def _length(size: int) -> bytes:
    if size < 1 << 6:
        return bytes([size])
    if size < 1 << 14:
        return bytes([0x40 | size >> 8, size & 0xFF])
    if size < 1 << 32:
        return b"\x80" + struct.pack(">I", size)
    return b"\x81" + struct.pack(">Q", size)


def string_payload(parts: tuple[bytes, bytes | memoryview]) -> bytes:
    """The DUMP payload of a Redis string holding the concatenation of `parts` (a packed runtime value)."""
    size = sum(memoryview(p).nbytes for p in parts)
    body = b"".join((bytes([_RDB_TYPE_STRING]), _length(size), *parts, struct.pack("<H", _RDB_VERSION)))
    return body + struct.pack("<Q", crc64(body))
