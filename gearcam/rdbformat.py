"""The pieces of Redis' RDB serialization that both a DUMP payload and an RDB file are made of.

A length is 1, 2, 5 or 9 bytes (the top two bits of the first byte say which), or marks a
specially encoded string (an integer, or LZF-compressed bytes). A module value is a list of
tagged fields (1 signed, 2 unsigned, 3 float, 4 double, 5 string) closed by the tag 0.
`Cursor` reads them from a memoryview without copying what it skips, so a file of
hundreds of MB can be walked through an mmap. Its errors say what is wrong and where;
who reads (a RESTORE, an import) adds what to do about it.
"""

from __future__ import annotations

import struct

__all__ = [
    "OP_EOF", "OP_SINT", "OP_STRING", "OP_UINT", "Cursor", "FormatError", "lzf_decompress", "module_id", "module_type",
]  # fmt: skip

OP_EOF, OP_SINT, OP_UINT, OP_FLOAT, OP_DOUBLE, OP_STRING = range(6)
_FIXED_FIELD = {OP_FLOAT: 4, OP_DOUBLE: 8}
_SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def module_id(name: str, encver: int) -> int:
    """The 64-bit id Redis writes before a module value: the 9-character type name in 6-bit symbols, the version."""
    value = 0
    for char in name:
        value = (value << 6) | _SYMBOLS.index(char)
    return (value << 10) | encver


def module_type(ident: int) -> tuple[str, int]:
    """(type name, encoding version) of a module id."""
    bits = ident >> 10
    return "".join(_SYMBOLS[(bits >> (6 * (8 - i))) & 63] for i in range(9)), ident & 1023


class FormatError(ValueError):
    """Bytes that break the RDB format; the text names what and where, the caller says what to do."""


class Cursor:
    """A position in RDB bytes; a read past the end is a FormatError, never an IndexError."""

    def __init__(self, data: memoryview, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, count: int) -> memoryview:
        if count < 0 or self.pos + count > len(self.data):
            raise FormatError(
                f"the {self.what} ends early (truncated?): {count} more bytes wanted at byte {self.pos} of "
                f"{len(self.data)}"
            )
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self) -> int:
        return int(self.take(1)[0])

    def length(self) -> tuple[int, bool]:
        """An RDB length, or (encoding, True) for a specially encoded string."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return int(struct.unpack(">I", self.take(4))[0]), False
        if first == 0x81:
            return int(struct.unpack(">Q", self.take(8))[0]), False
        raise FormatError(f"unknown length encoding 0x{first:02x} at byte {self.pos - 1} of the {self.what}")

    def number(self) -> int:
        """A length that must be a plain number (a count, an id), not a string's encoding."""
        value, encoded = self.length()
        if encoded:
            raise FormatError(f"a string encoding where a number belongs at byte {self.pos - 1} of the {self.what}")
        return value

    def string(self) -> bytes:
        """A string as Redis meant it: integers spelled out, compressed ones unpacked."""
        size, encoded = self.length()
        if not encoded:
            return bytes(self.take(size))
        if size in (0, 1, 2):  # integers kept as 1, 2 or 4 little-endian bytes
            return str(int.from_bytes(self.take(1 << size), "little", signed=True)).encode()
        if size == 3:
            packed, out_len = self.number(), self.number()
            return lzf_decompress(self.take(packed), out_len, self.what)
        raise FormatError(f"unknown string encoding {size} at byte {self.pos - 1} of the {self.what}")

    def skip_string(self) -> None:
        size, encoded = self.length()
        if not encoded:
            self.take(size)
        elif size in (0, 1, 2):
            self.take(1 << size)
        elif size == 3:
            packed, _ = self.number(), self.number()
            self.take(packed)
        else:
            raise FormatError(f"unknown string encoding {size} at byte {self.pos - 1} of the {self.what}")

    def field(self, opcode: int) -> None:
        """A module field's tag, which must be `opcode` (an unsigned field may have been written as signed)."""
        found = self.number()
        if found != opcode and not (opcode == OP_UINT and found == OP_SINT):
            raise FormatError(
                f"field of type {found} where type {opcode} was expected at byte {self.pos - 1} of the "
                f"{self.what} (written by another version?)"
            )

    def unsigned(self) -> int:
        self.field(OP_UINT)
        return self.number()

    def signed(self) -> int:
        value = self.unsigned()
        return value - (1 << 64) if value >= 1 << 63 else value

    def module_string(self) -> bytes:
        self.field(OP_STRING)
        return self.string()

    def skip_module_fields(self) -> int:
        """Every tagged field up to and including the closing tag, without knowing the module; how many."""
        count = 0
        while (tag := self.number()) != OP_EOF:
            if tag in (OP_SINT, OP_UINT):
                self.number()
            elif tag == OP_STRING:
                self.skip_string()
            elif tag in _FIXED_FIELD:
                self.take(_FIXED_FIELD[tag])
            else:
                raise FormatError(f"unknown module field type {tag} at byte {self.pos - 1} of the {self.what}")
            count += 1
        return count


def lzf_decompress(data: memoryview, out_len: int, what: str) -> bytes:
    out = bytearray()
    src, pos = bytes(data), 0
    try:
        while pos < len(src):
            ctrl = src[pos]
            pos += 1
            if ctrl < 32:
                out += src[pos : pos + ctrl + 1]
                pos += ctrl + 1
                continue
            length = ctrl >> 5
            if length == 7:
                length += src[pos]
                pos += 1
            ref = len(out) - ((ctrl & 0x1F) << 8) - src[pos] - 1
            pos += 1
            if ref < 0:
                raise IndexError(ref)
            for _ in range(length + 2):  # may overlap what it copies: byte by byte
                out.append(out[ref])
                ref += 1
    except IndexError:
        raise FormatError(f"a compressed string in the {what} is damaged") from None
    if len(out) != out_len:
        raise FormatError(f"a compressed string in the {what} unpacks to {len(out)} bytes, not {out_len}")
    return bytes(out)
