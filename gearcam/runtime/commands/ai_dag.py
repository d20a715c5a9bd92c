"""AI.DAGEXECUTE / AI.DAGEXECUTE_RO and the deprecated AI.DAGRUN / AI.DAGRUN_RO.

Tensors inside a DAG are local unless LOADed or PERSISTed. Ops run in order (a
single-shard runtime has nothing to run in parallel); model ops go through the run
queues, so they batch with other clients. If an op fails, later ops answer NA and
nothing is persisted. ROUTING is accepted and ignored: there is one shard.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.ai.service import LoadedModel, LoadedScript
from gearcam.runtime.ai.tensor import Tensor
from gearcam.runtime.commands.ai_model import parse_modelexecute, parse_modelrun
from gearcam.runtime.commands.ai_script import parse_scriptexecute, parse_scriptrun
from gearcam.runtime.commands.ai_script_host import script_host
from gearcam.runtime.commands.ai_tensor import parse_tensorget, parse_tensorset
from gearcam.runtime.commands.base import Context, as_int, upper
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = ["ai_dagexecute", "ai_dagexecute_ro", "ai_dagrun", "ai_dagrun_ro"]

_SEPARATOR = b"|>"


@dataclass
class _Op:
    name: str
    args: list[bytes]
    inputs: list[bytes] = field(default_factory=list)
    outputs: list[bytes] = field(default_factory=list)
    tensor: Tensor | None = None
    get_flags: tuple[bool, str | None] = (True, "BLOB")
    model: LoadedModel | None = None
    script: LoadedScript | None = None
    function: str = ""
    keys: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def _keys_after(args: list[bytes], position: int, keyword: str) -> tuple[list[bytes], int]:
    if len(args) - position < 3:  # RedisAI counts what follows the keyword, ops included
        raise ErrorReply(replies.dag_missing_after(keyword))
    try:
        count = int(args[position + 1])
    except ValueError:
        raise ErrorReply(replies.dag_bad_count(keyword)) from None
    if count <= 0:
        raise ErrorReply(replies.dag_bad_count(keyword))
    keys = args[position + 2 : position + 2 + count]
    if len(keys) < count or _SEPARATOR in keys:
        raise ErrorReply(replies.dag_count_mismatch(keyword))
    return keys, position + 2 + count


async def _dag(ctx: Context, args: list[bytes], command: str, read_only: bool, deprecated: bool) -> Any:
    # The shortest forms: AI.DAGEXECUTE(_RO) LOAD 1 k |> AI.TENSORGET k, AI.DAGRUN(_RO) |> AI.TENSORGET k
    if len(args) < (4 if deprecated else 6):
        raise ErrorReply(replies.arity(command) if deprecated else replies.dag_missing_arguments(command))
    load: list[bytes] = []
    persist: list[bytes] = []
    routing = False
    timeout = 0
    position = 1
    while position < len(args) and args[position] != _SEPARATOR:
        word = upper(args[position])
        if word == "LOAD":
            load, position = _keys_after(args, position, "LOAD")
        elif word == "PERSIST":
            if read_only:
                raise ErrorReply(replies.DAG_RO_PERSIST)
            persist, position = _keys_after(args, position, "PERSIST")
            if len(set(persist)) != len(persist):
                raise ErrorReply(replies.DAG_PERSIST_UNIQUE)
        elif word == "ROUTING" and not deprecated:
            if position + 1 >= len(args) or args[position + 1] == _SEPARATOR:
                raise ErrorReply(replies.DAG_MISSING_ROUTING)
            routing = True
            position += 2
        elif word == "TIMEOUT" and not deprecated:
            if position + 1 >= len(args):
                raise ErrorReply(replies.NO_TIMEOUT_VALUE)
            timeout = as_int(args[position + 1], replies.INVALID_TIMEOUT)
            if timeout <= 0:
                raise ErrorReply(replies.INVALID_TIMEOUT)
            position += 2
        else:
            raise ErrorReply(replies.dag_unexpected(args[position].decode("utf-8", "replace")))
    if not deprecated and not (load or persist or routing):
        raise ErrorReply(replies.DAG_NEEDS_SCOPE)
    if load and all(a == _SEPARATOR for a in args[position:]):
        await ctx.state.ai.tensor_get_many(ctx.link, load)  # RedisAI loads the keys before it sees no ops
    ops = await _parse_ops(ctx, args[position:], read_only, deprecated, set(load))
    for key in persist:
        if not any(key in op.outputs for op in ops):
            raise ErrorReply("ERR PERSIST key cannot be found in DAG")
    return await _run(ctx, ops, load, persist, timeout)


async def _parse_ops(
    ctx: Context, rest: list[bytes], read_only: bool, deprecated: bool, available: set[bytes]
) -> list[_Op]:
    groups: list[list[bytes]] = []
    for item in rest:
        if item == _SEPARATOR:
            groups.append([])
        else:
            if not groups:
                raise ErrorReply(replies.dag_unexpected(item.decode("utf-8", "replace")))
            groups[-1].append(item)
    groups = [g for g in groups if g]
    if not groups:
        raise ErrorReply(replies.DAG_EMPTY)
    ai = ctx.state.ai
    ops: list[_Op] = []
    for group in groups:
        name = upper(group[0])
        op = _Op(name, group)
        if deprecated and name in ("AI.MODELEXECUTE", "AI.SCRIPTEXECUTE"):
            raise ErrorReply(replies.dag_new_command_in_deprecated(name))
        if name == "AI.TENSORSET":
            key, op.tensor = parse_tensorset(group)
            op.outputs = [key]
        elif name == "AI.TENSORGET":
            key, meta, fmt = parse_tensorget(group)
            op.inputs, op.get_flags = [key], (meta, fmt)
        elif name == "AI.MODELEXECUTE" or (name == "AI.MODELRUN" and deprecated):
            if len(group) < 2:
                raise ErrorReply(replies.arity(name))
            op.model = await ai.model(ctx.link, group[1])
            n_in, n_out = len(op.model.meta.inputs), len(op.model.meta.outputs)
            if name == "AI.MODELRUN":
                op.inputs, op.outputs, timeout = parse_modelrun(group, n_in, n_out)
                if timeout:
                    raise ErrorReply(replies.DAG_TIMEOUT_INSIDE)
            else:
                op.inputs, op.outputs, _ = parse_modelexecute(group, n_in, n_out, name, in_dag=True)
        elif name == "AI.MODELRUN":
            raise ErrorReply(replies.DAG_MODELRUN)
        elif name == "AI.SCRIPTRUN" and deprecated:
            if len(group) < 3:
                raise ErrorReply(replies.arity("AI.SCRIPTRUN"))
            op.script = await ai.script(ctx.link, group[1])  # the script key first, as RedisAI
            op.inputs, op.outputs, timeout = parse_scriptrun(group)
            if timeout:
                raise ErrorReply(replies.DAG_TIMEOUT_INSIDE)
            op.function, op.keys, op.extra = group[2].decode(), [], []
        elif name == "AI.SCRIPTRUN":
            raise ErrorReply(replies.DAG_SCRIPTRUN)
        elif name == "AI.SCRIPTEXECUTE":
            if read_only:
                raise ErrorReply(replies.DAG_RO_SCRIPT)
            function, keys, op.inputs, extra, op.outputs, _ = parse_scriptexecute(group, in_dag=True)
            op.script = await ai.script(ctx.link, group[1])
            op.function, op.keys, op.extra = function.decode(), [k.decode() for k in keys], [a.decode() for a in extra]
        else:
            raise ErrorReply(replies.DAG_UNSUPPORTED)
        for key in op.inputs:
            if key not in available:
                raise ErrorReply("ERR INPUT key cannot be found in DAG")
        available.update(op.outputs)
        ops.append(op)
    return ops


async def _run(ctx: Context, ops: list[_Op], load: list[bytes], persist: list[bytes], timeout: int) -> Any:
    ai = ctx.state.ai
    deadline = time.monotonic() + timeout / 1000 if timeout else 0.0
    local: dict[bytes, Tensor] = {}
    if load:
        local.update(zip(load, await ai.tensor_get_many(ctx.link, load), strict=True))
    results: list[Any] = []
    failed = False
    for op in ops:
        if failed:
            results.append(SimpleString("NA"))
            continue
        remaining = max(1, int((deadline - time.monotonic()) * 1000)) if deadline else 0
        try:
            results.append(await _run_op(ctx, op, local, remaining))
        except (ErrorReply, AIError) as exc:
            results.append(ErrorReply(exc.message))
            failed = True
    if not failed and persist:
        await ai.tensor_set(ctx.link, [(k, local[k]) for k in persist])
    return results


async def _run_op(ctx: Context, op: _Op, local: dict[bytes, Tensor], timeout_ms: int) -> Any:
    ai = ctx.state.ai
    if op.tensor is not None:
        local[op.outputs[0]] = op.tensor
        return SimpleString("OK")
    inputs = [local[k] for k in op.inputs]
    if op.name == "AI.TENSORGET":
        meta, fmt = op.get_flags
        return inputs[0].reply(meta, fmt)
    if op.model is not None:
        result = await ai.model_run(op.model, inputs, timeout_ms)
    else:
        assert op.script is not None
        host = await script_host(ctx)
        result = await ai.script_run(op.script, op.function, inputs, op.keys, op.extra, timeout_ms, host=host)
    local.update(zip(op.outputs, result, strict=False))
    return SimpleString("OK")


async def ai_dagexecute(ctx: Context, args: list[bytes]) -> Any:
    return await _dag(ctx, args, "AI.DAGEXECUTE", read_only=False, deprecated=False)


async def ai_dagexecute_ro(ctx: Context, args: list[bytes]) -> Any:
    return await _dag(ctx, args, "AI.DAGEXECUTE_RO", read_only=True, deprecated=False)


async def ai_dagrun(ctx: Context, args: list[bytes]) -> Any:
    return await _dag(ctx, args, "AI.DAGRUN", read_only=False, deprecated=True)


async def ai_dagrun_ro(ctx: Context, args: list[bytes]) -> Any:
    return await _dag(ctx, args, "AI.DAGRUN_RO", read_only=True, deprecated=True)
