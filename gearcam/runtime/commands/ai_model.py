"""AI.MODEL* commands (and the deprecated MODELSET/MODELRUN) with RedisAI 1.2's syntax and errors."""

from __future__ import annotations

import re
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.ai import store
from gearcam.runtime.ai.engines import BACKENDS
from gearcam.runtime.ai.service import Prepared
from gearcam.runtime.ai.store import ModelMeta
from gearcam.runtime.ai.tensor import Tensor
from gearcam.runtime.commands.base import Context, Later, Queued, as_int, token, upper
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = [
    "ai_execution_in_transaction",
    "ai_modeldel",
    "ai_modelexecute",
    "ai_modelget",
    "ai_modelrun",
    "ai_modelscan",
    "ai_modelset",
    "ai_modelstore",
    "parse_modelexecute",
    "queue_modeldel",
    "queue_modelget",
    "queue_modelset",
    "queue_modelstore",
    "queued_delete",
    "queued_store",
    "store_outputs",
]

_DEVICE = re.compile(r"^(CPU|GPU)(:\d+)?$")


def _device(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    if len(text) >= 10 or not _DEVICE.match(text.upper()):
        raise ErrorReply(replies.INVALID_DEVICE)
    return text


_LONG_LONG_MAX = 2**63 - 1


def _batching(args: list[bytes], position: int, meta: ModelMeta) -> int:
    """TAG, BATCHSIZE, MINBATCHSIZE, MINBATCHTIMEOUT: each optional, only in this order."""
    if token(args, position) == "TAG" and position + 1 < len(args):
        meta.tag = args[position + 1].decode("utf-8", "replace")
        position += 2
    for option in ("BATCHSIZE", "MINBATCHSIZE", "MINBATCHTIMEOUT"):
        if token(args, position) == option and position + 1 < len(args):
            value = as_int(args[position + 1], replies.invalid_batch_arg(option))
            if value < 0 or value > _LONG_LONG_MAX:  # RedisAI reads a long long
                raise ErrorReply(replies.invalid_batch_arg(option))
            setattr(meta, option.lower(), value)
            position += 2
    if meta.minbatchsize > 0 and meta.batchsize == 0:
        raise ErrorReply(replies.MINBATCH_WITHOUT_BATCH)
    if meta.minbatchtimeout > 0 and meta.minbatchsize == 0:
        raise ErrorReply(replies.MINTIMEOUT_WITHOUT_MINBATCH)
    if meta.minbatchsize > meta.batchsize > 0:
        raise ErrorReply(replies.minbatch_over_batch(meta.minbatchsize, meta.batchsize))
    return position


def _counted_names(args: list[bytes], position: int, count_error: str, names_error: str) -> tuple[list[str], int]:
    if position >= len(args):
        raise ErrorReply(count_error)
    count = as_int(args[position], count_error)
    if count <= 0:
        raise ErrorReply(count_error)
    names = args[position + 1 : position + 1 + count]
    if len(names) < count:
        raise ErrorReply(names_error)
    return [n.decode("utf-8", "replace") for n in names], position + 1 + count


def parse_modelstore(args: list[bytes]) -> tuple[bytes, ModelMeta, bytes]:
    if len(args) < 6:
        raise ErrorReply(replies.arity("AI.MODELSTORE"))
    backend = upper(args[2])
    if backend not in BACKENDS:
        raise ErrorReply(replies.UNSUPPORTED_BACKEND)
    meta = ModelMeta(backend=backend, device=_device(args[3]))
    position = _batching(args, 4, meta)
    if position >= len(args):
        raise ErrorReply(replies.MISSING_BLOB)
    if backend == "TF":
        if token(args, position) != "INPUTS":
            raise ErrorReply(replies.TF_NO_INPUTS)
        meta.inputs, position = _counted_names(args, position + 1, replies.INPUT_COUNT_ARG, replies.TF_INPUT_NAMES)
        if token(args, position) != "OUTPUTS":
            raise ErrorReply(replies.TF_NO_OUTPUTS)
        meta.outputs, position = _counted_names(args, position + 1, replies.OUTPUT_COUNT_ARG, replies.TF_OUTPUT_NAMES)
    elif token(args, position) == "INPUTS":
        raise ErrorReply(replies.INPUTS_NOT_ALLOWED)
    if position >= len(args):  # only TF gets here: RedisAI compares its last output name with BLOB
        raise ErrorReply(replies.EXPECTED_BLOB)
    if token(args, position) != "BLOB":
        raise ErrorReply(replies.EXPECTED_BLOB)
    chunks = args[position + 1 :]
    if not chunks:
        raise ErrorReply(replies.MISSING_BLOB)
    return args[1], meta, b"".join(chunks)


_MODELSET_KEYWORDS = ("TAG", "BATCHSIZE", "MINBATCHSIZE", "MINBATCHTIMEOUT", "INPUTS", "OUTPUTS", "BLOB")


def parse_modelset(args: list[bytes]) -> tuple[bytes, ModelMeta, bytes]:
    """The deprecated form: INPUTS/OUTPUTS without counts; ignored for non-TF backends."""
    if len(args) < 4:
        raise ErrorReply(replies.arity("AI.MODELSET"))
    backend = upper(args[2])
    if backend not in BACKENDS:
        raise ErrorReply(replies.UNSUPPORTED_BACKEND)
    device = args[3].decode("utf-8", "replace")
    if len(device) > 10 or device.upper() in _MODELSET_KEYWORDS:
        raise ErrorReply(replies.INVALID_DEVICE)
    meta = ModelMeta(backend=backend, device=device)
    position = _batching(args, 4, meta)
    blob_at = next((i for i in range(position, len(args)) if upper(args[i]) == "BLOB"), None)
    if backend == "TF":
        middle = [upper(a) for a in args[position : blob_at if blob_at is not None else len(args)]]
        if not middle:  # nothing between the options and BLOB
            raise ErrorReply(replies.MODELSET_TF_NO_LISTS)
        if middle[0] != "INPUTS":
            raise ErrorReply(replies.MODELSET_TF_NO_INPUTS)
        if "OUTPUTS" not in middle:
            raise ErrorReply(replies.MODELSET_TF_NO_OUTPUTS)
        start = position + middle.index("INPUTS") + 1
        split = position + middle.index("OUTPUTS")
        end = blob_at if blob_at is not None else len(args)
        meta.inputs = [a.decode() for a in args[start:split]]
        meta.outputs = [a.decode() for a in args[split + 1 : end]]
    if blob_at is None or blob_at + 1 >= len(args):
        raise ErrorReply(replies.MISSING_BLOB)
    return args[1], meta, b"".join(args[blob_at + 1 :])


async def ai_modelstore(ctx: Context, args: list[bytes]) -> Any:
    key, meta, blob = parse_modelstore(args)
    await ctx.state.ai.model_store(ctx.link, key, meta, blob)
    return SimpleString("OK")


async def ai_modelset(ctx: Context, args: list[bytes]) -> Any:
    key, meta, blob = parse_modelset(args)
    await ctx.state.ai.model_store(ctx.link, key, meta, blob)
    return SimpleString("OK")


async def ai_modelget(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 2:
        raise ErrorReply(replies.arity("AI.MODELGET"))
    meta, blob = await ctx.state.ai.model_get(ctx.link, args[1])
    return _modelget_reply(meta, blob, args, ctx.state.ai.model_chunk_size)


def _modelget_reply(meta: ModelMeta, blob: memoryview, args: list[bytes], chunk: int) -> Any:
    flags = {upper(a) for a in args[2:]}
    meta_flag, blob_flag = "META" in flags, "BLOB" in flags
    if not meta_flag and not blob_flag:
        meta_flag = blob_flag = True
    blob_reply: Any = bytes(blob)
    if len(blob) > chunk:
        # RedisAI's quirk: len/chunk + 1 chunks, so an exact multiple ends with an empty one.
        blob_reply = [bytes(blob[i * chunk : (i + 1) * chunk]) for i in range(len(blob) // chunk + 1)]
    if not meta_flag:
        return blob_reply
    reply: list[Any] = [
        "backend", meta.backend, "device", meta.device, "tag", meta.tag,
        "batchsize", meta.batchsize, "minbatchsize", meta.minbatchsize,
        "inputs", meta.inputs, "outputs", meta.outputs, "minbatchtimeout", meta.minbatchtimeout,
    ]  # fmt: skip
    if blob_flag:
        reply += ["blob", blob_reply]
    return reply


async def ai_modeldel(ctx: Context, args: list[bytes]) -> Any:
    if len(args) != 2:
        raise ErrorReply(replies.arity("AI.MODELDEL"))
    await ctx.state.ai.model_del(ctx.link, args[1])
    return SimpleString("OK")


# Inside MULTI: queued in the client's transaction, applied at EXEC in place
# (docs/runtime.md, "`AI.*` and `RG.*` inside `MULTI`").


def queue_modelget(ctx: Context, args: list[bytes]) -> Queued:
    if len(args) < 2:
        raise ErrorReply(replies.arity("AI.MODELGET"))
    chunk = ctx.state.ai.model_chunk_size
    reply = store.stored_reply(args[1], "model", store.decode_model, lambda m: _modelget_reply(*m, args, chunk))
    return Queued(store.queued_step(b"get", args[1], store.KIND_MODEL, replies.MODEL_EMPTY.encode()), reply)


async def queue_modelstore(ctx: Context, args: list[bytes]) -> Queued:
    key, meta, blob = parse_modelstore(args)
    return queued_store(ctx, await ctx.state.ai.prepare_model(key, meta, blob), store.KIND_MODEL)


async def queue_modelset(ctx: Context, args: list[bytes]) -> Queued:
    key, meta, blob = parse_modelset(args)
    return queued_store(ctx, await ctx.state.ai.prepare_model(key, meta, blob), store.KIND_MODEL)


def queued_store(ctx: Context, prepared: Prepared, kind: bytes) -> Queued:
    """A model or script stored inside MULTI, loaded when queued (its errors in place at EXEC, as RedisAI loads
    before it opens the key): written at EXEC (WRONGTYPE there), and installed once it was."""

    def reply(value: Any) -> Any:
        if not isinstance(value, ErrorReply):
            ctx.state.ai.install(prepared)
        return value

    key = prepared.loaded.key
    return Queued(store.queued_step(b"set", key, kind, b"".join(prepared.value)), reply, writes=key)


def queue_modeldel(ctx: Context, args: list[bytes]) -> Queued:
    if len(args) != 2:
        raise ErrorReply(replies.arity("AI.MODELDEL"))
    return queued_delete(ctx, args[1], store.KIND_MODEL, replies.MODEL_EMPTY)


def queued_delete(ctx: Context, key: bytes, kind: bytes, empty: str) -> Queued:
    """A model or script deleted inside MULTI: at EXEC, its engine session released once it was (its `del`
    event is announced as the runtime's own, as a plain AI.MODELDEL's is)."""

    def reply(value: Any) -> Any:
        if not isinstance(value, ErrorReply):
            ctx.state.ai.forget(key)
        return value

    return Queued(store.queued_step(b"del", key, kind, empty.encode()), reply, writes=key)


def _keys(args: list[bytes], position: int, count: int, stop: str, direction: str, command: str) -> list[bytes]:
    keys = args[position : position + count]
    if len(keys) < count or any(upper(k) == stop for k in keys):
        raise ErrorReply(replies.keys_mismatch(direction, command))
    return keys


def _count(args: list[bytes], position: int, arg_error: str, positive_error: str) -> int:
    if position >= len(args):
        raise ErrorReply(arg_error)
    count = as_int(args[position], arg_error)
    if count <= 0:
        raise ErrorReply(positive_error)
    return count


def parse_timeout(args: list[bytes], position: int) -> tuple[int, int]:
    if token(args, position) != "TIMEOUT":
        return 0, position
    if position + 1 >= len(args):
        raise ErrorReply(replies.NO_TIMEOUT_VALUE)
    try:
        timeout = int(args[position + 1])
    except ValueError:
        raise ErrorReply(replies.INVALID_TIMEOUT) from None
    if timeout <= 0:
        raise ErrorReply(replies.INVALID_TIMEOUT)
    return timeout, position + 2


def parse_modelexecute(
    args: list[bytes], n_inputs: int, n_outputs: int, command: str = "AI.MODELEXECUTE", in_dag: bool = False
) -> tuple[list[bytes], list[bytes], int]:
    """Input keys, output keys and TIMEOUT, checked against the model's input and output counts."""
    if token(args, 2) != "INPUTS":
        raise ErrorReply(replies.INPUTS_NOT_SPECIFIED)
    count = _count(args, 3, replies.INPUT_COUNT_ARG, replies.INPUT_COUNT_POSITIVE)
    if count != n_inputs:
        raise ErrorReply(replies.INPUTS_MISMATCH)
    inputs = _keys(args, 4, count, "OUTPUTS", "input", command)
    position = 4 + count
    if token(args, position) != "OUTPUTS":
        raise ErrorReply(replies.OUTPUTS_NOT_SPECIFIED)
    count = _count(args, position + 1, replies.OUTPUT_COUNT_ARG, replies.OUTPUT_COUNT_POSITIVE)
    if count != n_outputs:
        raise ErrorReply(replies.OUTPUTS_MISMATCH)
    outputs = _keys(args, position + 2, count, "TIMEOUT", "output", command)
    position += 2 + count
    if in_dag and token(args, position) == "TIMEOUT":
        raise ErrorReply(replies.DAG_TIMEOUT_INSIDE)
    timeout, position = parse_timeout(args, position)
    if position < len(args):
        raise ErrorReply(replies.invalid_argument(args[position].decode("utf-8", "replace")))
    return inputs, outputs, timeout


def parse_modelrun(args: list[bytes], n_inputs: int, n_outputs: int) -> tuple[list[bytes], list[bytes], int]:
    """The deprecated form: `key [TIMEOUT t] INPUTS in... OUTPUTS out...` without counts."""
    timeout, position = parse_timeout(args, 2)
    if token(args, position) != "INPUTS":
        raise ErrorReply(replies.INPUTS_NOT_SPECIFIED)
    words = [upper(a) for a in args]
    if "OUTPUTS" not in words[position:]:
        raise ErrorReply(replies.OUTPUTS_NOT_SPECIFIED)
    split = words.index("OUTPUTS", position)
    inputs, outputs = args[position + 1 : split], args[split + 1 :]
    if len(inputs) != n_inputs:
        raise ErrorReply(replies.INPUTS_MISMATCH)
    if len(outputs) != n_outputs:
        raise ErrorReply(replies.OUTPUTS_MISMATCH)
    return inputs, outputs, timeout


def store_outputs(ctx: Context, result: list[Tensor], outputs: list[bytes]) -> Later:
    """Send the outputs' write; the client's next command (often TENSORGET of them) need not wait for Redis."""
    written = ctx.state.ai.tensor_set_nowait(ctx.link, list(zip(outputs, result, strict=False)))
    return Later(written, SimpleString("OK"))


async def _execute(ctx: Context, args: list[bytes], command: str, deprecated: bool) -> Any:
    if len(args) < (6 if deprecated else 8):  # AI.MODELRUN key INPUTS in OUTPUTS out: RedisAI counts first
        raise ErrorReply(replies.arity(command))
    ai = ctx.state.ai
    model = await ai.model(ctx.link, args[1])
    n_in, n_out = len(model.meta.inputs), len(model.meta.outputs)
    if deprecated:
        input_keys, output_keys, timeout = parse_modelrun(args, n_in, n_out)
    else:
        input_keys, output_keys, timeout = parse_modelexecute(args, n_in, n_out, command)
    result = await ai.model_run_keys(ctx.link, model, input_keys, timeout)
    return store_outputs(ctx, result, output_keys)


async def ai_modelexecute(ctx: Context, args: list[bytes]) -> Any:
    return await _execute(ctx, args, "AI.MODELEXECUTE", deprecated=False)


async def ai_modelrun(ctx: Context, args: list[bytes]) -> Any:
    return await _execute(ctx, args, "AI.MODELRUN", deprecated=True)


async def ai_modelscan(ctx: Context, args: list[bytes]) -> Any:
    return [[s.key, s.tag] for s in await ctx.state.ai.scan(ctx.link, "MODEL")]


async def ai_execution_in_transaction(ctx: Context, args: list[bytes]) -> Any:
    """An execution command queued inside MULTI, at EXEC: RedisAI refuses it there before reading its arguments.

    So, as on RedisAI, it is QUEUED, the rest of the transaction commits, and its place in EXEC's
    reply holds this error: nothing of it would have run on RedisAI either.
    """
    raise ErrorReply(replies.IN_TRANSACTION)
