"""A StreamReader's count of executions stays RedisGears' when the key events come late.

Inside Redis an XADD's event and the reader's count happen in one thread. Here a starting reader
counts the stream's length while events of XADDs already in that length may still be on their way
(a loaded machine): counted again, each would run one execution more than RedisGears runs (CI saw
32 successes where the module counts 31). The reader publishes a mark with its count and drops the
events that come before it.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvloop

from gearcam.runtime.gears.builder import Plan
from gearcam.runtime.gears.link import LinkPool
from gearcam.runtime.gears.registrations import Registration
from gearcam.runtime.gears.streams import Outcome, StreamWorker, group_name
from gearcam.runtime.keyevents import FENCE_CHANNEL
from gearcam.runtime.relay import Address
from tests.conftest import free_port
from tests.runtime.conftest import Backing, proxied_events, seen_soon

_DELAY_S = 0.3  # how late the subscription's messages come


def _registration() -> Registration:
    args = {"prefix": "s", "batch": 1, "duration": 0, "onFailedPolicy": "continue", "onFailedRetryInterval": 1,
            "trimStream": True}  # fmt: skip
    return Registration(id="0000-1", plan=Plan("StreamReader", None, None), mode="async", args=args, session_id="t")


def test_events_of_entries_already_counted_do_not_run_an_execution_more(tmp_path: Path) -> None:
    backing = Backing(free_port(), tmp_path)
    backing.start()
    reg = _registration()
    batches: list[int] = []  # entries each execution read
    marks: dict[bytes, StreamWorker] = {}
    pool = ThreadPoolExecutor(max_workers=2)
    links = LinkPool(Address(host="127.0.0.1", port=backing.port), 2.0)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        worker: StreamWorker | None = None

        async def in_pool(fn: Any, *args: Any) -> Any:
            return await loop.run_in_executor(pool, fn, *args)

        async def execute(_: Registration, read: Any) -> Outcome:
            batches.append(len(await read()))
            return Outcome([], False, lambda: None)

        def mark(w: StreamWorker) -> bytes:
            token = b"test-mark:%d" % len(marks)
            marks[token] = w
            return token

        def on_event(event: str, db: int, key: bytes) -> None:
            nonlocal worker
            if event != "xadd" or key != b"s":
                return
            if worker is None:  # the first XADD's event starts the reader, as GearsService.poke_stream does
                worker = StreamWorker(reg, key, links, in_pool, execute, lambda _: {group_name(reg)},
                                      lambda *_: None, lambda: None, stamped=True, mark=mark)  # fmt: skip
                worker.task = loop.create_task(worker.run())
            else:
                worker.add()

        async with proxied_events(backing.port, back=_DELAY_S) as (events, direct):
            events.add_listener(on_event)
            events.on_mark.append(lambda token: marks[token].marked(token))
            events.want_stream_events(True)
            events.start()
            await asyncio.wait_for(events.ready.wait(), 10)
            await events.streams_current(10.0)
            await direct.call(b"XADD", b"s", b"*", b"n", b"0")
            await asyncio.sleep(_DELAY_S / 2)
            for n in range(1, 5):  # in the stream before the reader starts; their events come after it counted
                await direct.call(b"XADD", b"s", b"*", b"n", str(n).encode())
            for _ in range(100):
                if worker is not None and marks and len(batches) >= 6 and worker.quiet.is_set():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(3 * _DELAY_S)  # anything the late events would run, ran
            assert worker is not None and worker.task is not None
            worker.stopping = True
            worker.wake.set()
            await asyncio.wait_for(worker.task, 5)

    try:
        uvloop.run(scenario())
    finally:
        pool.shutdown()
        links.close()
        backing.stop()
    # RedisGears: one execution over the pending entries (none), then one an entry (batch=1), no more.
    assert batches == [0, 1, 1, 1, 1, 1]
    assert list(marks) == [b"test-mark:0"]


def test_a_mark_comes_back_after_the_events_of_the_writes_before_it(tmp_path: Path) -> None:
    backing = Backing(free_port(), tmp_path)
    backing.start()
    seen: list[tuple[str, bytes]] = []

    async def scenario() -> None:
        async with proxied_events(backing.port, back=_DELAY_S) as (events, direct):
            events.add_listener(lambda event, db, key: seen.append((event, key)))
            events.on_mark.append(lambda token: seen.append(("mark", token)))
            events.start()
            await asyncio.wait_for(events.ready.wait(), 10)
            await direct.call(b"SET", b"a", b"1")
            await direct.call(b"PUBLISH", FENCE_CHANNEL, b"m1")
            await direct.call(b"SET", b"b", b"1")
            assert await events.fence(direct, 5.0)  # the runtime's own fences are not marks
            await direct.call(b"PUBLISH", b"another-channel", b"m2")
            await direct.call(b"PUBLISH", FENCE_CHANNEL, b"m3")
            assert await seen_soon(seen, ("mark", b"m3"), timeout=5.0)

    try:
        uvloop.run(scenario())
    finally:
        backing.stop()
    assert seen == [("set", b"a"), ("mark", b"m1"), ("set", b"b"), ("mark", b"m3")]
