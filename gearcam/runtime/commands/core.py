"""Plain Redis commands the runtime must answer itself: TYPE (module type names), INFO, MODULE LIST, SLOWLOG, CONFIG,
SHUTDOWN.

Each is relayed to the backing Redis and only amended, so every other field is the
real server's.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

from gearcam.errors import NetworkError
from gearcam.runtime import own_settings, replies
from gearcam.runtime.ai import store
from gearcam.runtime.ai.kinds import of_kind, typed_scan
from gearcam.runtime.commands.base import Context, Queued, upper
from gearcam.runtime.commandstats import OWN
from gearcam.runtime.resp import Encoded, ErrorReply, SimpleString, Verbatim, plain_reply
from gearcam.runtime.state import ModuleInfo, RuntimeState

__all__ = [
    "amend_for_gears", "config", "debug", "info", "loaded_modules", "module", "queue_type", "scan", "shutdown",
    "slowlog", "type_",
]  # fmt: skip

logger = logging.getLogger(__name__)


async def type_(ctx: Context, args: list[bytes]) -> Any:
    if len(args) != 2:
        raise ErrorReply(replies.arity("type"))
    return SimpleString(await store.type_of(ctx.link, args[1], quiet=False))


def queue_type(ctx: Context, args: list[bytes]) -> Queued:
    """TYPE inside MULTI: RedisAI's type names too, at its point in the transaction (Redis checks its arity)."""
    return Queued(store.queued_type(args[1]) if len(args) == 2 else tuple(args))


async def scan(ctx: Context, args: list[bytes]) -> Any:
    """SCAN ... TYPE AI_TENSOR (AI__MODEL, AI_SCRIPT) finds the stored AI objects, and TYPE string no longer does.

    On Redis with RedisAI they are keys of the module's types, not strings. The backing Redis is
    asked for strings, and the head of each is read (one pipelined round trip per page); the
    cursor is Redis', so a page may hold fewer keys, as SCAN allows. Without TYPE, relayed as it is.
    """
    typed = typed_scan(args)
    if typed is None:
        return Encoded(await ctx.link.call_raw(args, own=False))
    relayed, kind = typed
    cursor, keys = await ctx.link.call(*relayed, own=False)
    return [cursor, of_kind(keys, await store.heads_of(ctx.link, keys), kind)]


def _module_lines(modules: list[ModuleInfo]) -> str:
    return "".join(
        f"module:name={name},ver={version},api=1,filters=0,usedby=[],using=[],options=[]\r\n"
        for name, version, _ in modules
    )


def _sections(modules: list[ModuleInfo]) -> str:
    out = []
    for name, _, sections in modules:
        for section, fields in sections():
            out.append(f"# {name}_{section}\r\n")
            out.extend(f"{name}_{key}:{value}\r\n" for key, value in fields)
            out.append("\r\n")
    return "".join(out)


_TOTALS = re.compile(r"(total_commands_processed|total_error_replies|rejected_connections):(\d+)")
_MAXCLIENTS = re.compile(r"^maxclients:\d+", re.MULTILINE)
# Counted by the runtime alone: the backing Redis' count is of the runtime's links (one per client, and its own).
_RECEIVED = re.compile(r"^total_connections_received:\d+", re.MULTILINE)
_OPS = re.compile(r"^instantaneous_ops_per_sec:(\d+)", re.MULTILINE)
_TCP_PORT = re.compile(r"^tcp_port:\d+", re.MULTILINE)
_CLIENT_COUNTS = re.compile(r"^(connected_clients|blocked_clients):(\d+)", re.MULTILINE)


def _section(body: str, name: str) -> tuple[int, int] | None:
    """Where the lines of INFO's section `name` start and end in `body`; None if it is not there."""
    header = f"# {name}\r\n"
    if header not in body:
        return None
    start = body.index(header) + len(header)
    end = body.find("\r\n\r\n", start - 2)
    return start, len(body) if end < 0 else end + 2


async def _without_internal_links(state: RuntimeState, body: str) -> str:
    """INFO clients without the runtime's own links (key events, ACL checks, Gears workers...), which CLIENT LIST
    leaves out too: on Redis a module's work is no client."""
    connected, blocked = await state.internal_clients()
    less = {"connected_clients": connected, "blocked_clients": blocked}
    return _CLIENT_COUNTS.sub(lambda m: f"{m[1]}:{max(int(m[2]) - less[m[1]], 0)}", body, 2)


def _info_wanted(args: list[bytes]) -> set[str]:
    return {a.decode("utf-8", "replace").lower() for a in args[1:]} or {"default"}


async def info(ctx: Context, args: list[bytes]) -> Any:
    if _info_wanted(args) & {"default", "all", "everything", "clients"}:
        try:  # opened before INFO counts the clients, so that it is among those counted
            await ctx.state.own.get()
        except (NetworkError, ErrorReply):
            pass  # said when the counts are taken
    return Verbatim(await _amended_info(ctx.state, args, await ctx.link.call(*args, own=False)))


async def _amended_info(state: RuntimeState, args: list[bytes], text: Any) -> bytes:
    """The backing Redis' INFO with the runtime's part: the modules and their sections, the port clients reach,
    clients without the runtime's links, the owned commands' statistics."""
    wanted = _info_wanted(args)
    body = text.decode() if isinstance(text, bytes) else str(text)
    modules: list[ModuleInfo] = state.modules()
    if wanted & {"default", "all", "everything", "modules"}:
        header = "# Modules\r\n"
        if header in body:
            body = body.replace(header, header + _module_lines(modules), 1)
        elif "modules" in wanted:
            body = header + _module_lines(modules) + body
    if _section(body, "Server") is not None:  # the port clients reach, as CONFIG GET port answers it
        body = _TCP_PORT.sub(f"tcp_port:{state.settings.port}", body, 1)
    if _section(body, "Clients") is not None:
        body = await _without_internal_links(state, body)
        body = _MAXCLIENTS.sub(f"maxclients:{state.settings.maxclients}", body, 1)
    stats = state.commandstats
    section = _section(body, "Commandstats")
    if section is not None:  # asked for (commandstats, all, everything): the owned commands' lines end it
        start, end = section  # Redis' lines less the runtime's own traffic (commandstats.OWN)
        body = body[:start] + OWN.taken_from(body[start:end]) + stats.lines() + body[end:]
    section = _section(body, "Errorstats")
    if section is not None:  # the codes of both, merged, in Redis' order (sorted), less the runtime's own
        start, end = section
        counts = Counter(stats.errors)
        for line in body[start:end].splitlines():
            code, _, count = line.removeprefix("errorstat_").partition(":count=")
            counts[code] += max(int(count) - OWN.errors[code], 0)
        lines = "".join(f"errorstat_{c}:count={n}\r\n" for c, n in sorted(counts.items()) if n > 0)
        body = body[:start] + lines + body[end:]
    ours = {
        "total_commands_processed": stats.calls() - OWN.total_calls(),
        "total_error_replies": sum(stats.errors.values()) - OWN.total_errors(),
        "rejected_connections": state.rejected_connections,
    }  # fmt: skip
    body = _TOTALS.sub(lambda m: f"{m[1]}:{max(int(m[2]) + ours[m[1]], 0)}", body, 3)
    body = _RECEIVED.sub(f"total_connections_received:{state.connections_received}", body, 1)
    body = _OPS.sub(lambda m: f"instantaneous_ops_per_sec:{max(round(int(m[1]) + stats.ops_per_sec()), 0)}", body, 1)
    if wanted & {"everything", "modules"}:
        body = body.rstrip("\r\n") + "\r\n\r\n" + _sections(modules)
    else:  # INFO <module name>, as Redis answers it: that module's sections
        named = [m for m in modules if m[0] in wanted]
        if named:
            body = (body.rstrip("\r\n") + "\r\n\r\n" if body.strip() else "") + _sections(named)
    return body.encode()


def loaded_modules(state: RuntimeState) -> list[dict[bytes, Any]]:
    """The modules the runtime stands in for, as Redis lists a loaded one (MODULE LIST, HELLO's `modules`):
    a map in RESP3, pairs in RESP2."""
    return [
        {b"name": name.encode(), b"ver": version, b"path": b"gearcam-runtime", b"args": []}
        for name, version, _ in state.modules()
    ]


async def module(ctx: Context, args: list[bytes]) -> Any:
    """MODULE LIST shows `ai` and `rg` as loaded (tools check it, as INFO MODULES does); the rest is relayed."""
    return _amended_modules(ctx.state, args, await ctx.link.call(*args, own=False))


def _amended_modules(state: RuntimeState, args: list[bytes], reply: Any) -> Any:
    if len(args) != 2 or args[1].upper() != b"LIST" or not isinstance(reply, list):
        return reply
    return loaded_modules(state) + reply


async def slowlog(ctx: Context, args: list[bytes]) -> Any:
    """SLOWLOG GET, LEN and RESET answer the runtime's log (gearcam/runtime/slowlog.py); the rest is relayed.

    The answer is the log as it stood once caught up; the command is relayed after that, so the
    backing Redis checks its arguments and logs it, as Redis logs SLOWLOG itself once it ran (a
    look made meanwhile may take that entry in: it is not in this answer, as on Redis).
    """
    sub = upper(args[1]) if len(args) > 1 else ""
    log = ctx.state.slowlog
    if sub not in ("GET", "LEN", "RESET"):
        return await ctx.link.call(*args, own=False)
    await log.catch_up()
    count = int(args[2]) if len(args) > 2 and args[2].lstrip(b"-").isdigit() else 10
    answer = log.newest(count) if sub == "GET" else len(log)
    reply = await ctx.link.call(*args, own=False)  # its arguments refused, or the client's rights: raised here
    if sub == "RESET":
        log.reset()
        return reply
    return answer


async def config(ctx: Context, args: list[bytes]) -> Any:
    """CONFIG GET and CONFIG SET of the runtime's own settings (runtime/own_settings.py): only those reach here."""
    if upper(args[1]) == "GET":
        return own_settings.amend_get(await ctx.link.call(*args, own=False), args[2:], ctx.state.settings, ctx.protocol)
    state = ctx.state
    assert state.listeners is not None
    await own_settings.apply(state.settings, state.listeners, own_settings.parse_set(args), state.renew_links)
    state.budget.limit = state.settings.maxmemory_clients  # read by every client's next request
    return SimpleString("OK")


async def shutdown(ctx: Context, args: list[bytes]) -> Any:
    """SHUTDOWN: the backing Redis shuts down as it was asked, and the runtime stops with it.

    On Redis with RedisAI and RedisGears, SHUTDOWN ends the modules with the server. Relayed
    alone, it left the runtime answering every client "cannot reach the backing Redis" (and,
    under `invoke up`, a front for a Redis that was gone). Redis answers a SHUTDOWN that worked
    by closing the connection (after waiting for lagging replicas up to its shutdown-timeout),
    so the link's end is the sign; its refusals (`ERR Errors trying to SHUTDOWN`, a NOPERM) and
    `SHUTDOWN ABORT`'s answer are passed on and nothing stops.
    """
    try:
        return Encoded(await ctx.link.call_raw(args, own=False))
    except (NetworkError, ConnectionError):
        logger.warning("SHUTDOWN: the backing Redis closed the link, shutting down; the gearcam runtime stops with it")
        if ctx.state.shut_down is not None:  # (None where a Runtime is embedded without the command line)
            ctx.state.shut_down()
        raise  # the client's connection ends without a reply, as Redis ends it


async def debug(ctx: Context, args: list[bytes]) -> Any:
    """DEBUG, relayed; after DEBUG RELOAD or LOADAOF the StreamReaders start over from what the data holds.

    RedisGears reads every stream again when Redis loads its data, so a partial batch that was
    waiting for more entries runs then; the runtime's readers restart and read their pending entries.
    """
    if len(args) > 1 and args[1].upper() == b"RELOAD" and ctx.state.gears is not None:
        await ctx.state.gears.streams_settled(ctx.state.settings.connect_timeout)  # RELOAD saves first
    reply = await ctx.link.call(*args, own=False)
    if len(args) > 1 and args[1].upper() in (b"RELOAD", b"LOADAOF"):
        ctx.state.ai.store.withdraw_all()  # the data was replaced without key events
        if ctx.state.gears is not None:
            await ctx.state.gears.after_reload()
    return reply


async def amend_for_gears(state: RuntimeState, args: list[bytes], reply: Any) -> Any:
    """A reply the backing Redis gave Gears code (as its owner) to INFO, MODULE LIST, CONFIG GET or CLIENT LIST,
    with what the runtime says of itself, as its clients get it: inside Redis, RM_Call answers with the server's
    own (the modules, their sections, the port clients reach, its clients). Plain data, as a worker takes it."""
    name = upper(args[0])
    if name == "INFO":
        return await _amended_info(state, args, reply)
    if name == "MODULE":
        return plain_reply(_amended_modules(state, args, reply))
    if name == "CONFIG" and len(args) > 2 and upper(args[1]) == "GET" and own_settings.takes(args):
        return plain_reply(own_settings.amend_get(reply, args[2:], state.settings, 2))
    if name == "CLIENT" and isinstance(reply, bytes):  # LIST: each client where it connects to the runtime from
        return state.clients.rewrite(reply)
    return reply
