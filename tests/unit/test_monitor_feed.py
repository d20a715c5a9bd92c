"""MONITOR lines read back, and the feed's choice of lines: the pieces tests/runtime/test_monitor.py runs whole.

The feed leaves out a line when its mark matches the next one recorded for its client, so reading a line back must
give the mark the command had when it was sent, whatever bytes its arguments hold.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearcam.runtime.monitor_feed import MonitorFeed
from gearcam.runtime.own_traffic import OWN_TRAFFIC, mark
from gearcam.runtime.resp import monitor_line, read_monitor_line

_args = st.lists(st.binary(max_size=80), min_size=1, max_size=6)


@given(_args, st.integers(0, 15), st.sampled_from(["127.0.0.1:6379", "[::1]:51000", "?:0", "lua", "unix:/tmp/s"]))
def test_a_line_read_back_gives_the_commands_mark_and_arguments(args: list[bytes], db: int, client: str) -> None:
    line = monitor_line(1_700_000_000.25, db, client, args)
    read = read_monitor_line(line)
    assert read is not None and read.db == db and read.client == client
    assert line[read.client_at[0] : read.client_at[1]] == client.encode()
    assert read.args == [*args[:2], *(a[:32] for a in args[2:3])]
    assert mark(read.args) == mark(args)


@given(st.binary(max_size=200))
def test_anything_else_is_no_line_and_never_an_error(data: bytes) -> None:
    read = read_monitor_line(b"+" + data)
    assert read is None or isinstance(read.args, list)


def test_a_mark_reads_arguments_sent_in_parts_and_numbers_as_sent() -> None:
    assert mark([b"set", (b"ke", memoryview(b"y:1")), 42]) == (b"SET", b"key:1", b"42")


def test_a_login_is_marked_as_redis_shows_it_with_its_secrets_redacted() -> None:
    assert mark([b"AUTH", b"gearcam", b"secret"]) == mark([b"AUTH", b"(redacted)", b"(redacted)"])


def _feed() -> MonitorFeed:
    """A monitor's feed where no link's address stands for another client's (as over a unix socket)."""
    return MonitorFeed(lambda address: address)


@pytest.fixture()
def watching() -> Iterator[None]:
    OWN_TRAFFIC.watch(True)
    yield
    OWN_TRAFFIC.watch(False)


def _line(when: float, client: str, *args: bytes) -> bytes:
    return monitor_line(when, 0, client, args)


def test_the_feed_leaves_out_the_runtimes_commands_and_their_scripts_calls_only(watching: None) -> None:
    link = "127.0.0.1:40001"
    OWN_TRAFFIC.sent(link, [b"CONFIG", b"GET", b"x"])  # never shown by Redis: its mark stays, matching no line
    OWN_TRAFFIC.sent(link, [b"EVALSHA", b"0" * 40, 2, b"k", b"tmp"])
    feed = _feed()
    shown = [
        feed.line(frame)
        for frame in (
            _line(1.0, link, b"GET", b"k"),  # the client's
            _line(2.0, link, b"EVALSHA", b"0" * 40, b"2", b"k", b"tmp"),  # the runtime's
            _line(2.1, "lua", b"RENAME", b"tmp", b"k"),  # its calls
            _line(3.0, link, b"EVAL", b"return 1", b"0"),  # the client's own script
            _line(3.1, "lua", b"GET", b"k"),  # and its calls
            _line(4.0, link, b"EVALSHA", b"0" * 40, b"2", b"k", b"tmp"),  # the same again, the client's this time
        )
    ]
    assert [line is not None for line in shown] == [True, False, False, True, True, True]


def test_the_feed_shows_the_gears_links_commands_under_rm_calls_client(watching: None) -> None:
    OWN_TRAFFIC.module_links.add("127.0.0.1:40002")
    try:
        line = _feed().line(_line(5.0, "127.0.0.1:40002", b"XACK", b"s", b"g", b"1-0"))
        assert line == _line(5.0, "?:0", b"XACK", b"s", b"g", b"1-0")
        # A worker's link tells its login before sending it (gears.link): those lines are the runtime's own.
        OWN_TRAFFIC.expect("127.0.0.1:40002", [mark([b"SELECT", 2]), mark([b"CLIENT", b"SETNAME", b"gearcam-gears"])])
        assert _feed().line(_line(5.5, "127.0.0.1:40002", b"SELECT", b"2")) is None
        assert _feed().line(_line(5.6, "127.0.0.1:40002", b"CLIENT", b"SETNAME", b"gearcam-gears")) is None
        named = _line(5.7, "127.0.0.1:40003", b"CLIENT", b"SETNAME", b"gearcam-gears")  # a client's own: shown
        assert _feed().line(named) == named
    finally:
        OWN_TRAFFIC.module_links.discard("127.0.0.1:40002")


def test_a_gears_link_over_a_unix_socket_is_not_told_from_the_other_clients_there(watching: None) -> None:
    OWN_TRAFFIC.module_link("unix:/tmp/redis.sock", True)  # every client there has this address
    assert "unix:/tmp/redis.sock" not in OWN_TRAFFIC.module_links
    line = _line(6.0, "unix:/tmp/redis.sock", b"GET", b"k")
    assert _feed().line(line) == line


def test_links_sharing_an_address_have_their_own_commands_left_out_in_any_order(watching: None) -> None:
    shared = "unix:/tmp/redis.sock"
    OWN_TRAFFIC.sent(shared, [b"SET", b"gearcam:tmp:1", b"\x00gcmT"])  # one link's
    OWN_TRAFFIC.sent(shared, [b"PUBLISH", b"__gearcam__:fence", b"7"])  # another's, run by Redis first
    feed = _feed()
    assert feed.line(_line(7.0, shared, b"PUBLISH", b"__gearcam__:fence", b"7")) is None
    assert feed.line(_line(7.1, shared, b"SET", b"gearcam:tmp:1", b"\x00gcmT")) is None


def test_stopping_forgets_every_mark() -> None:
    OWN_TRAFFIC.watch(True)
    OWN_TRAFFIC.sent("127.0.0.1:40004", [b"PUBLISH", b"__gearcam__:fence", b"1"])
    OWN_TRAFFIC.watch(False)
    assert not OWN_TRAFFIC.seen("127.0.0.1:40004", mark([b"PUBLISH", b"__gearcam__:fence", b"1"]))


def test_a_workers_login_told_while_no_client_watches_leaves_no_mark() -> None:
    # Marks only while a client watches: one left from before would hide a client's identical command later.
    OWN_TRAFFIC.expect("127.0.0.1:40004", [mark([b"SELECT", 2])])
    OWN_TRAFFIC.watch(True)
    try:
        line = _line(7.0, "127.0.0.1:40004", b"SELECT", b"2")
        assert _feed().line(line) == line
    finally:
        OWN_TRAFFIC.watch(False)


def test_a_clients_link_is_shown_as_the_client_itself(watching: None) -> None:
    # Over TCP each client's link has an address of its own, which the feed shows as the client's (CLIENT LIST's).
    clients = {b"127.0.0.1:40005": b"10.0.0.7:51000"}
    feed = MonitorFeed(lambda address: clients.get(address, address))
    assert feed.line(_line(8.0, "127.0.0.1:40005", b"GET", b"k")) == _line(8.0, "10.0.0.7:51000", b"GET", b"k")
    other = _line(8.5, "127.0.0.1:40006", b"GET", b"k")  # not a runtime client's link: as Redis wrote it
    assert feed.line(other) == other
