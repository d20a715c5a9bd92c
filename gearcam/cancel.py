"""Waiting and stopping in asyncio without losing a cancellation (Python 3.11).

Two patterns drop the cancellation of the task that uses them, and one dropped cancel is
enough to make a stop wait for ever: the key events' task then reconnected to a Redis that
had shut down, and `Runtime.stop` waited on it without end (a CI run of `invoke up` after
`SHUTDOWN`; reproduced in tests/runtime/test_key_events.py):

- `task.cancel(); try: await task except CancelledError: pass` swallows the task's own
  CancelledError, as meant, and also the waiter's, when it is cancelled meanwhile;
- `asyncio.wait_for` on 3.11 returns the result when the awaited thing completes in the same
  loop iteration as the cancel (fixed in 3.12, which builds it on `asyncio.timeout`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["cancel_and_wait", "wait_for"]

T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it ended; a cancellation of the caller is raised, the task's is not."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


async def wait_for(awaitable: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for` as Python 3.12 has it: TimeoutError past `timeout`, and a cancel always wins."""
    async with asyncio.timeout(timeout):
        return await awaitable
