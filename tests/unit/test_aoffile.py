"""An append-only file's commands read as Redis loads them (gearcam/aoffile.py): real RESP framing,
annotations skipped, a cut last command left out, damage refused with a FormatError naming the file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearcam.aoffile import commands
from gearcam.rdbformat import FormatError
from gearcam.runtime.resp import encode_command
from tests.unit.damage import FUZZ, damaged


def _framed(*command: bytes) -> bytes:
    return b"".join(encode_command(list(command)))


def _read(data: bytes) -> list[list[bytes]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "appendonly.aof"
        path.write_bytes(data)
        return list(commands(path))


_COMMANDS = st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), max_size=6)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(_COMMANDS, st.lists(st.booleans(), max_size=7))
def test_commands_come_back_as_written_with_annotations_between_them(
    written: list[list[bytes]], annotated: list[bool]
) -> None:
    data = b""
    for i, command in enumerate(written):
        if i < len(annotated) and annotated[i]:
            data += b"#TS:%d\r\n" % (1796547222 + i)
        data += _framed(*command)
    assert _read(data) == written


def test_a_last_command_cut_anywhere_is_left_out() -> None:
    whole = _framed(b"SET", b"a", b"1") + _framed(b"SET", b"b", b"22")
    first = len(_framed(b"SET", b"a", b"1"))
    for cut in range(first, len(whole)):
        assert _read(whole[:cut]) == [[b"SET", b"a", b"1"]], cut


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"?garbage\r\n", "is not a list of commands after command 1"),
        (b"*2\r\n$3\r\nSET\r\n:5\r\n", "entry 2 is not a command (argument 2 is b':5')"),
        (b"*1\r\n$2\r\nabc\r\n", "entry 2 is not a command (argument 1 is longer than its length)"),
        (b"*0\r\n", "is not a list of commands after command 1"),
    ],
)
def test_what_is_not_a_command_is_refused_with_where(data: bytes, words: str) -> None:
    with pytest.raises(FormatError) as refused:
        _read(_framed(b"SET", b"a", b"1") + data)
    assert words in str(refused.value) and "appendonly.aof" in str(refused.value)


_BASE = b"".join(_framed(*c) for c in ([b"SET", b"k", b"v"], [b"RPUSH", b"l", b"x", b"y"], [b"DEL", b"k"]))


@FUZZ
@given(damaged(_BASE))
def test_any_damage_is_read_or_refused_with_a_format_error(data: bytes) -> None:
    try:
        read = _read(data)
    except FormatError as exc:
        assert "appendonly.aof" in str(exc)
    else:
        assert all(command and all(isinstance(arg, bytes) for arg in command) for command in read)
