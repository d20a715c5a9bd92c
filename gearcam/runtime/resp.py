"""RESP2/RESP3 framing: serialise replies, find reply boundaries. No I/O.

Requests are split by `request.RequestParser` (Redis' limits and error texts). Every
reply the runtime must understand is parsed by hiredis, the C parser redis-py uses.
Replies that are only relayed are never decoded: `reply_end` finds where one ends so
its bytes can be forwarded as the backing Redis wrote them, which keeps RESP3 types
(sets, attributes, pushes, verbatim strings) and the simple-vs-bulk string distinction
that a decode/re-encode round trip would lose.
"""

from __future__ import annotations

import functools
import math
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import hiredis

__all__ = [
    "coalesce",
    "Double",
    "Encoded",
    "ErrorReply",
    "ProtocolError",
    "Push",
    "SetReply",
    "SimpleString",
    "Verbatim",
    "encode",
    "encode_command",
    "plain_reply",
    "Arg",
    "bulk_payload",
    "parse_reply",
    "is_loading",
    "is_monitor_line",
    "MODULE_CLIENT",
    "MonitorLine",
    "read_monitor_line",
    "monitor_line",
    "read_replies",
    "reply_end",
]


class ProtocolError(Exception):
    """The peer broke the framing; the connection cannot be trusted any more."""


class SimpleString(str):
    """A status reply (`+OK`), as opposed to a bulk string."""


class ErrorReply(Exception):
    """An error reply (`-ERR ...`); raised by handlers, serialised for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_loading(message: str) -> bool:
    """Whether an error reply is Redis' LOADING: it restarted and is reading its data set back, i.e. not back yet."""
    return message.startswith("LOADING")


@dataclass(frozen=True)
class Double:
    """A double reply: a bulk string in RESP2, `,` in RESP3 (as Redis' addReplyDouble)."""

    value: float


@dataclass(frozen=True)
class Verbatim:
    """A verbatim string: a bulk string in RESP2, `=` with a format in RESP3."""

    text: bytes
    format: str = "txt"


class SetReply(list):  # type: ignore[type-arg]
    """A set reply: `~` in RESP3, an array in RESP2 (as Redis' addReplySetLen)."""


@dataclass(frozen=True)
class Encoded:
    """A reply already encoded in the client's protocol (a relayed frame, or one put together from its parts)."""

    raw: bytes


@dataclass(frozen=True)
class Push:
    """An out-of-band push frame (RESP3 `>`), already encoded."""

    raw: bytes


CRLF = b"\r\n"
_OK = b"+OK\r\n"
# Bulk strings at least this large are sent as their own chunk instead of being copied.
_BUFFER_CUTOFF = 16 * 1024


# A MONITOR line: "+<unix time>.<microseconds> [<db> <client>] "<arg>" ...", arguments quoted as Redis'
# sdscatrepr quotes them (printable ASCII as is but for '"' and '\\', C escapes, else \xHH). No reply a
# monitor's own commands can get has that start (status replies are fixed words).
_MONITOR_START = re.compile(rb"\+\d+\.\d{6} \[")
_ESCAPES = {ord('"'): b'\\"', ord("\\"): b"\\\\", 10: b"\\n", 13: b"\\r", 9: b"\\t", 7: b"\\a", 8: b"\\b"}
_REPR = [_ESCAPES.get(b) or (bytes((b,)) if 0x20 <= b < 0x7F else b"\\x%02x" % b) for b in range(256)]
_NEEDS_ESCAPE = re.compile(rb"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def is_monitor_line(frame: bytes) -> bool:
    return _MONITOR_START.match(frame) is not None


def monitor_line(when: float, db: int, client: str, args: Iterable[bytes]) -> bytes:
    """The line Redis sends its monitors for a command it ran (replicationFeedMonitors, sdscatrepr)."""
    quoted = (
        b'"' + arg + b'"' if _NEEDS_ESCAPE.search(arg) is None else b'"' + b"".join(map(_REPR.__getitem__, arg)) + b'"'
        for arg in args
    )
    return b"+%.6f [%d %s] %s\r\n" % (when, db, client.encode(), b" ".join(quoted))


# The client Redis names for what a Lua script or a module's RM_Call runs, in MONITOR lines and SLOWLOG entries:
# it has no socket, so no address.
MODULE_CLIENT = "?:0"
_MONITOR_HEAD = re.compile(rb"\+\d+\.\d{6} \[(\d+) ((?:\[[^\]]*\])?[^\[\]]*)\] ")  # an IPv6 client: [::1]:6379
_QUOTED_UNIT = rb'(?:[^"\\]|\\x[0-9a-fA-F]{2}|\\.)'
_QUOTED = re.compile(rb'"(' + _QUOTED_UNIT + rb'*)" ?')
_UNQUOTE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)")
_UNESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


@dataclass(frozen=True)
class MonitorLine:
    """What a MONITOR line says: the DB, the client as Redis names it (`lua` for a script's calls), where that
    name sits in the line, and the command's first arguments, the last of them cut (see read_monitor_line)."""

    db: int
    client: str
    client_at: tuple[int, int]
    args: list[bytes]


def _unquote(quoted: bytes) -> bytes:
    def one(match: re.Match[bytes]) -> bytes:
        code = match[1]
        return bytes((int(code[1:], 16),)) if len(code) == 3 else _UNESCAPES.get(code, code)

    return _UNQUOTE.sub(one, quoted) if b"\\" in quoted else quoted


@functools.cache
def _quoted_start(cut: int) -> re.Pattern[bytes]:
    """An argument's first `cut` bytes as quoted (compiled once per cut: read_monitor_line runs per line)."""
    return re.compile(rb'"(' + _QUOTED_UNIT + rb"{0,%d})" % cut)


def read_monitor_line(frame: bytes, count: int = 3, cut: int = 32) -> MonitorLine | None:
    """A MONITOR line read back (monitor_line's inverse): at most its first `count` arguments, the last of them
    only its first `cut` bytes or so, so a line of a large value is not read whole; None for what is no line."""
    head = _MONITOR_HEAD.match(frame)
    if head is None:
        return None
    args: list[bytes] = []
    at = head.end()
    while len(args) < count - 1 and (quoted := _QUOTED.match(frame, at)) is not None:
        args.append(_unquote(quoted[1]))
        at = quoted.end()
    if len(args) == count - 1 and frame[at : at + 1] == b'"':
        cut_at = _quoted_start(cut).match(frame, at)
        if cut_at is not None:
            args.append(_unquote(cut_at[1]))
    return MonitorLine(int(head[1]), head[2].decode("utf-8", "replace"), head.span(2), args)


def _format_double(value: float) -> bytes:
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if math.isnan(value):
        return b"nan"
    return b"%.17g" % value


def _bulk(data: bytes | memoryview, out: list[bytes]) -> None:
    if isinstance(data, memoryview):
        data = data.cast("B") if data.format != "B" else data
        out.append(b"$%d\r\n" % data.nbytes)
        out.append(data)  # type: ignore[arg-type]  # writelines takes any bytes-like object
        out.append(CRLF)
    elif len(data) >= _BUFFER_CUTOFF:
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(CRLF)
    else:
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))


def encode(value: Any, protocol: int = 2, out: list[bytes] | None = None) -> list[bytes]:
    """Serialise a reply into chunks for `writelines`; big blobs are not copied."""
    if out is None:
        out = []
    if isinstance(value, SimpleString):
        out.append(_OK if value == "OK" else b"+%s\r\n" % value.encode())
    elif isinstance(value, ErrorReply):
        message = value.message.replace("\r", " ").replace("\n", " ")
        out.append(b"-%s\r\n" % message.encode())
    elif isinstance(value, bool):
        if protocol == 3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif isinstance(value, int):
        out.append(b":%d\r\n" % value)
    elif isinstance(value, bytes | memoryview):
        _bulk(value, out)
    elif isinstance(value, bytearray):
        _bulk(bytes(value), out)
    elif isinstance(value, str):
        _bulk(value.encode(), out)
    elif value is None:
        out.append(b"_\r\n" if protocol == 3 else b"$-1\r\n")
    elif isinstance(value, Double | float):
        number = value.value if isinstance(value, Double) else value
        text = _format_double(number)
        if protocol == 3:
            out.append(b",%s\r\n" % text)
        else:
            _bulk(text, out)
    elif isinstance(value, Verbatim):
        if protocol == 3:
            body = value.format.encode() + b":" + value.text
            out.append(b"=%d\r\n" % len(body))
            out.append(body)
            out.append(CRLF)
        else:
            _bulk(value.text, out)
    elif isinstance(value, dict):
        if protocol == 3:
            out.append(b"%%%d\r\n" % len(value))
        else:
            out.append(b"*%d\r\n" % (2 * len(value)))
        for key, item in value.items():
            encode(key, protocol, out)
            encode(item, protocol, out)
    elif isinstance(value, SetReply):
        out.append(b"%s%d\r\n" % (b"~" if protocol == 3 else b"*", len(value)))
        for item in value:
            encode(item, protocol, out)
    elif isinstance(value, list | tuple):
        out.append(b"*%d\r\n" % len(value))
        for item in value:
            encode(item, protocol, out)
    elif isinstance(value, Push | Encoded):
        out.append(value.raw)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")
    return out


Arg = bytes | str | int | float | memoryview | tuple[bytes | memoryview, ...]


def encode_command(args: Iterable[Arg], out: list[bytes] | None = None) -> list[bytes]:
    """Serialise a command as a RESP array of bulk strings (what clients send).

    A tuple argument is one bulk string sent in parts, so a header and a large
    payload reach the server without being joined into a new buffer first.
    """
    items = list(args)
    if out is None:
        out = []
    out.append(b"*%d\r\n" % len(items))
    for item in items:
        if isinstance(item, tuple):
            parts = [p if isinstance(p, memoryview) else memoryview(p) for p in item]
            out.append(b"$%d\r\n" % sum(p.nbytes for p in parts))
            out.extend(parts)  # type: ignore[arg-type]
            out.append(CRLF)
        elif isinstance(item, bytes | memoryview):
            _bulk(item, out)
        else:
            _bulk(str(item).encode(), out)
    return out


_SMALL = 16 * 1024


def coalesce(chunks: Iterable[bytes | memoryview]) -> list[bytes | memoryview]:
    """Runs of small chunks joined into one: a transport may send each chunk with a system call of its own.

    Large chunks (payloads) stay as they are, so a big tensor is never copied to be sent.
    """
    out: list[bytes | memoryview] = []
    run: list[bytes | memoryview] = []
    for chunk in chunks:
        if len(chunk) < _SMALL:
            run.append(chunk)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else b"".join(run))
            run = []
        out.append(chunk)
    if run:
        out.append(run[0] if len(run) == 1 else b"".join(run))
    return out


def _line_end(buf: bytes | bytearray, pos: int) -> int:
    end = buf.find(b"\r\n", pos)
    return end


_ONE_LINE = frozenset(b"+-:,#_(")  # the type bytes of replies that end with their first line


def reply_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """Index just past the reply that starts at `pos`, or -1 if it is not complete yet."""
    if pos < len(buf) and buf[pos] in _ONE_LINE:  # +OK, :1, -ERR: most of a backend link's replies
        end = buf.find(b"\r\n", pos)
        return -1 if end < 0 else end + 2
    stack = [1]
    while stack:
        end = _line_end(buf, pos)
        if end < 0:
            return -1
        kind = buf[pos : pos + 1]
        stack[-1] -= 1
        if kind in (b"$", b"=", b"!"):
            size = int(buf[pos + 1 : end])
            pos = end + 2
            if size >= 0:
                if len(buf) < pos + size + 2:
                    return -1
                pos += size + 2
        elif kind in (b"*", b"~", b">", b"%", b"|"):
            count = int(buf[pos + 1 : end])
            pos = end + 2
            if count > 0:
                stack.append(count * 2 if kind in (b"%", b"|") else count)
            if kind == b"|":
                # An attribute precedes the reply it annotates: one more element follows.
                stack[-2] += 1
        elif kind in (b"+", b"-", b":", b",", b"#", b"_", b"("):
            pos = end + 2
        else:
            raise ProtocolError(f"unexpected reply type byte {kind!r}")
        while stack and stack[-1] == 0:
            stack.pop()
    return pos


def bulk_payload(frame: bytes) -> memoryview | Any:
    """A bulk-string reply's payload as a view of the frame (no copy); other replies parsed."""
    if frame[:1] == b"$" and frame[1:3] != b"-1":
        start = frame.index(b"\r\n") + 2
        return memoryview(frame)[start:-2]
    return parse_reply(frame)


def parse_reply(frame: bytes) -> Any:
    """Decode one complete reply frame (errors come back as ErrorReply instances)."""
    reader = hiredis.Reader(protocolError=ProtocolError, replyError=ErrorReply)
    reader.feed(frame)
    value = reader.gets()
    if value is False:
        raise ProtocolError("incomplete reply frame")
    return value


def plain_reply(reply: Any) -> Any:
    """A reply as a RESP2 client reads it (bytes, ints, lists; errors inside arrays as their text).

    What Gears code gets from commands the runtime answers (execute('RG.…'), call_next): plain data
    only crosses to a worker. An error reply is raised as ErrorReply.
    """
    value = parse_reply(b"".join(encode(reply, 2)))
    if isinstance(value, ErrorReply):
        raise value
    return _errors_as_text(value)


def _errors_as_text(value: Any) -> Any:
    if isinstance(value, ErrorReply):
        return value.message
    if isinstance(value, list):
        return [_errors_as_text(v) for v in value]
    return value


def read_replies(sock: socket.socket, reader: Any, count: int) -> list[Any]:
    """``count`` replies from a blocking socket through a hiredis Reader (blocking clients: Gears, benchmarks).

    Error replies are returned in place, as the Reader builds them; ConnectionError if the
    peer closes first.
    """
    replies: list[Any] = []
    while len(replies) < count:
        reply = reader.gets()
        if reply is False:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the server closed the connection")
            reader.feed(data)
            continue
        replies.append(reply)
    return replies
