"""Split a client's byte stream into commands, with redis-server's limits and error texts. No I/O.

Written after Redis 7.0's processMultibulkBuffer/processInlineBuffer (networking.c) and
sdssplitargs (sds.c), in pure Python, because the limits must be checked before anything
is built: a declared count or length allocates nothing, a count or length over Redis'
limits is refused with Redis' own error, and a header line without CRLF is not buffered
past 64 KB. hiredis (used before) allocated a list of the declared size, so
`*2147483647\\r\\n` stalled every client for seconds.

`buffered` is what this client holds right now (bytes not yet returned as commands,
plus the arguments of the command being read); the connection checks it against the
per-client limit and the server's budget for all clients.
"""

from __future__ import annotations

import ctypes
import re
import sys
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from gearcam.runtime.resp import ProtocolError

__all__ = [
    "INLINE_MAX_SIZE",
    "MAX_MULTIBULK_LEN",
    "PROTO_MAX_BULK_LEN",
    "RequestParser",
    "Unfinished",
    "complete_commands",
    "continue_command",
    "memory_bytes",
    "split_inline",
    "unfinished_command",
]

INLINE_MAX_SIZE = 64 * 1024  # PROTO_INLINE_MAX_SIZE: longest inline command or count line
MAX_MULTIBULK_LEN = 2**31 - 1  # Redis 7.0 refuses more than INT_MAX arguments
PROTO_MAX_BULK_LEN = 512 * 1024 * 1024  # proto-max-bulk-len's default
UNAUTHENTICATED_MULTIBULK_LEN = 10  # before AUTH, when a password is set (Redis 7.0)
UNAUTHENTICATED_BULK_LEN = 16 * 1024
# Cost of one parsed argument beyond its bytes (the bytes object and its list slot), so
# `*1000000` followed by empty strings counts against the limits as what it takes in memory.
ARG_OVERHEAD = 48
# Arguments parsed per call before the caller gets a chance to serve other clients (`has_more`).
_ARGS_PER_CALL = 8192
# Bulk strings this large that have not fully arrived are collected in their own buffer.
_BIG_BULK = 32 * 1024  # PROTO_MBULK_BIG_ARG: a bulk this long is collected apart, as Redis does
_SPECIAL_INLINE = re.compile(rb"[\"'\x00\x0b\x0c]")
_HEX = b"0123456789abcdefABCDEF"
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_SPACE = b" \t\n\v\f\r"  # C isspace()


def _integer(text: bytes) -> int | None:
    """Redis' string2ll: optional '-', digits, no leading zeros, no spaces or '+'; None if not one."""
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or len(digits) > 20 or (digits[:1] == b"0" and len(text) > 1):
        return None
    return int(text)


def _logs_out(args: list[bytes]) -> bool:
    """RESET logs the client out: what follows it is parsed once the connection has set `authenticated`."""
    return len(args) == 1 and len(args[0]) == 5 and args[0].upper() == b"RESET"


_UNITS = {b"": 1, b"b": 1, b"k": 1000, b"kb": 1024, b"m": 1000**2, b"mb": 1024**2, b"g": 1000**3, b"gb": 1024**3}


def memory_bytes(value: bytes) -> int:
    """A memory size as Redis reads one in its configuration (memtoull): `536870912`, `512mb`, `1GB`."""
    text = value.strip().lower()
    digits = text.rstrip(b"kmgb")
    return int(digits) * _UNITS[text[len(digits) :]]


class RequestParser:
    """Commands out of a client's stream: RESP arrays, or inline commands (as typed into telnet).

    `feed` buffers bytes; `gets` returns the next complete command, None when more bytes
    are needed, and raises ProtocolError (its text follows "ERR Protocol error: ") on
    broken framing, after the commands that came before the break. Set `authenticated`
    to False while the client must still AUTH: counts over 10 and bulk strings over
    16 KB are then refused, as Redis does, and commands are parsed one at a time so an
    AUTH takes effect for the next one; parsing also stops after a RESET, which logs out.
    """

    def __init__(self, max_request_size: int, max_bulk_len: int = PROTO_MAX_BULK_LEN) -> None:
        self.max_request_size = max_request_size  # the query buffer limit: CONFIG SET changes it
        self.max_bulk_len = max_bulk_len  # the backing Redis' proto-max-bulk-len: CONFIG SET changes it
        self._buf = b""
        self._pos = 0
        self._args: list[bytes] | None = None  # the array being read; None between commands
        self._argc = 0  # its arguments still to come
        self._args_size = 0  # memory of the arguments read so far
        # A large bulk string still arriving: the argument it becomes (allocated at its declared
        # length, as Redis sizes its query buffer for one) and a writable view of it, the bytes
        # received from its start (the CRLF after it included), and the payload's declared length.
        self._big_arg: bytes | bytearray = b""
        self._big: memoryview | None = None
        self._big_got = 0
        self._big_len = 0
        self._ready: deque[list[bytes]] = deque()
        self._error: ProtocolError | None = None
        self._more = False
        self._budget = 0
        self.authenticated = True
        # Told the command's arguments so far when a large bulk string begins to arrive (it must
        # not keep or change them): the connection lets memory go that the command will replace.
        self.on_big_argument: Callable[[list[bytes]], None] | None = None

    @property
    def has_more(self) -> bool:
        """True when `gets` returned None only to bound its work: call it again (after letting others run)."""
        return self._more

    @property
    def buffered(self) -> int:
        """Memory this client's unfinished input holds, in bytes (Redis' query buffer)."""
        big = self._big_got if self._big is not None else 0
        return len(self._buf) - self._pos + self._args_size + big

    def feed(self, data: bytes) -> None:
        """Buffer `data`; ProtocolError if the client now holds more than the query buffer limit."""
        if self._big is not None:
            got, need = self._big_got, self._big_len
            if got < need:
                taken = min(need - got, len(data))
                self._big[got : got + taken] = memoryview(data)[:taken]
            self._big_got = got + len(data)
            if self._big_got >= need + 2:
                self._finish_big(data)
        elif self._pos:
            self._buf = self._buf[self._pos :] + data
            self._pos = 0
        else:
            self._buf += data
        if self.buffered > self.max_request_size:
            size = self.buffered
            self.release()
            raise _over_query_buffer(size, self.max_request_size)

    def receive_into(self) -> memoryview | None:
        """Where the next bytes may be received in place: the rest of a large bulk string's payload.

        None when no large bulk string is arriving, or its rest would take this client over the
        query buffer limit (then `feed` counts the bytes and refuses them, as always).
        """
        big = self._big
        if big is None or self._big_got >= self._big_len:
            return None
        if self.buffered + self._big_len - self._big_got > self.max_request_size:
            return None
        return big[self._big_got :]

    def received(self, nbytes: int) -> None:
        """`nbytes` bytes were written at the start of the last `receive_into` view."""
        self._big_got += nbytes

    def commands(self, data: bytes) -> list[list[bytes]]:
        """Feed `data` and return every command it completes (for tests and simple callers)."""
        self.feed(data)
        out = []
        while (command := self.gets()) is not None:
            out.append(command)
        return out

    def release(self) -> None:
        """Drop everything buffered and give its memory back (the client is going away)."""
        self._buf = b""
        self._pos = 0
        self._args = None
        self._argc = 0
        self._args_size = 0
        self._big = None
        self._big_arg = b""
        self._big_got = 0
        self._ready.clear()

    def gets(self) -> list[bytes] | None:
        self._more = False
        self._budget = _ARGS_PER_CALL
        if not self._ready and self._error is None and self._big is None:
            try:
                self._parse(1 if not self.authenticated else 1 << 30)
            except ProtocolError as exc:
                self._error = exc
        if self._ready:
            return self._ready.popleft()
        if self._error is not None:
            raise self._error
        return None

    def _parse(self, limit: int) -> None:
        buf, pos, ready = self._buf, self._pos, self._ready
        n = len(buf)
        try:
            while len(ready) < limit:
                if self._budget <= 0:
                    self._more = pos < n
                    break
                args = self._args
                if args is None:
                    if pos >= n:
                        break
                    if buf[pos] != 0x2A:  # not '*': an inline command
                        end = buf.find(b"\n", pos)
                        if end < 0:
                            if n - pos > INLINE_MAX_SIZE:
                                raise ProtocolError("too big inline request")
                            break
                        line = buf[pos : end - 1 if end > pos and buf[end - 1] == 0x0D else end]
                        pos = end + 1
                        parts = split_inline(line)
                        if parts:
                            ready.append(parts)
                            if _logs_out(parts):
                                break
                        continue
                    end = buf.find(b"\r", pos)
                    if end < 0 or end + 1 >= n:
                        if n - pos > INLINE_MAX_SIZE:
                            raise ProtocolError("too big mbulk count string")
                        break
                    text = buf[pos + 1 : end]
                    count = int(text) if text.isdigit() and (text[0] != 0x30 or len(text) == 1) else _integer(text)
                    if count is None or count > MAX_MULTIBULK_LEN:
                        raise ProtocolError("invalid multibulk length")
                    if count > UNAUTHENTICATED_MULTIBULK_LEN and not self.authenticated:
                        raise ProtocolError("unauthenticated multibulk length")
                    pos = end + 2
                    if count <= 0:
                        continue  # Redis skips `*0` and negative counts
                    args = self._args = []
                    self._argc = count
                    self._args_size = 0
                done = len(args)
                pos = self._read_arguments(buf, pos, args)
                if self._argc:
                    self._args_size += sum(len(a) for a in args[done:]) + ARG_OVERHEAD * (len(args) - done)
                    break
                self._args = None
                self._args_size = 0
                ready.append(args)
                if _logs_out(args):
                    break
        finally:
            if self._big is None:
                self._buf, self._pos = buf, pos
            # A large bulk string moved to self._big; _read_arguments already emptied the buffer.

    def _read_arguments(self, buf: bytes, pos: int, args: list[bytes]) -> int:
        """Read the current array's arguments from `pos`; the position reached."""
        n = len(buf)
        argc = self._argc
        authenticated = self.authenticated
        budget = self._budget
        while argc:
            budget -= 1
            if budget < 0:
                self._more = True
                break
            header = _bulk_header(buf, pos, self.max_bulk_len)
            if header is None:
                break
            length, start = header
            if length > UNAUTHENTICATED_BULK_LEN and not authenticated:
                raise ProtocolError("unauthenticated bulk length")
            stop = start + length
            if stop + 2 > n:
                if length >= _BIG_BULK:
                    # Received straight into the argument, so the buffer is not copied as it grows
                    # and the chunks are not kept until the end.
                    if self.on_big_argument is not None:
                        self.on_big_argument(args)
                    try:
                        self._big_arg, self._big = _unfilled_bytes(length)
                    except MemoryError:
                        raise ProtocolError(
                            f"cannot allocate {length} bytes for a bulk string; send a smaller one or free memory"
                        ) from None
                    self._big[: min(n - start, length)] = memoryview(buf)[start : start + length]
                    self._big_got = n - start
                    self._big_len = length
                    self._buf, self._pos = b"", 0
                    pos = n
                break
            # Redis skips the two bytes after the payload without looking at them; so do we.
            args.append(buf[start:stop])
            pos = stop + 2
            argc -= 1
        self._argc = argc
        self._budget = budget
        return pos

    def _finish_big(self, last: bytes) -> None:
        """The large bulk string is complete; parsing goes on in `last`, the chunk that completed it.

        Redis skips the two bytes after the payload without looking at them; so do we. What
        follows them is parsed inside `last`, without copying it out.
        """
        arg = self._big_arg
        self._big = None
        self._big_arg = b""
        self._buf, self._pos = last, len(last) - (self._big_got - self._big_len - 2)
        self._big_got = 0
        assert self._args is not None
        self._args.append(bytes(arg) if isinstance(arg, bytearray) else arg)
        self._args_size += self._big_len + ARG_OVERHEAD
        self._argc -= 1
        if self._argc == 0:
            self._ready.append(self._args)
            self._args = None
            self._args_size = 0


def _unfilled_bytes(size: int) -> tuple[bytes | bytearray, memoryview]:
    """A new bytes object of `size` bytes, uninitialised, and a writable view of its contents.

    A large bulk string is received straight into the bytes object the command gets: it is
    copied once, as it arrives, instead of being kept in chunks and joined at the end (which
    held it twice at the peak), and it is not zeroed first. On CPython this is its own
    PyBytes_FromStringAndSize(NULL, n), whose contents the caller fills before anyone else
    sees the object (the parser keeps it private until the bulk is complete). Elsewhere, a
    bytearray, copied into bytes once complete.
    """
    if _from_string_and_size is None:
        buffer = bytearray(size)
        return buffer, memoryview(buffer)
    arg = _from_string_and_size(None, size)
    contents = (ctypes.c_char * size).from_address(id(arg) + _BYTES_HEADER)
    return arg, memoryview(contents).cast("B")


_BYTES_HEADER = bytes.__basicsize__ - 1  # offset of PyBytesObject.ob_sval, the last field (its NUL counted)
_from_string_and_size: Any = None
if sys.implementation.name == "cpython":
    _from_string_and_size = ctypes.pythonapi.PyBytes_FromStringAndSize
    _from_string_and_size.restype = ctypes.py_object
    _from_string_and_size.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    _probe, _view = _unfilled_bytes(8)
    _view[:] = b"gearcam!"
    if _probe != b"gearcam!":  # a CPython whose bytes are laid out otherwise: take the portable way
        _from_string_and_size = None
    del _probe, _view


def complete_commands(
    data: bytes, max_bulk_len: int, limit: int, names: Container[bytes] | None = None
) -> list[tuple[int, bytes]]:
    """The complete, plainly framed commands at the start of `data`: where each ends, and its name.

    For relaying commands as they came (connection.py): nothing is built but the names. It
    stops, leaving the rest to RequestParser (which knows Redis' errors), at the first
    inline command, incomplete array, or count or length that is malformed, zero, or over
    the limits; so whatever it accepts, RequestParser would have read the same way. At most
    `limit` commands. With `names` (upper case), it also stops at the first command whose
    name is not among them, without reading its other arguments: that one is listed last, its
    end as -1 (the parser reads it; scanning it here too cost the AI trio a second parse).
    """
    found: list[tuple[int, bytes]] = []
    n = len(data)
    pos = 0
    while pos < n and len(found) < limit:
        header = _plain_count(data, pos)
        if header is None:
            break
        count, at = header
        name = b""
        for index in range(count):
            bulk = _plain_bulk(data, at, max_bulk_len)
            if bulk is None:
                return found
            length, start = bulk
            at = start + length + 2
            if at > n:
                return found
            if index == 0:
                name = data[start : start + length]
                if names is not None and name.upper() not in names:
                    found.append((-1, name))
                    return found
        found.append((at, name))
        pos = at
    return found


def _plain_count(data: bytes, pos: int) -> tuple[int, int] | None:
    """A plainly written array count at `pos` (`*N\\r\\n`, N > 0): N and where its first bulk starts."""
    if pos >= len(data) or data[pos] != 0x2A:  # '*'
        return None
    eol = data.find(b"\r\n", pos)
    text = data[pos + 1 : eol]
    if eol < 0 or not text.isdigit() or text[0] == 0x30 or len(text) > 9:
        return None
    return int(text), eol + 2


def _plain_bulk(data: bytes, at: int, max_bulk_len: int) -> tuple[int, int] | None:
    """A plainly written bulk header at `at` within the limit: its length and where its payload starts."""
    if at >= len(data) or data[at] != 0x24:  # '$'
        return None
    eol = data.find(b"\r\n", at)
    text = data[at + 1 : eol]
    if eol < 0 or not text.isdigit() or (text[0] == 0x30 and len(text) > 1) or len(text) > 10:
        return None
    length = int(text)
    return (length, eol + 2) if length <= max_bulk_len else None


@dataclass(slots=True)
class Unfinished:
    """What is still to come of a command relayed as it arrives (connection.py), between reads."""

    args: int  # bulk strings whose headers have not arrived
    skip: int = 0  # bytes of the current bulk string, with the two after it, still to pass
    size: int = 0  # what the command's arguments would hold in the parser, against the query buffer limit

    @property
    def done(self) -> bool:
        return not self.args and not self.skip


def unfinished_command(data: bytes, pos: int, max_bulk_len: int, max_size: int) -> tuple[bytes, Unfinished, int] | None:
    """The command that starts at `pos` and runs past the end of `data`, plainly framed as far as it came.

    Its name, what is still to come of it, and where the bytes that may be relayed end (the end
    of `data`, or the start of a bulk header cut by it, to be read again with the next bytes).
    None when its count and name have not both arrived whole, or anything so far is what
    RequestParser would refuse, or it ends inside `data` after all: then the parser reads it.
    """
    count = _plain_count(data, pos)
    name = None if count is None else _plain_bulk(data, count[1], max_bulk_len)
    if count is None or name is None or name[1] + name[0] > len(data):
        return None
    length, start = name
    rest = Unfinished(args=count[0] - 1, skip=length + 2, size=length + ARG_OVERHEAD)
    try:
        stop = continue_command(data, start, rest, max_bulk_len, max_size)
    except ProtocolError:
        return None
    if rest.done:
        return None
    return data[start : start + length], rest, stop


def continue_command(data: bytes, pos: int, rest: Unfinished, max_bulk_len: int, max_size: int) -> int:
    """Pass what `data` holds of `rest` from `pos` (updating it); where that ends.

    Where the command ends, the end of `data`, or the start of a bulk header that `data` cuts
    (the caller keeps it for the next read). Bulk headers are checked as RequestParser checks
    them, with its errors: a command already partly relayed cannot be handed to the parser.
    """
    n = len(data)
    while True:
        if rest.skip:
            step = min(rest.skip, n - pos)
            pos += step
            rest.skip -= step
            if rest.skip:
                return pos
        if not rest.args:
            return pos
        header = _bulk_header(data, pos, max_bulk_len)
        if header is None:
            return pos
        length, pos = header
        rest.size += length + ARG_OVERHEAD
        if rest.size > max_size:
            raise _over_query_buffer(rest.size, max_size)
        rest.args -= 1
        rest.skip = length + 2  # Redis skips the two bytes after the payload without looking at them


def _bulk_header(buf: bytes, pos: int, max_bulk_len: int) -> tuple[int, int] | None:
    """The bulk string header at `pos` as Redis reads it: its length and where its payload starts.

    None while the header has not arrived whole; ProtocolError, with Redis' text, when it is wrong.
    """
    end = buf.find(b"\r", pos)
    if end < 0 or end + 1 >= len(buf):
        if len(buf) - pos > INLINE_MAX_SIZE:
            raise ProtocolError("too big bulk count string")
        return None
    if buf[pos] != 0x24:  # '$'
        raise ProtocolError(f"expected '$', got '{chr(buf[pos])}'")
    text = buf[pos + 1 : end]
    if not text.isdigit() or (text[0] == 0x30 and len(text) > 1) or len(text) > 20:
        raise ProtocolError("invalid bulk length")
    length = int(text)
    if length > max_bulk_len:
        raise ProtocolError("invalid bulk length")
    return length, end + 2


def _over_query_buffer(size: int, limit: int) -> ProtocolError:
    return ProtocolError(
        f"request of {size}+ bytes is over the runtime's query buffer limit of {limit} bytes; "
        "raise runtime.max_request_size (--max-request-size, or CONFIG SET client-query-buffer-limit)"
    )


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command as Redis' sdssplitargs: quotes, backslash escapes, \\xHH."""
    if not _SPECIAL_INLINE.search(line):
        return line.split()
    args: list[bytes] = []
    n = len(line)
    i = 0
    while True:
        while i < n and line[i] in _SPACE and line[i] != 0:
            i += 1
        if i >= n or line[i] == 0:
            return args
        current = bytearray()
        in_double = in_single = False
        while True:
            c = line[i] if i < n else 0
            if in_double:
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x78 and _ishex(line, i + 2) and _ishex(line, i + 3):
                    current.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n and line[i + 1] != 0:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] != 0 and line[i + 1] not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                elif c == 0:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    current.append(c)
            elif in_single:
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] != 0 and line[i + 1] not in _SPACE:
                        raise ProtocolError("unbalanced quotes in request")
                    i += 1
                    break
                elif c == 0:
                    raise ProtocolError("unbalanced quotes in request")
                else:
                    current.append(c)
            elif c in b" \n\r\t\x00":
                break
            elif c == 0x22:
                in_double = True
            elif c == 0x27:
                in_single = True
            else:
                current.append(c)
            i += 1
        args.append(bytes(current))


def _ishex(line: bytes, index: int) -> bool:
    return index < len(line) and line[index] in _HEX
