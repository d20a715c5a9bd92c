"""gearcam/cancel.py: a cancellation is never lost, on either event loop the runtime runs on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from gearcam.cancel import cancel_and_wait, wait_for

RUNNERS: list[Callable[[Coroutine[Any, Any, Any]], Any]] = [asyncio.run, uvloop.run]


@pytest.mark.parametrize("run", RUNNERS, ids=["asyncio", "uvloop"])
def test_cancel_and_wait_raises_the_callers_cancellation_and_not_the_tasks(run: Any) -> None:
    async def scenario() -> None:
        sleeper = asyncio.ensure_future(asyncio.sleep(10))
        await cancel_and_wait(sleeper)  # the task's own cancellation: swallowed
        assert sleeper.cancelled()

        stubborn = asyncio.ensure_future(_finishes_late())
        stopper = asyncio.ensure_future(cancel_and_wait(stubborn))
        await asyncio.sleep(0)  # the stopper now waits for the task, which takes a while to end
        stopper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopper  # (a bare `except CancelledError: pass` returned here as if nothing happened)
        await asyncio.wait({stubborn})

    run(scenario())


@pytest.mark.parametrize("run", RUNNERS, ids=["asyncio", "uvloop"])
def test_wait_for_lets_a_cancel_win_over_a_result_that_came_in_the_same_iteration(run: Any) -> None:
    async def scenario() -> None:
        done = asyncio.get_running_loop().create_future()
        waiter = asyncio.ensure_future(wait_for(done, 5))
        await asyncio.sleep(0)
        done.set_result("ready")
        waiter.cancel()  # in the same iteration: on 3.11, asyncio.wait_for returned "ready" here
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await wait_for(asyncio.sleep(0, "value"), 5) == "value"
        with pytest.raises(TimeoutError):
            await wait_for(asyncio.sleep(10), 0.01)

    run(scenario())


async def _finishes_late() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(0.05)
        raise
