"""AI.TENSORSET and AI.TENSORGET: argument checks and reply shapes of RedisAI 1.2."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.ai import store
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.ai.tensor import DTYPES, Tensor, check_shape
from gearcam.runtime.commands.base import Context, Later, Queued, upper
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = ["ai_tensorget", "ai_tensorset", "parse_tensorset", "queue_tensorget", "queue_tensorset", "start_tensorset"]


_LONG_LONG_MAX = 2**63 - 1


def parse_tensorset(args: list[bytes], command: str = "AI.TENSORSET") -> tuple[bytes, Tensor]:
    """Key and tensor from `AI.TENSORSET key type dim... [BLOB b | VALUES v...]` (also used inside DAGs)."""
    if len(args) < 4:
        raise ErrorReply(replies.arity(command))
    key, dtype = args[1], upper(args[2])
    if dtype not in DTYPES:
        raise ErrorReply(replies.INVALID_DTYPE)
    position, shape = 3, []
    while position < len(args) and upper(args[position]) not in ("BLOB", "VALUES"):
        try:
            dim = int(args[position])
        except ValueError:
            raise ErrorReply(replies.INVALID_SHAPE) from None
        if dim <= 0 or dim > _LONG_LONG_MAX:  # RedisAI reads each dimension as a long long
            raise ErrorReply(replies.INVALID_SHAPE)
        shape.append(dim)
        position += 1
    if not shape:
        raise ErrorReply(replies.INVALID_SHAPE)
    count = check_shape(dtype, shape)
    if position == len(args):
        return key, Tensor.zeros(dtype, shape)
    rest = args[position + 1 :]
    if upper(args[position]) == "BLOB":
        if len(rest) != 1:
            raise ErrorReply(replies.BLOB_SINGLE)
        return key, Tensor.from_blob(dtype, shape, rest[0])
    if len(rest) != count:
        raise ErrorReply(replies.VALUES_COUNT)
    return key, Tensor.from_values(dtype, shape, rest)


def parse_tensorget(args: list[bytes], command: str = "AI.TENSORGET") -> tuple[bytes, bool, str | None]:
    """Key, META flag and BLOB/VALUES format; no flags means META BLOB, as in RedisAI."""
    if len(args) < 2 or len(args) > 4:
        raise ErrorReply(replies.arity(command))
    meta, fmt = False, None
    for flag in (upper(a) for a in args[2:]):
        if flag == "META":
            meta = True
        elif flag in ("BLOB", "VALUES"):
            if fmt is not None and fmt != flag:
                raise ErrorReply(replies.BOTH_FORMATS)
            fmt = flag
        else:
            raise ErrorReply(replies.UNSUPPORTED_FORMAT)
    if not meta and fmt is None:
        meta, fmt = True, "BLOB"
    return args[1], meta, fmt


async def _key_first(ctx: Context, key: bytes, error: ErrorReply) -> ErrorReply:
    """RedisAI opens the key before it reads the arguments: a key of another type answers WRONGTYPE first."""
    if await store.type_of(ctx.link, key) not in ("none", "AI_TENSOR"):
        return ErrorReply(replies.WRONGTYPE)
    return error


async def ai_tensorset(ctx: Context, args: list[bytes]) -> Any:
    try:
        key, tensor = parse_tensorset(args)
    except (ErrorReply, AIError) as exc:
        if len(args) < 4:
            raise
        raise await _key_first(ctx, args[1], ErrorReply(exc.message)) from None
    await ctx.state.ai.tensor_set(ctx.link, [(key, tensor)])
    return SimpleString("OK")


def start_tensorset(ctx: Context, args: list[bytes]) -> Awaitable[Any] | Later:
    """AI.TENSORSET without holding up the client's next command (e.g. a pipelined MODELEXECUTE)."""
    try:
        key, tensor = parse_tensorset(args)
    except (ErrorReply, AIError):
        if len(args) < 4:
            raise
        return ai_tensorset(ctx, args)  # the error again, after the key's type
    return Later(ctx.state.ai.tensor_set_nowait(ctx.link, [(key, tensor)]), SimpleString("OK"))


async def ai_tensorget(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 2 or len(args) > 4:
        raise ErrorReply(replies.arity("AI.TENSORGET"))
    tensor = await ctx.state.ai.tensor_get(ctx.link, args[1])  # the key first, as RedisAI
    _, meta, fmt = parse_tensorget(args)
    return tensor.reply(meta, fmt)


# Inside MULTI: queued in the client's transaction, applied at EXEC in place
# (docs/runtime.md, "`AI.*` and `RG.*` inside `MULTI`").


def queue_tensorset(ctx: Context, args: list[bytes]) -> Queued:
    if len(args) < 4:
        raise ErrorReply(replies.arity("AI.TENSORSET"))
    try:
        key, tensor = parse_tensorset(args)
    except (ErrorReply, AIError) as exc:
        return Queued(store.queued_step(b"refuse", args[1], store.KIND_TENSOR, exc.message.encode()))
    return Queued(store.queued_tensor_write(key, tensor), writes=key)


def queue_tensorget(ctx: Context, args: list[bytes]) -> Queued:
    if len(args) < 2 or len(args) > 4:
        raise ErrorReply(replies.arity("AI.TENSORGET"))
    key = args[1]
    try:
        _, meta, fmt = parse_tensorget(args)
    except ErrorReply as exc:
        refusal: ErrorReply | None = exc
    else:
        refusal = None

    def render(decoded: tuple[str, Tensor]) -> Any:
        if refusal is not None:  # after the key's own refusals (WRONGTYPE, empty), as RedisAI opens the key first
            raise refusal
        return decoded[1].reply(meta, fmt)

    reply = store.stored_reply(key, "tensor", store.decode_tensor, render)
    return Queued(store.queued_step(b"get", key, store.KIND_TENSOR, replies.TENSOR_EMPTY.encode()), reply)
