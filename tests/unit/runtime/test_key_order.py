"""KeyOrder: stores and deletes of one key in the order they arrive, seen by what arrives after them."""

from __future__ import annotations

import asyncio

from gearcam.runtime.ai.key_order import KeyOrder


async def _write(order: KeyOrder, key: bytes, log: list[str], name: str, release: asyncio.Event) -> None:
    async with order.writing(key):
        log.append(f"{name} starts")
        await release.wait()
        log.append(f"{name} ends")


def test_a_later_write_waits_for_an_earlier_slower_one_and_other_keys_do_not() -> None:
    async def scenario() -> list[str]:
        order, log = KeyOrder(), []
        slow, quick, other = asyncio.Event(), asyncio.Event(), asyncio.Event()
        quick.set()
        other.set()
        first = asyncio.ensure_future(_write(order, b"m", log, "first", slow))
        second = asyncio.ensure_future(_write(order, b"m", log, "second", quick))
        elsewhere = asyncio.ensure_future(_write(order, b"n", log, "elsewhere", other))
        await elsewhere  # another key's write is not held up by m's
        for _ in range(5):
            await asyncio.sleep(0)
        assert "second starts" not in log
        slow.set()
        await asyncio.gather(first, second)
        assert order.pending() == 0
        return log

    log = asyncio.run(scenario())
    assert log.index("first ends") < log.index("second starts")
    assert log.index("elsewhere ends") < log.index("first ends")


def test_a_read_waits_for_the_writes_before_it_and_not_for_those_after() -> None:
    async def scenario() -> list[str]:
        order, log = KeyOrder(), []
        first_done, later_done = asyncio.Event(), asyncio.Event()
        first = asyncio.ensure_future(_write(order, b"m", log, "first", first_done))
        await asyncio.sleep(0)

        async def read() -> None:
            await order.settled(b"m")
            log.append("read")

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0)
        later = asyncio.ensure_future(_write(order, b"m", log, "later", later_done))
        for _ in range(5):
            await asyncio.sleep(0)
        assert "read" not in log  # the write that came first is under way
        first_done.set()
        await asyncio.wait_for(reader, 5)  # the later write, still held, does not hold the read
        assert "later ends" not in log
        later_done.set()
        await asyncio.gather(first, later)
        await order.settled(b"m")  # nothing pending: no wait
        return log

    log = asyncio.run(scenario())
    assert log.index("first ends") < log.index("read")


def test_a_write_cancelled_while_waiting_keeps_the_next_one_behind_the_one_before() -> None:
    async def scenario() -> list[str]:
        order, log = KeyOrder(), []
        first_done, never, third_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        third_done.set()
        first = asyncio.ensure_future(_write(order, b"m", log, "first", first_done))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(_write(order, b"m", log, "second", never))
        await asyncio.sleep(0)
        third = asyncio.ensure_future(_write(order, b"m", log, "third", third_done))
        await asyncio.sleep(0)
        second.cancel()  # its client hung up while it waited
        for _ in range(5):
            await asyncio.sleep(0)
        assert "third starts" not in log and not first.done()
        first_done.set()
        await asyncio.gather(first, third)
        assert order.pending() == 0
        return log

    log = asyncio.run(scenario())
    assert "second starts" not in log
    assert log.index("first ends") < log.index("third starts")


def test_a_failed_write_lets_the_next_one_go() -> None:
    async def scenario() -> None:
        order = KeyOrder()

        async def failing() -> None:
            async with order.writing(b"m"):
                await asyncio.sleep(0)
                raise ValueError("the blob does not parse")

        failed = asyncio.ensure_future(failing())
        await asyncio.sleep(0)
        done = asyncio.Event()
        done.set()
        after = asyncio.ensure_future(_write(order, b"m", [], "after", done))
        await asyncio.wait_for(after, 5)
        assert isinstance(failed.exception(), ValueError)
        assert order.pending() == 0

    asyncio.run(scenario())
