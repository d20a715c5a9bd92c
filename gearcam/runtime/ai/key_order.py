"""Stores and deletes of one model or script key applied in the order they arrive, and seen by what comes after.

RedisAI serves every command on Redis' main thread, a model's load included: a command that
arrives while `AI.MODELSTORE k` loads waits, and then finds the new model. The runtime loads
on a worker thread and serves other keys meanwhile, so without an order a run arriving during
the load would find the old model (or, after a `MODELDEL`, none), and two stores of one key
would land in the order their loads finished, not the order they came. Only commands on the
key being written wait here; RedisAI makes every client wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["KeyOrder"]


class KeyOrder:
    def __init__(self) -> None:
        self._last: dict[bytes, asyncio.Future[None]] = {}  # the write to the key that arrived last, until done

    @asynccontextmanager
    async def writing(self, key: bytes) -> AsyncIterator[None]:
        """Hold `key` for a store or delete, after the writes to it that arrived before this one.

        Enter it before the command's first await, so the order is the order of arrival.
        """
        before = self._last.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last[key] = mine
        try:
            if before is not None:
                await _settled(before)
            yield
        finally:
            if before is not None and not before.done():  # cancelled while waiting: the next write still waits
                before.add_done_callback(lambda _: _release(self._last, key, mine))
            else:
                _release(self._last, key, mine)

    async def settled(self, key: bytes) -> None:
        """Wait for the writes to `key` that arrived before now (none pending: no wait, the usual case)."""
        before = self._last.get(key)
        if before is not None:
            await _settled(before)

    def pending(self) -> int:
        """Keys with a store or delete under way or waiting (none once they are done: nothing is kept per key)."""
        return len(self._last)


def _release(last: dict[bytes, asyncio.Future[None]], key: bytes, mine: asyncio.Future[None]) -> None:
    mine.set_result(None)
    if last.get(key) is mine:
        del last[key]


async def _settled(write: asyncio.Future[None]) -> None:
    # A waiter that is cancelled (its client hung up) must not cancel the write it waits for.
    await asyncio.shield(write)
