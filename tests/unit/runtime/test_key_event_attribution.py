"""Which queued command of a transaction each key event came from (gears/service.py attribute_key_events)."""

from __future__ import annotations

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
