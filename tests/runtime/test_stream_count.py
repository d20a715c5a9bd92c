"""A StreamReader's count of executions stays RedisGears' when the key events come late.

Inside Redis an XADD's event and the reader's count happen in one thread. Here a starting reader
counts the stream's length while events of XADDs already in that length may still be on their way
(a loaded machine): counted again, each would run one execution more than RedisGears runs (CI saw
32 successes where the module counts 31). The reader publishes a mark with its count and drops the
events that come before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from gearcam.runtime.gears.builder import Plan
from gearcam.runtime.gears.link import LinkPool
from gearcam.runtime.gears.registrations import Registration
from gearcam.runtime.gears.streams import IDLE_RECHECK_S, Outcome, StreamWorker, group_name
from gearcam.runtime.keyevents import FENCE_CHANNEL
from gearcam.runtime.relay import Address, BackendLink
from tests.conftest import free_port
from tests.runtime.conftest import Backing, proxied_events, seen_soon

_DELAY_S = 0.3  # how late the subscription's messages come


def _registration() -> Registration:
    args = {"prefix": "s", "batch": 1, "duration": 0, "onFailedPolicy": "continue", "onFailedRetryInterval": 1,
            "trimStream": True}  # fmt: skip
    return Registration(id="0000-1", plan=Plan("StreamReader", None, None), mode="async", args=args, session_id="t")


@dataclass
class _Reader:
    """One StreamWorker reading stream `s`, fed by real key events as GearsService feeds it."""

    links: LinkPool
    pool: ThreadPoolExecutor
    reg: Registration = field(default_factory=_registration)
    batches: list[int] = field(default_factory=list)  # entries each execution read
    marks: dict[bytes, StreamWorker] = field(default_factory=dict)
    worker: StreamWorker | None = None
    deaf: bool = False  # drop the key events, as a lost subscription does

    async def _in_pool(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _execute(self, _: Registration, read: Any) -> Outcome:
        self.batches.append(len(await read()))
        return Outcome([], False, lambda: None)

    def _mark(self, worker: StreamWorker) -> bytes:
        token = b"test-mark:%d" % len(self.marks)
        self.marks[token] = worker
        return token

    def on_event(self, event: str, db: int, key: bytes) -> None:
        if event != "xadd" or key != b"s" or self.deaf:
            return
        if self.worker is None:  # the first XADD's event starts the reader, as GearsService.poke_stream does
            self.worker = StreamWorker(self.reg, key, self.links, self._in_pool, self._execute,
                                       lambda _: {group_name(self.reg)}, lambda *_: None, lambda: None,
                                       stamped=True, mark=self._mark)  # fmt: skip
            self.worker.task = asyncio.get_running_loop().create_task(self.worker.run())
        else:
            self.worker.add()

    async def ran(self, executions: int) -> None:
        """Return once `executions` ran and the reader is idle, and then long enough for late events to act."""
        for _ in range(100):
            if self.worker is not None and len(self.batches) >= executions and self.worker.quiet.is_set():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(3 * _DELAY_S)

    async def stop(self) -> None:
        assert self.worker is not None and self.worker.task is not None
        self.worker.stopping = True
        self.worker.wake.set()
        await asyncio.wait_for(self.worker.task, 5)


def _with_reader(tmp_path: Path, back: float, scenario: Callable[[_Reader, BackendLink], Awaitable[None]]) -> _Reader:
    """Run `scenario` with a reader whose key events come `back` s late, and a direct link for the writes."""
    backing = Backing(free_port(), tmp_path)
    backing.start()
    reader = _Reader(LinkPool(Address(host="127.0.0.1", port=backing.port), 2.0), ThreadPoolExecutor(max_workers=2))

    async def run() -> None:
        async with proxied_events(backing.port, back=back) as (events, direct):
            events.add_listener(reader.on_event)
            events.on_mark.append(lambda token: reader.marks[token].marked(token))
            events.want_stream_events(True)
            events.start()
            await asyncio.wait_for(events.ready.wait(), 10)
            await events.streams_current(10.0)
            await scenario(reader, direct)
            await reader.stop()

    try:
        uvloop.run(run())
    finally:
        reader.pool.shutdown()
        reader.links.close()
        backing.stop()
    return reader


def test_events_of_entries_already_counted_do_not_run_an_execution_more(tmp_path: Path) -> None:
    async def scenario(reader: _Reader, direct: BackendLink) -> None:
        await direct.call(b"XADD", b"s", b"*", b"n", b"0")
        await asyncio.sleep(_DELAY_S / 2)
        for n in range(1, 5):  # in the stream before the reader starts; their events come after it counted
            await direct.call(b"XADD", b"s", b"*", b"n", str(n).encode())
        await reader.ran(6)

    reader = _with_reader(tmp_path, _DELAY_S, scenario)
    # RedisGears: one execution over the pending entries (none), then one an entry (batch=1), no more.
    assert reader.batches == [0, 1, 1, 1, 1, 1]
    assert list(reader.marks)[0] == b"test-mark:0"  # the start count's (idle looks publish theirs after it)


def test_entries_whose_events_were_lost_are_run_once_by_the_idle_look(tmp_path: Path) -> None:
    async def scenario(reader: _Reader, direct: BackendLink) -> None:
        await direct.call(b"XADD", b"s", b"*", b"n", b"0")
        await reader.ran(2)
        reader.deaf = True
        for n in range(1, 4):
            await direct.call(b"XADD", b"s", b"*", b"n", str(n).encode())
        await asyncio.sleep(2 * _DELAY_S)  # their events came and were dropped
        reader.deaf = False
        await reader.ran(5)
        await asyncio.sleep(2 * IDLE_RECHECK_S)  # more idle looks: nothing more is missing
        await direct.call(b"XADD", b"s", b"*", b"n", b"4")  # events heard again
        await reader.ran(6)

    reader = _with_reader(tmp_path, _DELAY_S, scenario)
    assert reader.batches == [0, 1, 1, 1, 1, 1]
    assert len(reader.marks) >= 3  # the start count's and the idle looks' (one a second)


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
