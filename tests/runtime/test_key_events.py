"""The runtime's key-events subscription comes back whatever the backing Redis does to it.

Everything Gears does on a write (stream readers, KeysReader registrations, sync replies) waits
on these events, so a subscription that stopped for good would stop the pipeline without a word.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import uvloop

from gearcam.runtime.keyevents import KeyEvents
from gearcam.runtime.relay import Address, BackendLink
from tests.conftest import free_port
from tests.runtime.conftest import Backing, proxied_events, seen_soon


def test_a_peer_that_drops_every_connection_at_once_is_retried_not_given_up() -> None:
    # What a Redis that dies just after accepting looks like: the subscription's first command fails.
    accepted = 0

    async def scenario() -> bool:
        nonlocal accepted

        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            writer.transport.abort()

        port = free_port()
        server = await asyncio.start_server(drop, "127.0.0.1", port)
        events = KeyEvents(Address(host="127.0.0.1", port=port), 2.0)
        events.start()
        try:
            for _ in range(400):
                if accepted >= 4:
                    break
                await asyncio.sleep(0.01)
            assert events._task is not None
            return not events._task.done()
        finally:
            server.close()  # first: a server left open keeps the loop from closing
            await events.stop()

    assert uvloop.run(scenario()), "the key events task ended instead of reconnecting"
    assert accepted >= 4  # it came back each time (0.1, 0.2, 0.4 s apart)


def test_events_come_back_after_the_backing_redis_is_killed_and_restarted(tmp_path: Path) -> None:
    backing = Backing(free_port(), tmp_path)
    backing.start()
    seen: list[tuple[str, bytes]] = []

    async def scenario() -> None:
        address = Address(host="127.0.0.1", port=backing.port)
        events = KeyEvents(address, 2.0)
        events.add_listener(lambda event, db, key: seen.append((event, key)))
        events.start()
        try:
            for round_ in range(3):
                await asyncio.wait_for(events.ready.wait(), 30)
                writer = await BackendLink.open(address, 2.0)
                await writer.call(b"SET", f"k{round_}".encode(), b"v")
                await writer.close()
                for _ in range(500):
                    if ("set", f"k{round_}".encode()) in seen:
                        break
                    await asyncio.sleep(0.01)
                assert ("set", f"k{round_}".encode()) in seen, f"no event for round {round_}"
                assert backing.proc is not None
                backing.proc.kill()
                await asyncio.to_thread(backing.proc.wait, 20)
                for _ in range(500):
                    if not events.ready.is_set():
                        break
                    await asyncio.sleep(0.01)
                backing.proc = None
                await asyncio.to_thread(backing.start)
        finally:
            await events.stop()

    try:
        uvloop.run(scenario())
    finally:
        backing.stop()


def test_a_redis_that_drops_the_subscription_as_it_starts_is_not_hammered(tmp_path: Path) -> None:
    # CLIENT KILL TYPE pubsub every 10 ms: each subscription dies as soon as it is made. Reconnecting at
    # once each time would loop on the backing Redis as fast as it can accept; a short-lived subscription
    # backs off as a failure does, and the events come back once Redis lets them stay.
    backing = Backing(free_port(), tmp_path)
    backing.start()
    subscriptions = 0

    def counted() -> None:
        nonlocal subscriptions
        subscriptions += 1

    async def scenario() -> None:
        address = Address(host="127.0.0.1", port=backing.port)
        events = KeyEvents(address, 2.0)
        events.on_ready.append(counted)
        events.start()
        killer = await BackendLink.open(address, 2.0)
        try:
            await asyncio.wait_for(events.ready.wait(), 10)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2.0
            while loop.time() < deadline:
                await killer.call(b"CLIENT", b"KILL", b"TYPE", b"pubsub")
                await asyncio.sleep(0.01)
            during = subscriptions
            # 0.1 + 0.2 + 0.4 + 0.8 s of backoff fit in 2 s: a handful, not one per kill (about 150)
            assert during <= 12, f"{during} subscriptions in 2 s of kills: it reconnects in a loop"
            await asyncio.wait_for(events.ready.wait(), 10)  # and it comes back once the kills stop
            assert subscriptions > during
        finally:
            await killer.close()
            await events.stop()

    try:
        uvloop.run(scenario())
    finally:
        backing.stop()


def test_ready_and_streams_current_wait_for_redis_to_confirm_the_subscription(tmp_path: Path) -> None:
    # The subscription's commands reach Redis 0.3 s late; the writes go straight to it. `ready` (which the
    # Gears streams' catch-up scan follows) and streams_current (which a StreamReader registration's reply
    # follows) must mean "a write made now sends its event", not "the subscribe was written".
    backing = Backing(free_port(), tmp_path)
    backing.start()
    seen: list[tuple[str, bytes]] = []
    looked: list[int] = []

    async def scenario() -> None:
        async with proxied_events(backing.port, delay=0.3) as (events, direct):
            events.add_listener(lambda event, db, key: seen.append((event, key)))
            events.on_streams.append(lambda: looked.append(1))
            events.start()
            await asyncio.wait_for(events.ready.wait(), 10)
            await direct.call(b"SET", b"k", b"v")
            assert await seen_soon(seen, ("set", b"k")), "a write made once ready sent no event"
            # Asked for, dropped and asked for again: only the last confirmation is the subscription in force.
            for wanted in (True, False, True):
                events.want_stream_events(wanted)
            await events.streams_current(10.0)
            await direct.call(b"XADD", b"s", b"*", b"f", b"v")
            assert await seen_soon(seen, ("xadd", b"s")), "an XADD made once streams_current returned was missed"
            assert looked == [1]  # the streams are looked at again once, after the last confirmation

    try:
        uvloop.run(scenario())
    finally:
        backing.stop()


def test_a_user_refused_the_channels_is_told_what_to_grant(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Redis 7's new users get no pub/sub channels (acl-pubsub-default resetchannels): the subscription is
    # refused with NOPERM. Never `ready` then (no event would come), and the log names the grant that fixes it.
    backing = Backing(free_port(), tmp_path)
    backing.start()
    seen: list[tuple[str, bytes]] = []

    async def scenario() -> None:
        admin = await BackendLink.open(Address(host="127.0.0.1", port=backing.port), 2.0)
        await admin.call(b"ACL", b"SETUSER", b"rt", b"on", b">pw", b"~*", b"+@all", b"resetchannels")
        events = KeyEvents(Address(host="127.0.0.1", port=backing.port, username="rt", password="pw"), 2.0)
        events.add_listener(lambda event, db, key: seen.append((event, key)))
        events.start()
        try:
            for _ in range(100):
                if "allchannels" in caplog.text:
                    break
                await asyncio.sleep(0.02)
            assert not events.ready.is_set()
            await admin.call(b"ACL", b"SETUSER", b"rt", b"allchannels")  # the fix the log names
            await asyncio.wait_for(events.ready.wait(), 10)
            await admin.call(b"SET", b"k", b"v")
            assert await seen_soon(seen, ("set", b"k"))
        finally:
            await admin.close()
            await events.stop()

    try:
        with caplog.at_level(logging.WARNING, logger="gearcam.runtime.keyevents"):
            uvloop.run(scenario())
    finally:
        backing.stop()
    assert "ACL SETUSER <user> allchannels" in caplog.text and "NOPERM" in caplog.text


def test_a_stop_as_redis_shuts_down_ends_the_key_events(tmp_path: Path) -> None:
    """The runtime stops when its Redis does (SHUTDOWN): the stop's cancel comes as the subscription and
    the flags check's link see the end. A cancel lost there (a bare `except CancelledError` around closing
    a link, and 3.11's asyncio.wait_for) left the task reconnecting for ever and the stop waiting on it:
    before the fix, 8 to 11 of 40 such stops hung."""

    async def one_stop(address: Address, kill: Callable[[], None], delay: float) -> bool:
        events = KeyEvents(address, 2.0, flags_check_s=0.01)  # a flags check link open most of the time
        events.start()
        await asyncio.wait_for(events.ready.wait(), 10)
        await asyncio.sleep(0.05)
        link = events._link
        assert link is not None
        kill()
        await link.closed.wait()
        await asyncio.sleep(delay)
        stopping = asyncio.ensure_future(events.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        if not done:
            assert events._task is not None
            events._task.cancel()  # (a stuck task would be cancelled again and again, not to hold the test)
        return bool(done)

    stopped = []
    for round_ in range(30):
        backing = Backing(free_port(), tmp_path)
        backing.start()
        assert backing.proc is not None
        try:
            address = Address(host="127.0.0.1", port=backing.port)
            stopped.append(uvloop.run(one_stop(address, backing.proc.kill, (round_ % 5) * 0.0002)))
        finally:
            backing.stop()
    assert all(stopped), f"{stopped.count(False)} of {len(stopped)} stops hung"
