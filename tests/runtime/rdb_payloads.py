"""DUMP payloads as a Redis with RedisAI 1.2 writes them, built from the documented format.

No RedisAI runs here, so the tests make their own: a module value (type 7, the module id
of the 9-character type name and the encoding version, tagged fields, EOF), the RDB
version and a CRC-64. Field order per encoding version follows RedisAI's RDB loaders
(v0: tensors with device, strides and offset, models without MINBATCHTIMEOUT and with
one blob, tags with a NUL; v1: chunked blobs; v2: MINBATCHTIMEOUT; v3: script entry
points; v4: tensors as type code, bits, signed shape and string offsets). Strings can be
LZF-compressed as Redis does for long ones.
"""

from __future__ import annotations

import struct

from gearcam.crc64 import crc64

_SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CODES = {
    "FLOAT": (2, 32), "DOUBLE": (2, 64), "INT8": (0, 8), "INT16": (0, 16), "INT32": (0, 32), "INT64": (0, 64),
    "UINT8": (1, 8), "UINT16": (1, 16), "BOOL": (6, 8), "STRING": (7, 8),
}  # fmt: skip
BACKENDS = {"TF": 0, "TFLITE": 1, "TORCH": 2, "ONNX": 3}


def length(n: int) -> bytes:
    if n < 64:
        return bytes([n])
    if n < 16384:
        return bytes([0x40 | (n >> 8), n & 0xFF])
    return b"\x80" + struct.pack(">I", n)


def lzf(data: bytes) -> bytes:
    """A greedy LZF compressor: back references of 3+ bytes found by search, literal runs of up to 32."""
    out, literal, pos = bytearray(), bytearray(), 0

    def flush() -> None:
        for i in range(0, len(literal), 32):
            run = literal[i : i + 32]
            out.append(len(run) - 1)
            out.extend(run)
        literal.clear()

    while pos < len(data):
        start = max(0, pos - 8191)
        best_len, best_at = 0, 0
        for size in (264, 64, 16, 3):
            at = data.rfind(data[pos : pos + size], start, pos + size - 1)
            if size <= len(data) - pos and at != -1 and at < pos:
                best_len, best_at = size, at
                break
        if best_len < 3:
            literal.append(data[pos])
            pos += 1
            continue
        flush()
        offset, extra = pos - best_at - 1, best_len - 2
        if extra < 7:
            out += bytes([(extra << 5) | (offset >> 8), offset & 0xFF])
        else:
            out += bytes([(7 << 5) | (offset >> 8), extra - 7, offset & 0xFF])
        pos += best_len
    flush()
    return bytes(out)


class Fields:
    """The tagged fields of one module value."""

    def __init__(self, compress: bool = False) -> None:
        self.out = bytearray()
        self.compress = compress

    def uint(self, value: int) -> Fields:
        self.out += b"\x02" + (length(value) if value < 1 << 32 else b"\x81" + struct.pack(">Q", value))
        return self

    def sint(self, value: int) -> Fields:  # RedisModule_SaveSigned writes the unsigned field
        return self.uint(value & (1 << 64) - 1)

    def string(self, data: bytes) -> Fields:
        self.out += b"\x05"
        if self.compress and len(data) > 20:
            packed = lzf(data)
            self.out += b"\xc3" + length(len(packed)) + length(len(data)) + packed
        else:
            self.out += length(len(data)) + data
        return self

    def cstring(self, text: str) -> Fields:
        return self.string(text.encode() + b"\0")


def module_id(name: str, encver: int) -> int:
    value = 0
    for char in name:
        value = value * 64 + _SYMBOLS.index(char)
    return value * 1024 + encver


def payload(name: str, encver: int, fields: Fields, rdb_version: int = 9) -> bytes:
    body = b"\x07\x81" + struct.pack(">Q", module_id(name, encver)) + bytes(fields.out) + b"\x00"
    body += struct.pack("<H", rdb_version)
    return body + struct.pack("<Q", crc64(body))


def tensor(dtype: str, shape: list[int], blob: bytes, encver: int = 4, compress: bool = False) -> bytes:
    code, bits = _CODES[dtype]
    f = Fields(compress)
    if encver < 4:
        f.uint(1).uint(0).uint(bits).uint(code).uint(1).uint(len(shape))
        for d in shape:
            f.uint(d)
        for _ in shape:
            f.uint(1)
        f.uint(0).string(blob)
    else:
        f.uint(code).uint(bits).sint(len(shape))
        for d in shape:
            f.sint(d)
        f.string(blob)
        if dtype == "STRING":
            offset = 0
            for item in blob.split(b"\0")[:-1]:
                f.uint(offset)
                offset += len(item) + 1
    return payload("AI_TENSOR", encver, f)


def model(backend: str, blob: bytes, encver: int = 4, *, device: str = "CPU", tag: str = "", batch: tuple[int, int, int] = (0, 0, 0),
          inputs: list[str] | None = None, outputs: list[str] | None = None, chunk: int = 512 * 1024 * 1024,
          compress: bool = False) -> bytes:  # fmt: skip
    f = Fields(compress).uint(BACKENDS[backend]).cstring(device)
    f.cstring(tag) if encver == 0 else f.string(tag.encode())
    f.uint(batch[0]).uint(batch[1])
    if encver >= 2:
        f.uint(batch[2])
    for names in (inputs or [], outputs or []):
        f.uint(len(names))
        for n in names:
            f.cstring(n)
    if encver == 0:
        f.string(blob)
    else:
        chunks = [blob[i : i + chunk] for i in range(0, len(blob), chunk)] or [b""]
        f.uint(len(blob)).uint(len(chunks))
        for c in chunks:
            f.string(c)
    return payload("AI__MODEL", encver, f)


def script(source: str, encver: int = 4, *, device: str = "CPU", tag: str = "",
           entry_points: list[str] | None = None) -> bytes:  # fmt: skip
    f = Fields().cstring(device)
    f.cstring(tag) if encver == 0 else f.string(tag.encode())
    f.cstring(source)
    if encver >= 3:
        names = entry_points or []
        f.uint(len(names))
        for n in names:
            f.cstring(n)
    return payload("AI_SCRIPT", encver, f)


# -- RDB files: a real redis-server's dump.rdb with records added, as a Redis with the modules wrote it ----------


def key_record(name: bytes, dump_payload: bytes, expires_at_ms: int | None = None) -> bytes:
    """A key's record in an RDB file, from its DUMP payload: [expiry] type byte, name, value."""
    expiry = b"" if expires_at_ms is None else b"\xfc" + struct.pack("<q", expires_at_ms)
    return expiry + dump_payload[:1] + length(len(name)) + name + dump_payload[1:-10]


def module_aux(name: str, encver: int, fields: Fields, when: int = 2) -> bytes:
    """A module's aux record (opcode 247): its module id, the `when` field, its own fields, EOF."""
    return (
        b"\xf7\x81" + struct.pack(">Q", module_id(name, encver)) + b"\x02" + length(when) + bytes(fields.out) + b"\x00"
    )


def with_records(rdb: bytes, *records: bytes, db: int | None = None) -> bytes:
    """`rdb` (a whole file) with `records` added before its EOF (in database `db` if given), checksum redone."""
    select = b"" if db is None else b"\xfe" + length(db)
    body = rdb[:-9] + select + b"".join(records) + b"\xff"
    return body + struct.pack("<Q", crc64(body))
