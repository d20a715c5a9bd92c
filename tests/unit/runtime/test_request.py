"""gearcam.runtime.request: commands out of a byte stream, with redis-server 7.0's limits and error texts.

The expected texts were read from redis-server 7.0.15 on loopback (tests/runtime/test_protocol_limits.py
checks the runtime against a live redis-server for the same frames).
"""

from __future__ import annotations

import pytest

from gearcam.runtime import request
from gearcam.runtime.request import (
    INLINE_MAX_SIZE,
    PROTO_MAX_BULK_LEN,
    RequestParser,
    Unfinished,
    complete_commands,
    continue_command,
    memory_bytes,
    split_inline,
    unfinished_command,
)
from gearcam.runtime.resp import ProtocolError, encode_command


def _frame(*args: bytes) -> bytes:
    return b"".join(encode_command(list(args)))


def _parse(data: bytes, authenticated: bool = True, limit: int = 1 << 30) -> list[list[bytes]]:
    parser = RequestParser(limit)
    parser.authenticated = authenticated
    return parser.commands(data)


def _error(data: bytes, authenticated: bool = True) -> str:
    with pytest.raises(ProtocolError) as info:
        _parse(data, authenticated)
    return str(info.value)


def test_a_pipeline_fed_byte_by_byte_gives_every_command() -> None:
    stream = _frame(b"SET", b"a", b"1") + _frame(b"GET", b"a") + b"PING\r\n" + _frame(b"ECHO", b"")
    parser = RequestParser(1 << 20)
    commands = []
    for i in range(len(stream)):
        commands += parser.commands(stream[i : i + 1])
    assert commands == [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"PING"], [b"ECHO", b""]]
    assert parser.buffered == 0


def test_a_declared_count_allocates_nothing() -> None:
    parser = RequestParser(1 << 30)
    assert parser.commands(b"*2147483647\r\n") == []
    assert parser.buffered == 0


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"*2147483648\r\n", "invalid multibulk length"),
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"*1\r\n$2147483648\r\n", "invalid bulk length"),
        (b"*1\r\n$536870913\r\n", "invalid bulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$abc\r\n", "invalid bulk length"),
        (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
        (b"*" + b"1" * 70000, "too big mbulk count string"),
        (b"*1\r\n$" + b"1" * 70000, "too big bulk count string"),
        (b"P" * 70000, "too big inline request"),
        (b'ECHO "abc\r\n', "unbalanced quotes in request"),
    ],
)
def test_frames_redis_refuses_get_its_error(frame: bytes, error: str) -> None:
    assert _error(frame) == error


def test_a_long_line_is_buffered_up_to_64_kb() -> None:
    assert _parse(b"*" + b"1" * (INLINE_MAX_SIZE - 1)) == []
    assert _parse(b"x" * INLINE_MAX_SIZE) == []


@pytest.mark.parametrize("frame", [b"*0\r\n", b"*-5\r\n", b"\r\n", b"   \r\n"])
def test_empty_commands_are_skipped_as_redis_does(frame: bytes) -> None:
    assert _parse(frame + b"PING\r\n") == [[b"PING"]]


def test_an_unauthenticated_client_gets_redis_smaller_limits() -> None:
    assert _error(b"*11\r\n", authenticated=False) == "unauthenticated multibulk length"
    assert _error(b"*1\r\n$16385\r\n", authenticated=False) == "unauthenticated bulk length"
    assert _parse(b"*10\r\n", authenticated=False) == []
    assert _parse(b"*1\r\n$16384\r\n", authenticated=False) == []


def test_an_unauthenticated_client_gets_one_command_at_a_time_so_auth_lifts_the_limits() -> None:
    parser = RequestParser(1 << 30)
    parser.authenticated = False
    parser.feed(_frame(b"AUTH", b"pw") + b"*11\r\n")
    assert parser.gets() == [b"AUTH", b"pw"]
    parser.authenticated = True  # what the connection does once AUTH succeeded
    assert parser.gets() is None


@pytest.mark.parametrize("reset", [_frame(b"RESET"), _frame(b"reset"), b"RESET\r\n"])
def test_parsing_stops_after_a_reset_so_the_logout_applies_to_what_follows(reset: bytes) -> None:
    parser = RequestParser(1 << 30)
    parser.feed(_frame(b"PING") + reset + b"*11\r\n")
    assert parser.gets() == [b"PING"]
    assert [arg.upper() for arg in parser.gets() or []] == [b"RESET"]
    parser.authenticated = False  # what the connection does once RESET answered on a server with a password
    with pytest.raises(ProtocolError, match="unauthenticated multibulk length"):
        parser.gets()


def test_commands_before_broken_framing_are_returned_first() -> None:
    parser = RequestParser(1 << 30)
    parser.feed(_frame(b"SET", b"a", b"1") + b"*x\r\n")
    assert parser.gets() == [b"SET", b"a", b"1"]
    with pytest.raises(ProtocolError, match="invalid multibulk length"):
        parser.gets()


def test_a_request_over_the_query_buffer_limit_is_refused_naming_the_setting() -> None:
    parser = RequestParser(1000)
    with pytest.raises(ProtocolError, match="runtime.max_request_size"):
        parser.feed(b"*2\r\n$3\r\nSET\r\n$5000\r\n" + b"x" * 2000)
    assert parser.buffered == 0


def test_many_small_arguments_count_what_they_take_in_memory() -> None:
    parser = RequestParser(1 << 20)
    with pytest.raises(ProtocolError, match="query buffer limit"):
        for _ in range(100):
            parser.feed(b"$0\r\n\r\n" * 10000 if parser.buffered or _ else b"*1000000\r\n")
            while parser.gets() is not None or parser.has_more:
                pass


def test_a_huge_command_is_parsed_in_slices() -> None:
    parser = RequestParser(1 << 30)
    parser.feed(b"*100000\r\n" + b"$1\r\nx\r\n" * 100000)
    slices = 0
    while (command := parser.gets()) is None:
        assert parser.has_more
        slices += 1
    assert slices > 1 and len(command) == 100000


def test_a_large_bulk_string_arriving_in_pieces_is_assembled_once() -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB
    frame = _frame(b"SET", b"k", blob) + _frame(b"PING")
    parser = RequestParser(1 << 30)
    commands = []
    for i in range(0, len(frame), 65536):
        commands += parser.commands(frame[i : i + 65536])
        assert parser.buffered <= i + 65536 + 200
    assert commands == [[b"SET", b"k", blob], [b"PING"]]
    assert parser.buffered == 0


@pytest.mark.parametrize("tail", [-3, -2, -1, 0, 1, 2, 5])
def test_a_large_bulk_string_ends_wherever_a_chunk_ends(tail: int) -> None:
    """Chunks that end inside the payload, inside its CRLF or in the next command all give the same commands."""
    blob = bytes(range(256)) * 1200  # 300 KB: collected apart from the buffer
    frame = _frame(b"AI.TENSORSET", b"t", b"UINT8", b"307200", b"BLOB", blob) + _frame(b"GET", b"t") + b"PING\r\n"
    cut = frame.index(blob) + len(blob) + tail  # where the second chunk ends, near the payload's end
    parser = RequestParser(1 << 30)
    commands = parser.commands(frame[:100_000]) + parser.commands(frame[100_000:cut])
    commands += parser.commands(frame[cut:])
    assert commands == [[b"AI.TENSORSET", b"t", b"UINT8", b"307200", b"BLOB", blob], [b"GET", b"t"], [b"PING"]]
    assert all(isinstance(arg, bytes) for arg in commands[0])
    assert {commands[0][5]: "hashed as bytes"}[blob] == "hashed as bytes"  # filled before its hash was taken
    assert parser.buffered == 0


def test_a_large_bulk_string_is_whole_bytes_on_an_interpreter_without_writable_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(request, "_from_string_and_size", None)  # the portable way: a bytearray, then bytes
    blob = bytes(range(256)) * 400
    frame = _frame(b"SET", b"k", blob) + _frame(b"PING")
    parser = RequestParser(1 << 30)
    commands = parser.commands(frame[:1000]) + parser.commands(frame[1000:])
    assert commands == [[b"SET", b"k", blob], [b"PING"]]
    assert type(commands[0][2]) is bytes


def _receive_in_place(parser: RequestParser, data: bytes, read: int) -> tuple[list[list[bytes]], int]:
    """Serve `data` to `parser` as a server's reader does: in place while it offers a view, else fed in reads."""
    commands: list[list[bytes]] = []
    placed = pos = 0
    while pos < len(data):
        view = parser.receive_into()
        if view is not None:
            n = min(len(view), read, len(data) - pos)
            view[:n] = data[pos : pos + n]
            parser.received(n)
            placed += n
        else:
            n = min(read, len(data) - pos)
            commands += parser.commands(data[pos : pos + n])
        pos += n
    return commands, placed


@pytest.mark.parametrize("read", [1000, 65536, 1 << 20])
def test_a_large_bulk_string_received_in_place_gives_the_same_commands(read: int) -> None:
    """Once its header is parsed, the rest of a large payload goes straight into the argument; what follows it
    (its CRLF, the next command) is fed as usual."""
    blob = bytes(range(256)) * 4800  # 1.2 MB
    frame = _frame(b"AI.TENSORSET", b"t", b"UINT8", b"1228800", b"BLOB", blob) + _frame(b"GET", b"t")
    parser = RequestParser(1 << 30)
    commands, placed = _receive_in_place(parser, frame * 2, read)
    expected = [[b"AI.TENSORSET", b"t", b"UINT8", b"1228800", b"BLOB", blob], [b"GET", b"t"]]
    assert commands == expected * 2
    assert type(commands[0][5]) is bytes and commands[0][5] is not commands[2][5]
    # All but the first read of each payload, which came with its header.
    assert placed >= 2 * (len(blob) - read)
    assert parser.buffered == 0 and parser.receive_into() is None


def test_nothing_is_received_in_place_that_would_pass_the_query_buffer_limit() -> None:
    """The rest of a payload over the limit is fed, so the limit refuses it as the bytes arrive, as before."""
    blob = b"x" * 200_000
    frame = _frame(b"SET", b"k", blob)
    parser = RequestParser(150_000)
    parser.commands(frame[:50_000])
    assert parser.receive_into() is None
    with pytest.raises(ProtocolError, match="over the runtime's query buffer limit of 150000 bytes"):
        for i in range(50_000, len(frame), 10_000):
            parser.commands(frame[i : i + 10_000])
    roomy = RequestParser(250_000)
    roomy.commands(frame[:50_000])
    view = roomy.receive_into()
    assert view is not None and len(view) == len(blob) - (50_000 - frame.index(blob))


@pytest.mark.parametrize("chunk", [1000, 32 * 1024 + 7, 65536, 262144, 1 << 20])
def test_pipelined_camera_frames_come_out_whole_however_the_reads_cut_them(chunk: int) -> None:
    """64 KB XADDs pipelined (a camera's burst): each frame is collected apart, and what follows it in the
    read is parsed where it lies; bulks just under and over the 32 KB threshold sit between them."""
    sizes = [65536, 32 * 1024 - 1, 32 * 1024, 65536 + 3, 10, 100_000] * 4
    commands = [[b"XADD", b"camera:0", b"*", b"img", bytes([i]) * size] for i, size in enumerate(sizes)]
    stream = b"".join(_frame(*c) for c in commands) + _frame(b"PING")
    parser = RequestParser(1 << 30)
    got = []
    for i in range(0, len(stream), chunk):
        got += parser.commands(stream[i : i + chunk])
    assert got == [*commands, [b"PING"]]
    assert parser.buffered == 0


def test_release_drops_everything_buffered() -> None:
    parser = RequestParser(1 << 30)
    parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10000000\r\n" + b"x" * 5_000_000)
    assert parser.gets() is None and parser.buffered >= 5_000_000
    parser.release()
    assert parser.buffered == 0


@pytest.mark.parametrize(
    ("line", "args"),
    [
        (b'SET k "hello world"', [b"SET", b"k", b"hello world"]),
        (b'ECHO "a\\x41"', [b"ECHO", b"aA"]),
        (b"ECHO 'a\\'b'", [b"ECHO", b"a'b"]),
        (b'ECHO "\\n\\r\\t\\b\\a\\\\\\"\\q"', [b"ECHO", b'\n\r\t\x08\x07\\"q']),
        (b"ECHO '\\n'", [b"ECHO", b"\\n"]),
        (b'ECHO ""', [b"ECHO", b""]),
        (b"ECHO  a   b", [b"ECHO", b"a", b"b"]),
        (b'ECHO "\\xzz"', [b"ECHO", b"xzz"]),
        (b'ECHO a"b c"', [b"ECHO", b"ab c"]),
        (b"ECHO a\x0bb", [b"ECHO", b"a\x0bb"]),
        (b"ECHO a\x00b", [b"ECHO", b"a"]),
        (b"  \t", []),
    ],
)
def test_inline_commands_are_split_as_sdssplitargs(line: bytes, args: list[bytes]) -> None:
    assert split_inline(line) == args


@pytest.mark.parametrize(
    "line", [b'ECHO "abc', b"ECHO 'abc", b'ECHO "a"b', b"ECHO 'a'b", b'ECHO a"b c"d', b'ECHO "a\x00"']
)
def test_unbalanced_quotes_are_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError, match="unbalanced quotes in request"):
        split_inline(line)


def test_a_bulk_string_that_cannot_be_allocated_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(size: int) -> None:
        raise MemoryError

    monkeypatch.setattr(request, "_unfilled_bytes", no_memory)
    parser = RequestParser(1 << 30)
    parser.feed(b"*2\r\n$4\r\nECHO\r\n$100000\r\n" + b"x" * 1000)
    with pytest.raises(ProtocolError, match="cannot allocate 100000 bytes"):
        parser.gets()


# complete_commands: the plain relay's framing (connection.py) --------------------------------


def test_complete_commands_gives_each_command_end_and_name_and_leaves_half_a_command() -> None:
    first, second = _frame(b"SET", b"a", b"1"), _frame(b"xadd", b"s", b"*", b"f", b"v" * 70000)
    data = first + second + _frame(b"GET", b"a")[:-3]
    assert complete_commands(data, PROTO_MAX_BULK_LEN, 100) == [(len(first), b"SET"), (len(first + second), b"xadd")]
    assert complete_commands(data, PROTO_MAX_BULK_LEN, 1) == [(len(first), b"SET")]


def test_complete_commands_stops_at_the_first_name_not_asked_for_without_reading_its_arguments() -> None:
    first = _frame(b"SET", b"a", b"1")
    owned = _frame(b"AI.TENSORSET", b"t", b"FLOAT", b"1", b"BLOB", b"\x00" * 4)
    data = first + owned[:-5] + _frame(b"GET", b"a")  # the owned command is cut: only its name is read
    assert complete_commands(data, PROTO_MAX_BULK_LEN, 100, {b"SET", b"GET"}) == [(len(first), b"SET"),
                                                                                (-1, b"AI.TENSORSET")]  # fmt: skip
    assert complete_commands(first + first, PROTO_MAX_BULK_LEN, 100, {b"SET"}) == [(len(first), b"SET"),
                                                                                 (len(first) * 2, b"SET")]  # fmt: skip
    assert complete_commands(_frame(b"set", b"a", b"1"), PROTO_MAX_BULK_LEN, 100, {b"SET"})[0][0] > 0  # any case


@pytest.mark.parametrize("tail", [
    b"PING\r\n",  # inline
    b"*0\r\n",  # skipped by Redis: the parser's business
    b"*01\r\n$4\r\nPING\r\n",  # a leading zero
    b"*1\r\n$04\r\nPING\r\n",
    b"*1\r\n+PING\r\n",  # not a bulk string
    b"*1\r\n$4\rPING\r\n",  # CR without LF
    b"*2147483648\r\n",  # over Redis' count limit
    b"*1\r\n$20\r\n" + b"x" * 20 + b"\r\n",  # over the bulk limit given below
])  # fmt: skip
def test_complete_commands_stops_where_the_parser_has_something_to_say(tail: bytes) -> None:
    head = _frame(b"SET", b"a", b"1")
    assert complete_commands(head + tail + head, 16, 100) == [(len(head), b"SET")]


# unfinished_command / continue_command: a plain command relayed as its bytes arrive -----------------


def _xadd(frame: bytes) -> bytes:
    return b"".join(encode_command([b"XADD", b"cam", b"*", b"img", frame, b"n", b"7"]))


def test_an_unfinished_command_gives_its_name_what_is_left_and_where_to_stop() -> None:
    data = _xadd(b"f" * 1000)
    cut = data.index(b"f" * 1000) + 400  # inside the frame
    name, rest, stop = unfinished_command(data[:cut], 0, PROTO_MAX_BULK_LEN, 1 << 20)
    assert (name, stop) == (b"XADD", cut)
    assert (rest.args, rest.skip) == (2, 600 + 2)  # "n" and "7" to come; the frame's rest and its CRLF
    header = data.index(b"$1\r\nn")
    name, rest, stop = unfinished_command(data[: header + 2], 0, PROTO_MAX_BULK_LEN, 1 << 20)
    assert stop == header  # a bulk header cut by the read is left for the next one
    assert continue_command(data, header, rest, PROTO_MAX_BULK_LEN, 1 << 20) == len(data) and rest.done


@pytest.mark.parametrize(
    "data",
    [
        b"*7\r\n$4\r\nXA",  # the name has not arrived whole
        b"*7\r\n$4",
        _xadd(b"whole"),  # not unfinished: the parser reads it
        b"*7\r\n$4\r\nXADD\r\n$3\r\ncam\r\n!\r\n",  # broken after the name: the parser says so
        b"*07\r\n$4\r\nXADD\r\n",  # framing complete_commands leaves to the parser
        b"GET a\r\n",
    ],
)
def test_what_is_not_plainly_an_unfinished_command_is_left_to_the_parser(data: bytes) -> None:
    assert unfinished_command(data, 0, PROTO_MAX_BULK_LEN, 1 << 20) is None


@pytest.mark.parametrize(
    ("more", "error"),
    [
        (b"x\r\n", "expected '$', got 'x'"),
        (b"$-1\r\n", "invalid bulk length"),
        (b"$017\r\n", "invalid bulk length"),
        (b"$99\r\n", "invalid bulk length"),  # over max_bulk_len (16)
        (b"$1" + b"1" * (INLINE_MAX_SIZE + 1), "too big bulk count string"),
    ],
)
def test_broken_framing_in_an_unfinished_command_is_the_parsers_error(more: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        continue_command(more, 0, Unfinished(args=2), 16, 1 << 20)
    parser = RequestParser(1 << 20, 16)
    with pytest.raises(ProtocolError) as parsed:
        parser.commands(b"*3\r\n$3\r\nSET\r\n" + more)
    assert str(raised.value) == str(parsed.value) == error


def test_an_unfinished_command_over_the_query_buffer_limit_is_refused() -> None:
    with pytest.raises(ProtocolError, match="over the runtime's query buffer limit of 1000 bytes"):
        continue_command(b"$5000\r\n", 0, Unfinished(args=1), PROTO_MAX_BULK_LEN, 1000)


@pytest.mark.parametrize(
    ("value", "size"),
    [(b"536870912", 536870912), (b"512mb", 512 * 1024**2), (b"1GB", 1024**3), (b"3k", 3000), (b"2kb", 2048),
     (b"7b", 7), (b"4m", 4_000_000), (b"1g", 1_000_000_000)],
)  # fmt: skip
def test_memory_sizes_are_read_as_redis_reads_its_configuration(value: bytes, size: int) -> None:
    assert memory_bytes(value) == size
