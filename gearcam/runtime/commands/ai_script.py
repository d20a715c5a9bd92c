"""AI.SCRIPT* commands: TorchScript functions, served when PyTorch is installed.

Scripts' `redis.execute` and `redisAI.model_execute` reach the calling client's Redis
through commands/ai_script_host.py.
"""

from __future__ import annotations

from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.ai import store
from gearcam.runtime.ai.store import ScriptMeta
from gearcam.runtime.commands.ai_model import parse_timeout, queued_delete, queued_store
from gearcam.runtime.commands.ai_script_host import script_host
from gearcam.runtime.commands.base import Context, Queued, as_int, token, upper
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = [
    "ai_scriptdel",
    "ai_scriptexecute",
    "ai_scriptget",
    "ai_scriptrun",
    "ai_scriptscan",
    "ai_scriptset",
    "ai_scriptstore",
    "parse_scriptexecute",
    "parse_scriptrun",
    "queue_scriptdel",
    "queue_scriptget",
    "queue_scriptset",
    "queue_scriptstore",
]


def _meta(args: list[bytes], command: str) -> tuple[ScriptMeta, int]:
    if len(args) < 4:
        raise ErrorReply(replies.arity(command))
    meta = ScriptMeta(device=args[2].decode("utf-8", "replace"))
    position = 3
    if token(args, position) == "TAG" and position + 1 < len(args):
        meta.tag = args[position + 1].decode("utf-8", "replace")
        position += 2
    return meta, position


def _source(args: list[bytes], position: int) -> str:
    if token(args, position) != "SOURCE" or position + 1 >= len(args):
        raise ErrorReply(replies.SCRIPT_NO_SOURCE)
    return args[position + 1].decode("utf-8", "replace")


def parse_scriptstore(args: list[bytes]) -> tuple[bytes, ScriptMeta, str]:
    if len(args) < 8:  # AI.SCRIPTSTORE key device ENTRY_POINTS 1 ep SOURCE text
        raise ErrorReply(replies.arity("AI.SCRIPTSTORE"))
    meta, position = _meta(args, "AI.SCRIPTSTORE")
    if token(args, position) != "ENTRY_POINTS" or position + 1 >= len(args):
        raise ErrorReply(replies.SCRIPT_NO_ENTRY_POINTS)
    count = as_int(args[position + 1], replies.SCRIPT_ENTRY_POINTS_NUMBER)
    names = args[position + 2 : position + 2 + count]
    if len(names) < count:
        raise ErrorReply(replies.SCRIPT_NO_ENTRY_POINTS)
    meta.entry_points = [n.decode("utf-8", "replace") for n in names]
    return args[1], meta, _source(args, position + 2 + count)


def parse_scriptset(args: list[bytes]) -> tuple[bytes, ScriptMeta, str]:
    meta, position = _meta(args, "AI.SCRIPTSET")
    return args[1], meta, _source(args, position)


async def ai_scriptstore(ctx: Context, args: list[bytes]) -> Any:
    await ctx.state.ai.script_store(ctx.link, *parse_scriptstore(args))
    return SimpleString("OK")


async def ai_scriptset(ctx: Context, args: list[bytes]) -> Any:
    await ctx.state.ai.script_store(ctx.link, *parse_scriptset(args))
    return SimpleString("OK")


async def queue_scriptstore(ctx: Context, args: list[bytes]) -> Queued:
    prepared = await ctx.state.ai.prepare_script(*parse_scriptstore(args))
    return queued_store(ctx, prepared, store.KIND_SCRIPT)


async def queue_scriptset(ctx: Context, args: list[bytes]) -> Queued:
    prepared = await ctx.state.ai.prepare_script(*parse_scriptset(args))
    return queued_store(ctx, prepared, store.KIND_SCRIPT)


async def ai_scriptget(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 2:
        raise ErrorReply(replies.arity("AI.SCRIPTGET"))
    meta, source = await ctx.state.ai.script_get(ctx.link, args[1])
    return _scriptget_reply(meta, source, args)


def _scriptget_reply(meta: ScriptMeta, source: str, args: list[bytes]) -> Any:
    flags = {upper(a) for a in args[2:]}
    if flags == {"SOURCE"}:
        return source
    reply: list[Any] = ["device", meta.device, "tag", meta.tag, "Entry Points", meta.entry_points]
    if "META" not in flags or "SOURCE" in flags:
        reply += ["source", source]
    return reply


async def ai_scriptdel(ctx: Context, args: list[bytes]) -> Any:
    if len(args) != 2:
        raise ErrorReply(replies.arity("AI.SCRIPTDEL"))
    await ctx.state.ai.script_del(ctx.link, args[1])
    return SimpleString("OK")


# Inside MULTI: queued in the client's transaction, applied at EXEC in place
# (docs/runtime.md, "`AI.*` and `RG.*` inside `MULTI`").


def queue_scriptget(ctx: Context, args: list[bytes]) -> Queued:
    if len(args) < 2:
        raise ErrorReply(replies.arity("AI.SCRIPTGET"))

    reply = store.stored_reply(args[1], "script", store.decode_script, lambda m: _scriptget_reply(*m, args))
    return Queued(store.queued_step(b"get", args[1], store.KIND_SCRIPT, replies.SCRIPT_EMPTY.encode()), reply)


def queue_scriptdel(ctx: Context, args: list[bytes]) -> Queued:
    if len(args) != 2:
        raise ErrorReply(replies.arity("AI.SCRIPTDEL"))
    return queued_delete(ctx, args[1], store.KIND_SCRIPT, replies.SCRIPT_EMPTY)


_SCOPES = ("KEYS", "INPUTS", "ARGS", "OUTPUTS")
# RedisAI's texts name ARGS counts "keys count" too.
_COUNT_NOUN = {"KEYS": "keys", "INPUTS": "inputs", "ARGS": "keys", "OUTPUTS": "outputs"}
_MISMATCH_NOUN = {"KEYS": "keys", "INPUTS": "inputs", "ARGS": "args", "OUTPUTS": "outputs"}


def _scope(args: list[bytes], position: int, name: str) -> tuple[list[bytes], int]:
    """The items of the scope whose keyword was just before `position`, checked in RedisAI 1.2.7's order and words."""
    if name == "KEYS":
        if len(args) - position + 1 < 3:
            raise ErrorReply("ERR Missing arguments after KEYS keyword")
        declared = as_int(args[position], "ERR Invalid or negative value found in number of KEYS")
        if declared <= 0:
            raise ErrorReply("ERR Invalid or negative value found in number of KEYS")
        if position + 1 + declared > len(args):
            raise ErrorReply(
                "ERR Number of pre declared KEYS to be used in the command does not match the number of given arguments"
            )
    if position >= len(args):
        raise ErrorReply("ERR Invalid arguments provided to AI.SCRIPTEXECUTE")
    count = as_int(args[position], f"ERR Invalid argument for {_COUNT_NOUN[name]} count in AI.SCRIPTEXECUTE")
    if position + 1 + count > len(args):
        raise ErrorReply(
            f"ERR number of {_MISMATCH_NOUN[name]} to AI.SCRIPTEXECUTE command does not match the number of given "
            "arguments"
        )
    count = max(count, 0)
    return args[position + 1 : position + 1 + count], position + 1 + count


def parse_scriptexecute(
    args: list[bytes], in_dag: bool = False
) -> tuple[bytes, list[bytes], list[bytes], list[bytes], list[bytes], int]:
    """Function, KEYS, INPUTS, ARGS, OUTPUTS and TIMEOUT of `AI.SCRIPTEXECUTE key fn ...`.

    Scopes come in any order (KEYS or INPUTS first outside a DAG), each once; TIMEOUT ends the command.
    """
    if len(args) < 4:
        raise ErrorReply(replies.arity("AI.SCRIPTEXECUTE"))
    if not in_dag and token(args, 3) not in ("KEYS", "INPUTS"):
        raise ErrorReply(replies.SCRIPT_SCOPE_FIRST)
    found: dict[str, list[bytes]] = {}
    timeout, position = 0, 3
    while position < len(args):
        word = upper(args[position])
        position += 1
        if word == "TIMEOUT":
            if position >= len(args):
                raise ErrorReply("ERR No value provided for TIMEOUT in AI.SCRIPTEXECUTE")
            timeout = as_int(args[position], replies.INVALID_TIMEOUT)
            if timeout <= 0:
                raise ErrorReply(replies.INVALID_TIMEOUT)
            if in_dag:
                raise ErrorReply(replies.DAG_TIMEOUT_INSIDE)
            position += 1
            break
        if word not in _SCOPES:
            unexpected = args[position - 1].decode("utf-8", "replace")
            raise ErrorReply(f"ERR Invalid AI.SCRIPTEXECUTE command. Unexpected argument: {unexpected}")
        if word in found:
            raise ErrorReply(f"ERR Already Encountered {word} scope in AI.SCRIPTEXECUTE command")
        found[word], position = _scope(args, position, word)
    if position != len(args):
        raise ErrorReply("ERR Encountered problem parsing AI.SCRIPTEXECUTE")
    keys, inputs, extra, outputs = (found.get(name, []) for name in _SCOPES)
    return args[2], keys, inputs, extra, outputs, timeout


async def _run(ctx: Context, key: bytes, function: bytes, inputs: list[bytes], keys: list[bytes],
               extra: list[bytes], outputs: list[bytes], timeout: int) -> Any:  # fmt: skip
    ai = ctx.state.ai
    script = await ai.script(ctx.link, key)
    tensors = await ai.tensor_get_many(ctx.link, inputs) if inputs else []
    result = await ai.script_run(
        script, function.decode(), tensors, [k.decode() for k in keys], [a.decode() for a in extra], timeout,
        host=await script_host(ctx),
    )  # fmt: skip
    await ai.tensor_set(ctx.link, list(zip(outputs, result, strict=False)))
    return SimpleString("OK")


async def ai_scriptexecute(ctx: Context, args: list[bytes]) -> Any:
    if len(args) >= 4:
        await ctx.state.ai.script(ctx.link, args[1])  # the script key first, as RedisAI
    function, keys, inputs, extra, outputs, timeout = parse_scriptexecute(args)
    return await _run(ctx, args[1], function, inputs, keys, extra, outputs, timeout)


def parse_scriptrun(args: list[bytes]) -> tuple[list[bytes], list[bytes], int]:
    """Inputs, outputs and TIMEOUT of the deprecated `AI.SCRIPTRUN key fn [TIMEOUT t] INPUTS [$] in... OUTPUTS out...`.

    Checked in RedisAI 1.2.7's order and words; `$` marks where a variadic list starts (once, among inputs).
    """
    inputs: list[bytes] = []
    outputs: list[bytes] = []
    timeout, is_input, is_output, inputs_done, variadic = 0, False, False, False, False
    position = 3
    while position < len(args):
        word = upper(args[position])
        if word == "TIMEOUT":
            if timeout:
                raise ErrorReply("ERR Already encountered an TIMEOUT section in SCRIPTRUN")
            timeout, position = parse_timeout(args, position)
            continue
        position += 1
        if word == "INPUTS":
            if inputs_done:
                raise ErrorReply("ERR Already encountered an INPUTS section in SCRIPTRUN")
            if is_input:
                raise ErrorReply("ERR Already encountered an INPUTS keyword in SCRIPTRUN")
            is_input, is_output = True, False
        elif word == "OUTPUTS":
            if is_output:
                raise ErrorReply("ERR Already encountered an OUTPUTS keyword in SCRIPTRUN")
            is_input, is_output, inputs_done = False, True, True
        elif word == "$":
            if not is_input:
                raise ErrorReply("ERR Encountered a variable size list of tensors outside of input section")
            if variadic:
                raise ErrorReply("ERR Already encountered a variable size list of tensors")
            variadic = True
        elif is_input:
            inputs.append(args[position - 1])
        elif is_output:
            outputs.append(args[position - 1])
        else:
            raise ErrorReply("ERR Unrecongnized parameter to SCRIPTRUN")  # sic, RedisAI's spelling
    return inputs, outputs, timeout


async def ai_scriptrun(ctx: Context, args: list[bytes]) -> Any:
    """Deprecated: `AI.SCRIPTRUN key fn [TIMEOUT t] INPUTS in... OUTPUTS out...`."""
    if len(args) < 4:
        raise ErrorReply(replies.arity("AI.SCRIPTRUN"))
    await ctx.state.ai.script(ctx.link, args[1])  # the script key first, as RedisAI
    inputs, outputs, timeout = parse_scriptrun(args)
    return await _run(ctx, args[1], args[2], inputs, [], [], outputs, timeout)


async def ai_scriptscan(ctx: Context, args: list[bytes]) -> Any:
    return [[s.key, s.tag] for s in await ctx.state.ai.scan(ctx.link, "SCRIPT")]
