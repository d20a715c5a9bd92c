"""gearcam.runtime.resp: request parsing, reply encoding and reply boundaries, without sockets."""

from __future__ import annotations

import hiredis
import pytest

from gearcam.runtime.resp import (
    Double,
    ErrorReply,
    ProtocolError,
    SimpleString,
    Verbatim,
    encode,
    encode_command,
    parse_reply,
    reply_end,
)

FRAMES = [
    b"+OK\r\n",
    b"-ERR nope\r\n",
    b":42\r\n",
    b"$5\r\nhello\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*2\r\n$1\r\na\r\n*2\r\n:1\r\n$3\r\nb\r\n\r\n",
    b"%1\r\n+key\r\n*1\r\n:1\r\n",
    b"~2\r\n:1\r\n:2\r\n",
    b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$0\r\n\r\n",
    b",1.5\r\n",
    b"#t\r\n",
    b"_\r\n",
    b"(12345678901234567890\r\n",
    b"=8\r\ntxt:abcd\r\n",
    b"!3\r\nbad\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n",
]


@pytest.mark.parametrize("frame", FRAMES)
def test_reply_end_finds_the_end_of_every_reply_type(frame: bytes) -> None:
    assert reply_end(frame) == len(frame)
    assert reply_end(frame + b"+next\r\n") == len(frame)


@pytest.mark.parametrize("frame", FRAMES)
def test_reply_end_waits_for_every_byte(frame: bytes) -> None:
    for cut in range(len(frame)):
        assert reply_end(frame[:cut]) == -1


def test_reply_end_starts_at_an_offset() -> None:
    buf = b"+OK\r\n:7\r\n"
    assert reply_end(buf, 5) == len(buf)


def test_reply_end_rejects_an_unknown_type_byte() -> None:
    with pytest.raises(ProtocolError):
        reply_end(b"?x\r\n")


def _decode(chunks: list[bytes]) -> object:
    reader = hiredis.Reader(replyError=ErrorReply)
    reader.feed(b"".join(chunks))
    return reader.gets()


def test_encode_round_trips_through_hiredis() -> None:
    value = [b"blob", "text", 3, None, [1, [b"x"]], SimpleString("OK")]
    assert _decode(encode(value)) == [b"blob", b"text", 3, None, [1, [b"x"]], b"OK"]


def test_simple_strings_and_errors_keep_their_type() -> None:
    assert b"".join(encode(SimpleString("OK"))) == b"+OK\r\n"
    assert b"".join(encode(SimpleString("TIMEDOUT"))) == b"+TIMEDOUT\r\n"
    assert b"".join(encode(ErrorReply("ERR bad\r\nthing"))) == b"-ERR bad  thing\r\n"


def test_doubles_are_bulk_strings_in_resp2_and_doubles_in_resp3() -> None:
    import numpy as np

    value = Double(float(np.float32(0.1)))
    assert b"".join(encode(value, 2)) == b"$19\r\n0.10000000149011612\r\n"
    assert b"".join(encode(value, 3)) == b",0.10000000149011612\r\n"
    assert b"".join(encode(Double(1.0), 2)) == b"$1\r\n1\r\n"
    assert b"".join(encode(Double(float("inf")), 3)) == b",inf\r\n"


def test_resp3_types_fall_back_to_resp2_shapes() -> None:
    assert b"".join(encode(None, 3)) == b"_\r\n"
    assert b"".join(encode(None, 2)) == b"$-1\r\n"
    assert b"".join(encode({"a": 1}, 3)) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert b"".join(encode({"a": 1}, 2)) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert b"".join(encode(True, 3)) == b"#t\r\n"
    assert b"".join(encode(Verbatim(b"x:1"), 3)) == b"=7\r\ntxt:x:1\r\n"
    assert b"".join(encode(Verbatim(b"x:1"), 2)) == b"$3\r\nx:1\r\n"


def test_large_bulk_strings_are_not_copied() -> None:
    blob = b"\x00" * (1 << 20)
    chunks = encode(blob)
    assert any(chunk is blob for chunk in chunks)
    assert any(chunk is blob for chunk in encode_command([b"SET", b"k", blob]))


def test_parse_reply_returns_error_replies_as_values() -> None:
    error = parse_reply(b"-WRONGTYPE no\r\n")
    assert isinstance(error, ErrorReply) and error.message == "WRONGTYPE no"
