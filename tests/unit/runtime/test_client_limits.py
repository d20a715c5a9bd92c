"""The limits on what clients send, as CONFIG SET takes them (own_settings) and the budget applies them."""

from __future__ import annotations

import pytest

from gearcam.runtime.budget import ClientBudget
from gearcam.runtime.own_settings import parse_set
from gearcam.runtime.resp import ErrorReply


def test_a_budget_of_zero_is_no_limit_as_redis_maxmemory_clients_zero() -> None:
    unlimited = ClientBudget(0)
    assert unlimited.update("a", 1 << 40) is None
    bounded = ClientBudget(100)
    assert bounded.update("a", 60) is None
    assert bounded.update("b", 50) == "a"  # the client holding the most goes
    bounded.limit = 0  # a CONFIG SET maxmemory-clients 0
    assert bounded.update("b", 70) is None


@pytest.mark.parametrize(
    ("name", "value", "parsed"),
    [("client-query-buffer-limit", b"1mb", 1 << 20), ("client-query-buffer-limit", b"2GB", 2 << 30),
     ("client-query-buffer-limit", b"1048576", 1 << 20), ("maxmemory-clients", b"0", 0),
     ("maxmemory-clients", b"1k", 1000), ("maxmemory-clients", b"64kb", 64 << 10), ("maxmemory-clients", b"", 0)],
)  # fmt: skip
def test_memory_values_are_read_as_redis_reads_them(name: str, value: bytes, parsed: int) -> None:
    assert parse_set([b"CONFIG", b"SET", name.encode(), value]) == {name: parsed}


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [("client-query-buffer-limit", b"1048575", "argument must be between 1048576 and 9223372036854775807 inclusive"),
     ("client-query-buffer-limit", b"", "argument must be between 1048576 and 9223372036854775807 inclusive"),
     ("client-query-buffer-limit", b"1.5mb", "argument must be a memory value"),
     ("maxmemory-clients", b"-1", "argument must be a memory or percent value"),
     ("maxmemory-clients", b"99999999999999999999", "argument must be between 0 and 9223372036854775807 inclusive")],
)  # fmt: skip
def test_memory_values_redis_refuses_are_refused_in_its_words(name: str, value: bytes, why: str) -> None:
    with pytest.raises(ErrorReply) as refused:
        parse_set([b"CONFIG", b"SET", name.encode(), value])
    assert refused.value.message == f"ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
