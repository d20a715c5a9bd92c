"""RG.* management commands: executions, sessions, requirements, configuration, cluster, memory.

Reply shapes follow RedisGears 1.2 (../shared/reference/redisgears-1.2.md and the
module's sources); executions stay on this shard, the links to other shards are gears/cluster.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.commands.base import Context, upper
from gearcam.runtime.commands.rg import gears_of, results_reply
from gearcam.runtime.gears import replies as rg_replies
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.gears.cluster import NETWORK_TEST
from gearcam.runtime.gears.executions import Execution
from gearcam.runtime.gears.requirements import GearsEnv
from gearcam.runtime.gears.service import GearsService
from gearcam.runtime.gears.workers import rss_bytes
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = [
    "GEARS_MODULE_VERSION", "info_sections", "rg_abortexecution", "rg_configget", "rg_configset",
    "rg_dropexecution", "rg_dumpexecutions", "rg_getexecution", "rg_getresults", "rg_getresultsblocking",
    "rg_infocluster", "rg_pydumpreqs", "rg_pydumpsessions", "rg_pyexportreq", "rg_pyimportreq", "rg_pyprofile",
    "rg_pystats", "rg_refreshcluster", "rg_networktest", "rg_dumpplugins", "rg_clusterset", "rg_clustersetfromshard",
    "rg_hello", "rg_innermsgcommand", "rg_pyexecuteremote", "rg_pyfreeinterpreter",
]  # fmt: skip

GEARS_MODULE_VERSION = 10207  # RedisGears 1.2.7, whose behaviour the runtime follows
PYTHON_PLUGIN, PYTHON_PLUGIN_VERSION = "GearsPythonPlugin", 10000  # its Python plugin's name and version (1.0.0)
_READ_ONLY = {
    "ExecutionThreads",
    "Plugin",
    "PythonInstallationDir",
    "CreateVenv",
    "OverridePythonAllocators",
    "DependenciesUrl",
    "DependenciesSha256",
}


def _execution(ctx: Context, args: list[bytes], name: str, arity: tuple[int, ...] = (2,)) -> Execution:
    if len(args) not in arity:
        raise ErrorReply(replies.arity(name))
    execution = gears_of(ctx).executions.get(args[1].decode("utf-8", "replace"))
    if execution is None:
        raise ErrorReply(rg_replies.EXECUTION_NOT_FOUND)
    return execution


async def rg_dumpexecutions(ctx: Context, args: list[bytes]) -> Any:
    if not ctx.in_multi:  # inside a transaction it runs at EXEC, after the writes queued before it
        await gears_of(ctx).triggered(ctx.link)
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
        await service.call(service.abort(execution))
        await asyncio.wrap_future(execution.finished)
    return SimpleString("OK")


def _env(service: GearsService) -> GearsEnv:
    if service.env is None:
        raise ErrorReply("ERR the Gears virtualenv is not ready yet")
    return service.env


def _requirement_counts(service: GearsService) -> dict[str, int]:
    """Sessions using each requirement (RefCount); an imported one no session uses yet counts 0."""
    counts: dict[str, int] = dict.fromkeys(service.env.imported, 0) if service.env is not None else {}
    for session in service.sessions.values():
        for requirement in session.requirements:
            counts[requirement] = counts.get(requirement, 0) + 1
    return counts


async def rg_pydumpreqs(ctx: Context, args: list[bytes]) -> Any:
    service = gears_of(ctx)
    env = _env(service)
    return [env.entry(name, refs) for name, refs in _requirement_counts(service).items()]


async def rg_pyexportreq(ctx: Context, args: list[bytes]) -> Any:
    if len(args) != 2:
        raise ErrorReply(replies.arity("rg.pyexportreq"))
    service = gears_of(ctx)
    env = _env(service)
    name = args[1].decode("utf-8", "replace")
    counts = _requirement_counts(service)
    if name in counts or env.wheels(name):  # (an unknown name downloads nothing)
        try:
            await env.fetch_wheels(name)
        except GearsError as exc:
            raise ErrorReply(str(exc)) from None
    if not env.wheels(name):
        raise ErrorReply(f"Could not find requirement {name}")
    return [env.entry(name, counts.get(name, 0)), env.export(name)]


async def rg_pyimportreq(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 2:
        raise ErrorReply(replies.arity("rg.pyimportreq"))
    try:
        await _env(gears_of(ctx)).import_(args[1:])
    except GearsError as exc:
        raise ErrorReply(str(exc)) from None
    return SimpleString("OK")


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
        entry[13] = [_env(service).entry(r, 1) for r in session.requirements]
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
    """The Gears workers' memory (resident size now, and the peak seen), where scripts' Python allocates."""
    service = gears_of(ctx)
    return [item for pair in _memory(service) for item in pair]


def _memory(service: GearsService) -> list[tuple[str, int]]:
    """RedisGears' allocator figures, here the Gears workers' resident memory (now, and the peak seen)."""
    current = sum(rss_bytes(w.pid) for w in list(service.processes.values()) if w.alive and w.pid)
    service.peak_memory = max(service.peak_memory, current)
    return [("TotalAllocated", service.peak_memory), ("PeakAllocated", service.peak_memory), ("CurrAllocated", current)]


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
                value = int(raw)
                if value < 0 and key == "SendMsgRetries":  # RedisGears' setter refuses it (0 is no limit)
                    raise ValueError(raw)
                service.config[key] = value
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
    service.configure()
    return out


async def rg_pyprofile(ctx: Context, args: list[bytes]) -> Any:
    """RG.PYPROFILE STATS <session> [order] | RESET <session>: cProfile of the session's steps (ProfileExecutions)."""
    if len(args) < 3:
        raise ErrorReply(replies.arity("rg.pyprofile"))
    action = upper(args[1])
    if action not in ("STATS", "RESET"):
        raise ErrorReply(rg_replies.unknown_option(args[1].decode("utf-8", "replace")))
    service = gears_of(ctx)
    session = service.sessions.get(args[2].decode("utf-8", "replace"))
    if session is None:
        raise ErrorReply(rg_replies.session_missing(args[2].decode("utf-8", "replace")))
    order = args[3].decode("utf-8", "replace") if len(args) > 3 else "cumtime"
    try:
        worker = await service.call(service.worker_for(session.owner))
        reply = await service.call(worker.request("profile", (action, session.token, order)))
    except GearsError as exc:
        raise ErrorReply(str(exc)) from None
    return SimpleString(reply) if action == "RESET" else reply


async def rg_infocluster(ctx: Context, args: list[bytes]) -> Any:
    """`no cluster mode` until a topology of more than one shard is set (RG.CLUSTERSET), then the shards."""
    return gears_of(ctx).shards.info()


async def rg_refreshcluster(ctx: Context, args: list[bytes]) -> Any:
    """Outside Redis Cluster RedisGears forgets the topology it was given and takes a new run id."""
    gears_of(ctx).shards.refresh()
    return SimpleString("OK")


async def rg_networktest(ctx: Context, args: list[bytes]) -> Any:
    """RedisGears sends a test message to every other shard and answers OK at once; with none, sends nothing."""
    gears_of(ctx).shards.send(NETWORK_TEST, b"test")
    return SimpleString("OK")


async def rg_clusterset(ctx: Context, args: list[bytes]) -> Any:
    """Redis Enterprise's topology for RedisGears: replaces the one in force (docs/gears.md, "One shard")."""
    _shards_answer(gears_of(ctx).shards.set, args, True)
    return SimpleString("OK")


async def rg_clustersetfromshard(ctx: Context, args: list[bytes]) -> Any:
    """A topology another shard sends after this one answered ERRCLUSTER: taken only if none is set."""
    _shards_answer(gears_of(ctx).shards.set, args, False)
    return SimpleString("OK")


async def rg_hello(ctx: Context, args: list[bytes]) -> Any:
    """Another shard asks this one's run id: a new id tells it this shard restarted and lost its messages."""
    return _shards_answer(gears_of(ctx).shards.hello)


async def rg_innermsgcommand(ctx: Context, args: list[bytes]) -> Any:
    """A numbered message from another shard (sender id, its run id, function, payload, message id)."""
    if len(args) != 6:
        raise ErrorReply(replies.arity("rg.innermsgcommand"))
    return _shards_answer(gears_of(ctx).shards.receive, *args[1:])


def _shards_answer(call: Callable[..., Any], *args: Any) -> Any:
    """The shard links' answer; their refusal (RedisGears' text) as the error reply."""
    try:
        return call(*args)
    except GearsError as exc:
        raise ErrorReply(str(exc)) from None


async def rg_pyexecuteremote(ctx: Context, args: list[bytes]) -> Any:
    """Retired in RedisGears 1.2 but still registered: it answers so (a bulk string) whatever its arguments."""
    return rg_replies.NO_EXECUTE_REMOTE.encode()


async def rg_pyfreeinterpreter(ctx: Context, args: list[bytes]) -> Any:
    """Retired in RedisGears 1.2 (it finalized the interpreter): answers so and frees nothing."""
    return rg_replies.NO_FREE_INTERPRETER.encode()


async def rg_dumpplugins(ctx: Context, args: list[bytes]) -> Any:
    """The plugins RedisGears loaded: the Python plugin, whose API the Gears workers serve, and its version."""
    gears_of(ctx)
    return [[PYTHON_PLUGIN, PYTHON_PLUGIN_VERSION]]


def info_sections(service: GearsService) -> list[tuple[str, list[tuple[str, Any]]]]:
    """INFO MODULES sections of `rg`: counts, like RedisGears' own info fields."""
    executions = service.executions.all()
    return [("stats", [
        *_memory(service),
        ("nregistrations", len(service.registrations)), ("nsessions", len(service.sessions)),
        ("nexecutions", len(executions)), ("nrunning", sum(1 for e in executions if not e.done)),
        ("stream_workers", len(service.workers)),
        ("worker_processes", sum(1 for w in list(service.processes.values()) if w.alive)),
    ])]  # fmt: skip
