"""What a TorchScript script's `redis.execute` and `redisAI.model_execute` reach: the calling client's Redis.

RedisAI registers both as TorchScript operators (engines/torch.py registers the same ones with
Python kernels). A script runs on a run-queue worker thread while the event loop serves the
client, so the kernels block that thread on a coroutine sent to the loop
(`asyncio.run_coroutine_threadsafe`), never the loop itself.

- `redis.execute(...)` runs a plain Redis command on the calling client's connection, in its DB,
  as its ACL user: a restricted user's command is checked with `ACL DRYRUN` first, since its
  owned commands run on the runtime's own connection (RedisAI runs it with no user at all).
  The runtime's own commands (`AI.*`, `RG.*`) are refused with a message saying so.
- `redisAI.model_execute(key, tensors, n)` finds the model as AI.MODELEXECUTE would and runs
  it on the script's own thread, as RedisAI does (through the device queue a script holding the
  queue's only worker would wait for itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from gearcam.runtime.acl import AclRefused
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.commands.base import Context
from gearcam.runtime.resp import ErrorReply

__all__ = ["ScriptHost", "script_host"]

_T = TypeVar("_T")
# How long a script waits for one call: a reply from the backing Redis, or a model to load.
CALL_TIMEOUT_S = 30.0
_CALL_ERRNO = (
    ("ERR wrong number of arguments", "Invalid argument"),
    ("ERR unknown command", "No such file or directory"),
)


@dataclass
class ScriptHost:
    """The calling client's side of one script run, called from the worker thread."""

    ctx: Context
    loop: asyncio.AbstractEventLoop
    restricted: bool
    timeout_s: float

    def execute(self, args: Sequence[str]) -> Any:
        """A Redis command's reply (bytes, int, list or None); an error reply raises AIError with its text."""
        if not args:
            raise AIError("ERR wrong number of arguments for redis.execute: name a command")
        return self._wait(self._execute([a.encode() for a in args]))

    def model_execute(self, key: str, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        loaded = self._wait(self.ctx.state.ai.model(self.ctx.link, key.encode()))
        return loaded.runnable.engine.run(inputs)

    async def _execute(self, args: list[bytes]) -> Any:
        name = args[0].decode("utf-8", "replace").upper()
        if name in self.ctx.state.commands:
            raise AIError(
                f"ERR the gearcam runtime cannot run {name} from a TorchScript script (RedisAI can); "
                "run it from the client before or after the script"
            )
        if self.restricted:
            try:
                await self.ctx.state.acl.check(self.ctx.user, name, args)
            except AclRefused as refused:  # in ACL LOG as a module's call refused for the user it runs as
                await self.ctx.state.acllog.record(refused, "module", self.ctx.user, self.ctx.link)
                raise
        try:
            return await self.ctx.link.call(*args, own=False)
        except ErrorReply as exc:
            # RedisModule_Call refuses these itself and RedisAI reports its errno; Redis' reply follows.
            for start, errno_text in _CALL_ERRNO:
                if exc.message.startswith(start):
                    raise AIError(f"{errno_text} ({exc.message})") from None
            raise

    def _wait(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if _running_loop() is self.loop:  # on the loop's own thread the wait below could never end
            coroutine.close()
            raise AIError("ERR redis.execute called on the event loop's thread; scripts run on queue workers")
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(self.timeout_s)
        except ErrorReply as exc:
            raise AIError(exc.message) from exc
        except TimeoutError as exc:
            future.cancel()
            raise AIError(f"ERR no reply from the backing Redis within {self.timeout_s:g}s") from exc


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def script_host(ctx: Context) -> ScriptHost:
    """The host for a script run on behalf of `ctx`'s client (call on the event loop)."""
    restricted = not await ctx.state.acl.unrestricted(ctx.user)
    return ScriptHost(ctx, asyncio.get_running_loop(), restricted, CALL_TIMEOUT_S)
