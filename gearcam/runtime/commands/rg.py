"""RG.PYEXECUTE, RG.TRIGGER(ONKEY), RG.UNREGISTER and RG.DUMPREGISTRATIONS: argument checks and reply shapes.

Error texts are RedisGears 1.2's (they carry no ERR prefix, as the module sends them).
Executions and registrations live in gears/; these handlers only translate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.commands.base import Context, upper
from gearcam.runtime.gears import lifecycle
from gearcam.runtime.gears import replies as rg_replies
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.gears.executions import Execution
from gearcam.runtime.gears.records import from_redis
from gearcam.runtime.gears.service import GearsService, check_nesting, hook_reply
from gearcam.runtime.resp import Double, ErrorReply, SimpleString

__all__ = [
    "gears_of", "rg_clearregistrationsstats", "rg_dumpregistrations", "rg_pauseregistrations", "rg_pyexecute",
    "rg_pyexecute_in_transaction", "rg_trigger", "rg_trigger_in_transaction", "rg_triggeronkey",
    "rg_triggeronkey_in_transaction", "rg_unpauseregistrations",
    "rg_unregister", "to_reply",
]  # fmt: skip

logger = logging.getLogger(__name__)

_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def gears_of(ctx: Context) -> GearsService:
    service: GearsService | None = ctx.state.gears
    if service is None:
        raise ErrorReply("ERR the Gears service of the runtime is not running")
    return service


def to_reply(value: Any) -> Any:
    """A result record (plain data from a worker, records.plain) as RESP: floats as doubles."""
    if isinstance(value, float):
        return Double(value)
    if isinstance(value, list):
        return [to_reply(v) for v in value]
    return value


def results_reply(execution: Execution) -> list[Any]:
    return [[to_reply(r) for r in execution.results], list(execution.errors)]


def parse_pyexecute(args: list[bytes]) -> lifecycle.PyExecute:
    if len(args) < 2:
        raise ErrorReply(replies.arity("rg.pyexecute"))
    request = lifecycle.PyExecute(args[1].decode("utf-8", "replace"))
    i = 2
    while i < len(args):
        option = upper(args[i])
        if option == "UNBLOCKING":
            request.unblocking = True
        elif option == "UPGRADE":
            request.upgrade = True
        elif option == "FORCE_REINSTALL_REQUIREMENTS":
            request.force_reinstall = True
        elif option in ("REPLACE_WITH", "ID", "DESCRIPTION"):
            i += 1
            if i >= len(args):
                raise ErrorReply(rg_replies.missing(option))
            value = args[i].decode("utf-8", "replace")
            if option == "ID":
                if not value or not set(value) <= _ID_CHARS:
                    raise ErrorReply(rg_replies.ID_CHARS)
                request.session_id = value
            elif option == "DESCRIPTION":
                request.description = value
            else:
                request.replace_with = value
        elif option == "REQUIREMENTS":
            request.requirements = tuple(a.decode("utf-8", "replace") for a in args[i + 1 :])
            break
        else:
            raise ErrorReply(rg_replies.unknown_arguments(args[i].decode("utf-8", "replace")))
        i += 1
    return request


async def owner_of(ctx: Context) -> str:
    """The ACL user of this client: Gears code it loads runs with that user's rights.

    Known from the client's AUTH/HELLO (its link may be the runtime's own, see connection.py)."""
    return ctx.user


async def rg_pyexecute(ctx: Context, args: list[bytes]) -> Any:
    request = parse_pyexecute(args)
    service = gears_of(ctx)
    request.owner = await owner_of(ctx)
    try:
        outcome = await lifecycle.pyexecute(service, request)
    except GearsError as exc:
        raise ErrorReply(str(exc)) from None
    if isinstance(outcome, str):
        return SimpleString(outcome)
    if request.unblocking:
        return outcome.id
    await asyncio.wrap_future(outcome.finished)
    service.executions.drop(outcome.id)  # as RedisGears frees a blocking run() once it has answered
    await service.sync_settle(ctx.link)  # inside Redis its writes' sync registrations ran inside it
    return results_reply(outcome)


async def rg_pyexecute_in_transaction(ctx: Context, args: list[bytes]) -> Any:
    """RG.PYEXECUTE sent inside MULTI: queued, and at EXEC RedisGears' refusal in its place (the rest commits)."""
    raise ErrorReply(rg_replies.GEARS_CANNOT_BLOCK)


async def rg_trigger(ctx: Context, args: list[bytes]) -> Any:
    return await _trigger(ctx, args, in_transaction=False)


async def rg_trigger_in_transaction(ctx: Context, args: list[bytes]) -> Any:
    """RG.TRIGGER sent inside MULTI, run at EXEC: as RedisGears, sync registrations only, and their steps may
    not create async records (isAsyncAllow() is False)."""
    return await _trigger(ctx, args, in_transaction=True)


async def rg_triggeronkey(ctx: Context, args: list[bytes]) -> Any:
    """RG.TRIGGERONKEY trigger key [arg ...]: RG.TRIGGER whose first argument Redis knows as a key.

    RedisGears registers it with the same handler and a key at position 2, so a cluster client
    routes it to the key's shard, and ACL key rules apply to it (the ACL table in acl.py). The
    execution's record is RG.TRIGGER's: the trigger's name, the key, the other arguments.
    """
    return await _trigger(ctx, args, in_transaction=False, name="rg.triggeronkey")


async def rg_triggeronkey_in_transaction(ctx: Context, args: list[bytes]) -> Any:
    """RG.TRIGGERONKEY inside MULTI: at EXEC, as RG.TRIGGER there."""
    return await _trigger(ctx, args, in_transaction=True, name="rg.triggeronkey")


async def _trigger(ctx: Context, args: list[bytes], in_transaction: bool, name: str = "rg.trigger") -> Any:
    if len(args) < 2:
        raise ErrorReply(replies.arity(name))
    service = gears_of(ctx)
    trigger = args[1].decode("utf-8", "replace")
    with service.lock:
        found = [r for r in service.registrations.values() if r.reader == "CommandReader" and r.active]
    reg = next((r for r in found if r.args["trigger"] == trigger), None)
    if reg is None:
        raise ErrorReply(rg_replies.SUBCOMMAND_NOT_FOUND)
    if in_transaction and reg.mode != "sync":
        raise ErrorReply(rg_replies.NON_SYNC_IN_TRANSACTION)
    depth = service.nested_depth(ctx.caller)
    check_nesting(depth)
    record = [trigger, *(from_redis(a) for a in args[2:])]
    execution: Execution = await service.call(
        service.run_registration(reg, [record], no_async=in_transaction, depth=depth, parent=ctx.caller)
    )
    if not in_transaction:  # (EXEC waits for what the whole transaction triggered)
        await service.sync_settle(ctx.link)
    if execution.errors:
        raise ErrorReply(execution.errors[0])
    return [hook_reply(to_reply(r)) for r in execution.results]  # '+OK' a status, as RedisGears replies it


async def rg_unregister(ctx: Context, args: list[bytes]) -> Any:
    if len(args) not in (2, 3):
        raise ErrorReply(replies.arity("rg.unregister"))
    try:
        abort_pending = len(args) == 3 and args[2].upper() == b"ABORTPENDING"
        await lifecycle.unregister(gears_of(ctx), args[1].decode("utf-8", "replace"), abort_pending)
    except GearsError as exc:
        raise ErrorReply(str(exc)) from None
    return SimpleString("OK")


async def _pause_or_unpause(ctx: Context, args: list[bytes], pause: bool) -> Any:
    name = "rg.pauseregistrations" if pause else "rg.unpauseregistrations"
    if len(args) != 2:
        raise ErrorReply(replies.arity(name))
    reg_id = args[1].decode("utf-8", "replace")
    if pause and reg_id.upper() == "ABORTPENDING":
        raise ErrorReply("ERR no registration to pause")
    service = gears_of(ctx)
    reg = service.registrations.get(reg_id)
    if reg is None:
        raise ErrorReply(rg_replies.no_such_registration(reg_id))
    if reg.reader != "StreamReader":
        raise ErrorReply(f"Reader {reg.reader} does not support {'pause' if pause else 'unpause'}")
    await (service.pause(reg) if pause else service.unpause(reg))
    return SimpleString("OK")


async def rg_pauseregistrations(ctx: Context, args: list[bytes]) -> Any:
    return await _pause_or_unpause(ctx, args, pause=True)


async def rg_unpauseregistrations(ctx: Context, args: list[bytes]) -> Any:
    return await _pause_or_unpause(ctx, args, pause=False)


async def rg_clearregistrationsstats(ctx: Context, args: list[bytes]) -> Any:
    if len(args) != 1:
        raise ErrorReply(replies.arity("rg.clearregistrationsstats"))
    service = gears_of(ctx)
    with service.lock:
        for reg in service.registrations.values():
            reg.clear_stats()
    return SimpleString("OK")


async def rg_dumpregistrations(ctx: Context, args: list[bytes]) -> Any:
    service = gears_of(ctx)
    if not ctx.in_multi:  # inside a transaction it runs at EXEC, after the writes queued before it
        await service.triggered(ctx.link)
    with service.lock:
        regs = list(service.registrations.values())
    return [reg.dump() for reg in regs]
