"""The blocking bridge a TorchScript script's redis.execute uses (commands/ai_script_host.py)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.commands.ai_script_host import ScriptHost
from gearcam.runtime.commands.base import Context


def test_a_call_from_the_event_loops_own_thread_fails_at_once_instead_of_waiting_for_itself() -> None:
    async def main() -> None:
        host = ScriptHost(cast(Context, object()), asyncio.get_running_loop(), restricted=False, timeout_s=30)
        with pytest.raises(AIError, match="event loop's thread"):
            host.execute(["GET", "k"])

    asyncio.run(asyncio.wait_for(main(), 5))


def test_a_call_without_a_command_name_is_refused() -> None:
    async def main() -> None:
        host = ScriptHost(cast(Context, object()), asyncio.get_running_loop(), restricted=False, timeout_s=30)
        with pytest.raises(AIError, match="name a command"):
            await asyncio.to_thread(host.execute, [])

    asyncio.run(main())
