"""RedisGears 1.2 behaviours its own test suite checks, as tests of our own (docs/gears.md)."""

from __future__ import annotations

import redis

from tests.runtime.gears_helpers import pyexecute, rg

__all__ = ["rg"]


def test_sort_returns_records_in_redisgears_order(rg: redis.Redis) -> None:
    for key in ("x", "z", "y"):
        rg.set(key, "1")
    assert pyexecute(rg, "GB('KeysOnlyReader').sort().run()") == [[b"x", b"y", b"z"], []]
    assert pyexecute(rg, "GB('KeysOnlyReader').sort(reverse=False).run()") == [[b"z", b"y", b"x"], []]


def test_flatmap_expands_lists_from_their_end_and_keeps_other_values_whole(rg: redis.Redis) -> None:
    # RedisGears turns a returned list into a list record and pops its elements from the end;
    # a tuple (or any other value) stays one record.
    assert pyexecute(rg, "GB('ShardsIDReader').flatmap(lambda x: [1, 2, 3]).run()") == [[b"3", b"2", b"1"], []]
    assert pyexecute(rg, "GB('ShardsIDReader').flatmap(lambda x: (1, 2)).run()") == [[b"(1, 2)"], []]
