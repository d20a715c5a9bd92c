"""The hub's fan-out: every browser gets the newest frame; a slow one skips frames instead of queueing them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis

from gearcam.config import WebSettings
from gearcam.web.hub import Frame, Hub, Slot, to_frame


def frame(n: int) -> Frame:
    return to_frame(f"{n}-0".encode(), {b"img": bytes([n]), b"label": b"tabby", b"class": b"281"}, "cats")


def test_a_slow_browser_gets_only_the_newest_frame_and_the_rest_count_as_skipped() -> None:
    async def scenario() -> None:
        slot = Slot()
        for n in range(1, 6):  # five frames arrive before the browser takes any
            slot.put_frame(frame(n))
        got, stats = await slot.take()
        assert got is not None and got.id == "5-0" and got.img == bytes([5])
        assert stats is None and slot.skipped == 4
        assert slot.frame is None  # nothing left behind: the buffer holds one frame at most

    asyncio.run(scenario())


def test_every_subscriber_gets_each_frame_and_a_newcomer_gets_the_latest_at_once() -> None:
    async def scenario() -> None:
        hub = Hub("redis://127.0.0.1:1", WebSettings(stream="cats"))
        first, second = hub.subscribe(), hub.subscribe()
        hub._publish(frame(7))
        for slot in (first, second):
            got, stats = await slot.take()
            assert got is not None and got.id == "7-0" and stats is not None and '"redis": "connecting"' in stats
        late = hub.subscribe()
        got, _ = await late.take()
        assert got is not None and got.id == "7-0"
        hub.unsubscribe(first)
        assert len(hub.slots) == 2

    asyncio.run(scenario())


def test_frame_messages_carry_the_hit_fields_and_the_entry_time() -> None:
    built = to_frame(b"1700000000123-4", {b"img": b"\xff\xd8", b"label": b"tiger cat", b"score": b"0.39",
                                         b"class": b"282", b"ms": b"12.0", b"other": b"x"}, "cats")  # fmt: skip
    assert built.img == b"\xff\xd8"
    assert '"label": "tiger cat"' in built.message and '"time_ms": 1700000000123' in built.message
    assert "other" not in built.message


def test_a_frame_added_while_the_hub_first_connects_to_an_empty_stream_is_shown(r: redis.Redis, backing: Any) -> None:
    """The first hit on `cats` may come between the hub's first look (empty) and its first XREAD."""

    async def scenario() -> None:
        hub = Hub(backing.url, WebSettings(stream="cats", block_ms=200))
        read_stats = hub._read_stats
        added: list[str] = []

        async def add_then_read_stats(client: Any) -> None:  # between the first look and the first XREAD
            if not added:
                added.append(r.xadd("cats", {"img": b"\xff\xd8", "label": "tabby"}).decode())
            await read_stats(client)

        hub._read_stats = add_then_read_stats  # type: ignore[method-assign]
        slot = hub.subscribe()
        task = asyncio.create_task(hub.run())
        try:
            async with asyncio.timeout(10):
                while hub.latest is None:
                    await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert hub.latest.id == added[0]
        got, _ = await slot.take()
        assert got is not None and got.id == added[0]

    asyncio.run(scenario())
