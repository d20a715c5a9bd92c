"""RedisGears 1.2's serialization of an exported requirement, laid out by hand here (as its C writes it)."""

from __future__ import annotations

import pytest

from gearcam.runtime.gears.requirement_format import Exported, RequirementFormatError, deserialize, serialize


def _long(value: int) -> bytes:
    return value.to_bytes(8, "little", signed=True)


def _text(value: str) -> bytes:
    return _long(len(value) + 1) + value.encode() + b"\0"


def test_a_version_2_export_is_laid_out_as_redisgears_writes_it() -> None:
    exported = Exported("redis==3.5.3", "linux-x86_64", True, [("redis-3.5.3-py2.py3-none-any.whl", b"PK\x03\x04")])
    expected = (_long(2) + _text("redis==3.5.3") + _text("linux-x86_64") + _long(1) + _long(1)
                + _text("redis-3.5.3-py2.py3-none-any.whl") + _long(4) + b"PK\x03\x04")  # fmt: skip
    assert serialize(exported) == expected
    assert deserialize(expected) == exported


def test_earlier_versions_lack_the_dictionary_flag_and_the_os() -> None:
    wheel = _text("a-1-py3-none-any.whl") + _long(2) + b"ab"
    assert deserialize(_long(1) + _text("a") + _text("linux-bionic-x64") + _long(1) + wheel) == Exported(
        "a", "linux-bionic-x64", True, [("a-1-py3-none-any.whl", b"ab")]
    )
    assert deserialize(_long(0) + _text("a") + _long(1) + wheel) == Exported(
        "a", "", True, [("a-1-py3-none-any.whl", b"ab")]
    )


@pytest.mark.parametrize(
    ("blob", "error"),
    [(b"", "Bad serialization format on reading requirement version"),
     (_long(3), "Requirement version is not compatible, upgrade to newer RedisGears."),
     (_long(2) + _long(99) + b"ab", "Bad serialization format on reading requirement name"),
     (_long(2) + _text("a") + _text("os") + _long(1), "Bad serialization format on reading requirement wheels amount"),
     (_long(2) + _text("a") + _text("os") + _long(1) + _long(1),
      "Bad serialization format on reading wheel file name"),
     (_long(2) + _text("a") + _text("os") + _long(1) + _long(1) + _text("a.whl") + _long(10) + b"short",
      "Bad serialization format on reading wheel file data"),
     (_long(2) + _text("a") + _text("os") + _long(1) + _long(1) + _text("a.whl") + _long(-1),
      "Bad serialization format on reading wheel file data")],
)  # fmt: skip
def test_data_that_ends_early_is_refused_in_redisgears_words(blob: bytes, error: str) -> None:
    with pytest.raises(RequirementFormatError, match=error.replace(".", r"\.")):
        deserialize(blob)
