"""RESTORE: values DUMPed from a Redis with RedisAI become the runtime's tensors, models and scripts.

Any other payload is relayed to the backing Redis untouched. A RedisAI payload is decoded
(ai/rdb.py), a model is loaded into its engine and a script compiled first, as
AI.MODELSTORE and AI.SCRIPTSTORE do, so one that does not load is refused and nothing is
stored. The object is then packed in the runtime's format and sent to Redis as the
RESTORE of a plain string with the client's own TTL and options: BUSYKEY, REPLACE,
ABSTTL, IDLETIME and FREQ keep Redis' behaviour and words.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from gearcam.runtime import replies
from gearcam.runtime.ai import rdb, store
from gearcam.runtime.ai.engines import backend_module, load_model
from gearcam.runtime.ai.service import AIService
from gearcam.runtime.commands.base import Context
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = ["restore"]

_T = TypeVar("_T")
_A = TypeVar("_A")
_BIG = 1 << 20  # payload bytes from which the CRC passes run in a thread


async def restore(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 4:
        raise ErrorReply(replies.arity("restore"))
    link = ctx.link
    link.relayed += 1  # its key event must reach the AI store before this client's next AI read
    if rdb.redisai_type(args[3]) is None:
        return _status(await link.call(*args, own=False))
    size = len(args[3])
    value = await _packed(ctx.state.ai, await _off_loop(size, rdb.decode, args[3]))
    payload = await _off_loop(size, rdb.string_payload, value)
    reply = await link.call(args[0], args[1], args[2], payload, *args[4:], own=False)
    ctx.state.ai.forget(args[1])  # a model or script loaded from what the key held before
    return _status(reply)


async def _off_loop(size: int, work: Callable[[_A], _T], data: _A) -> _T:
    """Run a CRC-64 pass (about 20 ms per MB) in a thread for large values, so other clients are not held up."""
    if size < _BIG:
        return work(data)
    return await asyncio.to_thread(work, data)


def _status(reply: Any) -> Any:
    """Redis' +OK as a status reply again (the link hands it over as bytes)."""
    return SimpleString(reply.decode()) if isinstance(reply, bytes) else reply


async def _packed(ai: AIService, restored: rdb.Restored) -> store.Packed:
    """The object in the runtime's stored format, once its engine has accepted it."""
    if isinstance(restored, rdb.RestoredTensor):
        return store.encode_tensor(restored.tensor, uuid.uuid4().hex)
    if isinstance(restored, rdb.RestoredModel):
        meta, blob = restored.meta, restored.blob
        engine = await asyncio.to_thread(
            load_model, meta.backend, meta.device, blob, meta.inputs, meta.outputs, ai.options
        )
        if meta.backend != "TF":  # named by the engine, as AI.MODELSTORE does
            meta.inputs, meta.outputs = list(engine.input_names), list(engine.output_names)
        return store.pack(store.KIND_MODEL, store.model_header(meta), blob)
    script, source = restored.meta, restored.source
    module = backend_module("TORCH")
    await asyncio.to_thread(module.TorchScript, source, script.entry_points, script.device, ai.options)
    return store.pack(store.KIND_SCRIPT, {**script.__dict__}, source.encode())
