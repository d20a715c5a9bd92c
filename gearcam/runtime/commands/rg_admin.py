"""RG.* management commands: executions, sessions, requirements, configuration, cluster, memory.

Reply shapes follow RedisGears 1.2 (../shared/reference/redisgears-1.2.md and the
module's sources); a one-shard deployment answers as RedisGears does outside a cluster.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import tracemalloc
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.commands.base import Context, upper
from gearcam.runtime.commands.rg import gears_of, results_reply
from gearcam.runtime.gears import replies as rg_replies
from gearcam.runtime.gears.executions import Execution
from gearcam.runtime.gears.requirements import installed_version
from gearcam.runtime.gears.service import GearsService
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = [
    "GEARS_MODULE_VERSION", "info_sections", "rg_abortexecution", "rg_configget", "rg_configset",
    "rg_dropexecution", "rg_dumpexecutions", "rg_getexecution", "rg_getresults", "rg_getresultsblocking",
    "rg_infocluster", "rg_pydumpreqs", "rg_pydumpsessions", "rg_pystats", "rg_refreshcluster",
]  # fmt: skip

GEARS_MODULE_VERSION = 10207  # RedisGears 1.2.7, whose behaviour the runtime follows
_READ_ONLY = {"ExecutionThreads", "Plugin", "PythonInstallationDir", "CreateVenv", "OverridePythonAllocators"}


def _execution(ctx: Context, args: list[bytes], name: str, arity: tuple[int, ...] = (2,)) -> Execution:
    if len(args) not in arity:
        raise ErrorReply(replies.arity(name))
    execution = gears_of(ctx).executions.get(args[1].decode("utf-8", "replace"))
    if execution is None:
        raise ErrorReply(rg_replies.EXECUTION_NOT_FOUND)
    return execution


async def rg_dumpexecutions(ctx: Context, args: list[bytes]) -> Any:
    return [
        ["executionId", e.id, "status", e.status, "registered", int(e.registered)]
        for e in gears_of(ctx).executions.all()
    ]


async def rg_getexecution(ctx: Context, args: list[bytes]) -> Any:
    execution = _execution(ctx, args, "rg.getexecution", (2, 3))
    if len(args) == 3:
        option = upper(args[2])
        if option == "CLUSTER":
            raise ErrorReply(rg_replies.NO_CLUSTER)
        if option != "SHARD":
            raise ErrorReply(rg_replies.UNKNOWN_SUBCOMMAND)
    return [execution.plan_reply()]


async def rg_getresults(ctx: Context, args: list[bytes]) -> Any:
    execution = _execution(ctx, args, "rg.getresults")
    if not execution.done:
        raise ErrorReply(rg_replies.STILL_RUNNING)
    return results_reply(execution)


async def rg_getresultsblocking(ctx: Context, args: list[bytes]) -> Any:
    execution = _execution(ctx, args, "rg.getresultsblocking")
    await asyncio.wrap_future(execution.finished)
    return results_reply(execution)


async def rg_dropexecution(ctx: Context, args: list[bytes]) -> Any:
    execution = _execution(ctx, args, "rg.dropexecution")
    if not execution.done:
        raise ErrorReply(rg_replies.DROP_RUNNING)
    gears_of(ctx).executions.drop(execution.id)
    return SimpleString("OK")


async def rg_abortexecution(ctx: Context, args: list[bytes]) -> Any:
    if len(args) != 2:
        raise ErrorReply(replies.arity("rg.abortexecution"))
    service = gears_of(ctx)
    execution = service.executions.get(args[1].decode("utf-8", "replace"))
    if execution is None:
        raise ErrorReply(rg_replies.NO_EXECUTION)
    if not execution.done:
        task = execution.task
        if task is None:
            execution.finish("aborted")
        else:
            service.loop.call_soon_threadsafe(task.cancel)
            await asyncio.wrap_future(execution.finished)
    return SimpleString("OK")


def _requirement_entry(name: str, refs: int) -> list[Any]:
    base = name.split("==")[0].split(">")[0].split("<")[0].strip()
    version = installed_version(base)
    return [
        "GearReqVersion", 1, "Name", name, "IsDownloaded", "yes" if version else "no",
        "IsInstalled", "yes" if version else "no", "CompiledOs", f"{platform.system().lower()}-{platform.machine()}",
        "Wheels", [f"{base}=={version} (already installed; the runtime downloads nothing)"] if version else [],
        "Path", sys.prefix, "RefCount", refs, "IsInReqDictionary", "yes",
    ]  # fmt: skip


async def rg_pydumpreqs(ctx: Context, args: list[bytes]) -> Any:
    counts: dict[str, int] = {}
    for session in gears_of(ctx).sessions.values():
        for requirement in session.requirements:
            counts[requirement] = counts.get(requirement, 0) + 1
    return [_requirement_entry(name, refs) for name, refs in counts.items()]


def _session_entry(service: GearsService, session_id: str, verbose: bool) -> Any:
    session = service.sessions.get(session_id)
    if session is None:
        return rg_replies.session_missing(session_id)
    regs: list[Any] = []
    for reg_id in session.registrations:
        reg = service.registrations.get(reg_id)
        regs.append(reg.dump(with_pd=False) if verbose and reg is not None else reg_id)
    entry = session.dump(regs)
    if verbose:
        entry[13] = [_requirement_entry(r, 1) for r in session.requirements]
    return entry


async def rg_pydumpsessions(ctx: Context, args: list[bytes]) -> Any:
    service = gears_of(ctx)
    verbose = False
    i = 1
    while i < len(args) and upper(args[i]) in ("VERBOSE", "DEAD"):
        verbose = verbose or upper(args[i]) == "VERBOSE"
        i += 1
    if i < len(args):
        if upper(args[i]) != "SESSIONS":
            raise ErrorReply(rg_replies.unknown_option(args[i].decode("utf-8", "replace")))
        return [_session_entry(service, a.decode("utf-8", "replace"), verbose) for a in args[i + 1 :]]
    return [_session_entry(service, s, verbose) for s in list(service.sessions)]


async def rg_pystats(ctx: Context, args: list[bytes]) -> Any:
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
    else:
        current, peak = _rss(), _peak_rss()
    return ["TotalAllocated", peak, "PeakAllocated", peak, "CurrAllocated", current]


def _rss() -> int:
    try:
        with open("/proc/self/statm") as statm:
            import os

            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _peak_rss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


async def rg_configget(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 2:
        raise ErrorReply(replies.arity("rg.configget"))
    config = gears_of(ctx).config
    out: list[Any] = []
    for raw in args[1:]:
        key = raw.decode("utf-8", "replace")
        out.append(config[key] if key in config else ErrorReply(rg_replies.unsupported_config(key)))
    return out


async def rg_configset(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 3 or len(args) % 2 == 0:
        raise ErrorReply(replies.arity("rg.configset"))
    service = gears_of(ctx)
    out: list[Any] = []
    for i in range(1, len(args), 2):
        key, raw = args[i].decode("utf-8", "replace"), args[i + 1].decode("utf-8", "replace")
        if key in _READ_ONLY:
            out.append(ErrorReply(rg_replies.config_set_failed(key)))
        elif key in service.config and isinstance(service.config[key], int):
            try:
                service.config[key] = int(raw)
                out.append(SimpleString("OK"))
            except ValueError:
                out.append(ErrorReply(rg_replies.config_set_failed(key)))
        elif key in service.config:
            service.config[key] = raw
            out.append(SimpleString("OK"))
        else:
            service.config[key] = raw
            out.append(SimpleString(rg_replies.USER_CONFIG_SAVED))
    service.executions.limit = int(service.config["MaxExecutions"])
    return out


async def rg_infocluster(ctx: Context, args: list[bytes]) -> Any:
    gears_of(ctx)
    return SimpleString("no cluster mode")


async def rg_refreshcluster(ctx: Context, args: list[bytes]) -> Any:
    gears_of(ctx)
    return SimpleString("OK")


def info_sections(service: GearsService) -> list[tuple[str, list[tuple[str, Any]]]]:
    """INFO MODULES sections of `rg`: counts, like RedisGears' own info fields."""
    executions = service.executions.all()
    return [("stats", [
        ("nregistrations", len(service.registrations)), ("nsessions", len(service.sessions)),
        ("nexecutions", len(executions)), ("nrunning", sum(1 for e in executions if not e.done)),
        ("stream_workers", len(service.workers)),
    ])]  # fmt: skip
