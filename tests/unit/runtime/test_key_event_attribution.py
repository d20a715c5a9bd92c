"""Which queued command of a transaction each key event came from (gears/service.py attribute_key_events), and
which keys a command names (gears/records.py command_keys)."""

from __future__ import annotations

from gearcam.runtime.gears.records import command_keys
from gearcam.runtime.gears.service import attribute_key_events


def test_events_go_to_the_commands_that_name_their_keys_in_order() -> None:
    events = [("keymiss", b"a"), ("keymiss", b"b"), ("set", b"c"), ("keymiss", b"a")]
    keys = [{b"a"}, {b"b", b"x"}, {b"a"}]
    assert attribute_key_events(events, keys) == [[("keymiss", b"a")], [("keymiss", b"b")], [("keymiss", b"a")]]


def test_a_command_keeps_every_event_of_its_keys_and_none_goes_backwards() -> None:
    events = [("keymiss", b"a"), ("keymiss", b"b"), ("keymiss", b"z"), ("keymiss", b"a")]
    keys = [{b"a", b"b"}, {b"b"}]
    # MGET a b missed both; then `z` is no queued command's; then `a` again can only be the first command's.
    assert attribute_key_events(events, keys) == [[("keymiss", b"a"), ("keymiss", b"b"), ("keymiss", b"a")], []]


def test_no_commands_or_no_events() -> None:
    assert attribute_key_events([("del", b"a")], []) == []
    assert attribute_key_events([], [{b"a"}]) == [[]]


def test_a_commands_keys_come_from_its_command_table_entry() -> None:
    assert command_keys((1, 1, 1), [b"k", b"v"]) == [b"k"]
    assert command_keys((1, -1, 2), ["a", 1, "b", 2]) == [b"a", b"b"]  # MSET
    assert command_keys((1, -2, 1), [b"a", b"b", 0]) == [b"a", b"b"]  # BLPOP a b 0
    assert command_keys((2, 2, 1), [b"ch", b"k"]) == [b"k"]
    assert command_keys((0, 0, 0), [b"return 1", 1, b"k"]) is None  # EVAL: the keys move with the arguments
