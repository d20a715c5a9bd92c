"""The runtime's listening sockets, the services it builds, and an orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

from gearcam.cancel import cancel_and_wait, wait_for
from gearcam.config import RuntimeSettings
from gearcam.errors import ConfigError, NetworkError
from gearcam.logs import Every
from gearcam.runtime import open_files
from gearcam.runtime.ai import write_ack
from gearcam.runtime.ai.coherence import Charged
from gearcam.runtime.ai.service import AIService
from gearcam.runtime.commands import Context, ai_commands, core_commands, rg_commands
from gearcam.runtime.commands.ai_admin import AI_MODULE_VERSION, info_sections
from gearcam.runtime.commands.command_info import hook_info
from gearcam.runtime.commands.core import amend_for_gears
from gearcam.runtime.commands.module_call import module_call
from gearcam.runtime.commands.rg_admin import GEARS_MODULE_VERSION
from gearcam.runtime.commands.rg_admin import info_sections as gears_info_sections
from gearcam.runtime.commandstats import SAMPLE_S, CommandStats
from gearcam.runtime.connection import ClientConnection
from gearcam.runtime.gears.service import CommandShape, GearsService
from gearcam.runtime.keyevents import KeyEvents
from gearcam.runtime.listeners import Listeners
from gearcam.runtime.relay import Address, BackendLink
from gearcam.runtime.request import PROTO_MAX_BULK_LEN, memory_bytes
from gearcam.runtime.resp import MODULE_CLIENT, ErrorReply, plain_reply
from gearcam.runtime.state import RuntimeState

__all__ = ["Runtime"]

# Commands RedisGears refuses from inside an execution (they would wait for another execution).


logger = logging.getLogger(__name__)

# Errors of a Redis that will serve soon: loading its dataset, running a script past busy-reply-threshold,
# or a replica that does not answer while its master is away (replica-serve-stale-data no).
_NOT_SERVING_YET = ("LOADING", "BUSY", "MASTERDOWN")
_WAIT_POLL_S = 0.2
_WAIT_LOG_S = 10.0
_URL_SETTING = "--redis-url (runtime.backing_url; GEARCAM_RUNTIME__BACKING_URL on k3s)"


def _on_key_event(ai: AIService, gears: GearsService, event: str, db: int, key: bytes) -> None:
    """A key event for memory's coherence, then for Gears, unless it is one of the runtime's own AI writes':
    RedisAI's writes and deletes cause no key events, so no KeysReader registration runs on them."""
    try:
        own = ai.on_key_event(event, db, key) is Charged.OWN
    except Exception:  # a fault in memory's bookkeeping must not keep the event from Gears
        logger.exception("the AI store failed on the key event %s of %r", event, key)
        own = False
    if not own:
        gears.on_key_event(event, db, key)


def _module_client() -> tuple[bytes, bytes]:
    """RM_Call's client as SLOWLOG shows it: its address, and no name."""
    return MODULE_CLIENT.encode(), b""


class Runtime:
    """Serves RESP on TCP (and optionally a unix socket) in front of the backing Redis."""

    def __init__(self, settings: RuntimeSettings, backing: Address, tls: ssl.SSLContext | None = None) -> None:
        """`tls` serves settings.tls_port (tls.server_context builds it, before anything starts)."""
        ai = AIService(settings)
        self.events = KeyEvents(backing, settings.connect_timeout)
        self.state = RuntimeState(settings, backing, ai, self.events)
        self.state.commands.update(core_commands())
        self.state.commands.update(ai_commands())
        self.state.commands.update(rg_commands())
        self.state.module_infos.append(("ai", AI_MODULE_VERSION, lambda: info_sections(ai)))
        gears = GearsService(settings, backing, ai)
        gears.module_command = self._module_command
        gears.owned_info = self._owned_info
        gears.amend_reply = functools.partial(amend_for_gears, self.state)
        self.state.gears = gears
        self.state.module_infos.append(("rg", GEARS_MODULE_VERSION, lambda: gears_info_sections(gears)))
        self.listeners = Listeners(self._accept, tls)
        self.state.listeners = self.listeners
        self._clients: dict[asyncio.Task[None], ClientConnection] = {}
        self._ids = itertools.count(1)
        self.on_stop: list[Callable[[], Any]] = []
        self.events.add_listener(functools.partial(_on_key_event, ai, gears))
        self.events.on_ready.append(ai.store.withdraw_all)  # events were missed while it was down
        ai.store.events = self.events
        self.events.on_ready.append(gears.resync)
        self.events.on_streams.append(gears.resync)  # stream events subscribed late: writes before went unseen
        self.events.on_ready.append(ai.store.acks.recheck)  # Redis may have restarted with other settings
        gears.events = self.events
        self.events.on_mark.append(gears.on_mark)  # stream readers' looks at their streams (gears/streams.py)
        self._watcher: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:  # a refusal or a failure: what had started is released before the process exits
            await self._release()
            raise

    async def _start(self) -> None:
        settings = self.state.settings
        try:
            probe = await _reach(self.state.backing, settings)
        except ErrorReply as exc:  # AUTH or SELECT refused
            raise ConfigError(
                f"the backing Redis refused the runtime's login or database ({exc.message}); fix the user, password "
                f"or database number in {_URL_SETTING}: redis://user:password@host:port/db"
            ) from None
        try:
            await _backing_serves(probe)
            self.state.max_bulk_len = await _proto_max_bulk_len(probe)
            await write_ack.read(probe, self.state.ai.store.acks)
        finally:
            await probe.close()
        self._watcher = asyncio.get_running_loop().create_task(
            write_ack.watch(self.state.ai.store.acks, self.state.backing, settings.connect_timeout)
        )
        self._sampler = asyncio.get_running_loop().create_task(_sample_calls(self.state.commandstats))
        self.events.start()
        # Registrations react to key events: listen before restoring them, so no write is missed.
        await self.events.started(settings.connect_timeout)
        assert self.state.gears is not None
        await self.state.gears.start()
        await self.state.slowlog.catch_up()  # the backing Redis' log and thresholds, before the first client
        _fit_maxclients(settings)
        where = await self.listeners.start(settings)
        logger.info("gearcam runtime ready on %s (backing Redis %s)", ", ".join(where), self.state.backing.describe())

    async def _release(self) -> None:
        """Stop what start() set going behind the servers: key events, the write-ack watcher and the calls' sampler,
        Gears, engines."""
        await self.events.stop()
        for task in (self._watcher, self._sampler):
            if task is not None:
                await cancel_and_wait(task)
        await self.state.acl.close()
        await self.state.acllog.close()
        await self.state.slowlog.close()
        await self.state.own.close()
        if self.state.gears is not None:
            await self.state.gears.stop()
        await asyncio.to_thread(self.state.ai.close)

    def _owned_info(self, name: str) -> CommandShape | None:
        """COMMAND INFO of an AI.* or RG.* command as a hook on it reads it (commands/command_info.py)."""
        command = self.state.commands.get(name.upper())
        return hook_info(command) if command is not None and command.registration is not None else None

    async def _module_command(self, args: list[bytes], caller: str = "") -> Any:
        """An RG.* or AI.* command sent from Gears code (execute()), answered as RM_Call gets it there.

        It runs on the runtime's own link, as the modules' commands run inside Redis; commands that
        would block are refused with RedisGears' words. The reply is plain data, as a RESP2 client reads it.
        Like a client's, it is shown to MONITOR, counted in INFO commandstats and logged in SLOWLOG.
        """
        assert self.state.gears is not None
        command = self.state.commands.get(args[0].decode("utf-8", "replace").upper())
        if command is None:
            raise ErrorReply(f"ERR unknown command '{args[0].decode('utf-8', 'replace')}'")
        ctx = Context(link=await self.state.gears.ai_link(), state=self.state, caller=caller)
        self.state.monitored(command, args, ctx.link.db or 0, MODULE_CLIENT)  # Redis feeds what RM_Call runs too
        began, error = time.monotonic(), None
        try:
            return plain_reply(await module_call(ctx, command, args))
        except ErrorReply as exc:
            error = exc
            raise
        finally:  # Redis counts and logs what RM_Call runs, as any command
            self.state.ran(command.name, args, began, error, _module_client)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._clients) >= self.state.settings.maxclients:  # as Redis refuses one more, before anything else
            self.state.rejected_connections += 1
            writer.write(b"-ERR max number of clients reached\r\n")
            with contextlib.suppress(ConnectionError, OSError):
                await wait_for(writer.drain(), 1.0)
            writer.close()
            return
        self.state.connections_received += 1
        connection = ClientConnection(reader, writer, self.state, next(self._ids))
        self._clients[task] = connection
        try:
            await connection.serve()
        except asyncio.CancelledError:
            pass
        except (ConnectionError, OSError) as exc:
            logger.info("client %s went away: %s", connection.peer, exc)
        except Exception:
            logger.exception("client connection failed")
        finally:
            self._clients.pop(task, None)

    async def stop(self) -> None:
        """Stop accepting, give connections a grace period, then cancel them and stop the workers."""
        self.listeners.close()
        busy = {task for task, connection in self._clients.items() if connection.busy}
        for task in set(self._clients) - busy:
            task.cancel()
        if busy:
            _, late = await asyncio.wait(busy, timeout=self.state.settings.shutdown_grace)
            for task in late:
                task.cancel()
        if self._clients:
            await asyncio.wait(set(self._clients), timeout=1.0)
        await self._release()
        for callback in self.on_stop:
            callback()
        if self.state.settings.unixsocket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state.settings.unixsocket)
        logger.info("gearcam runtime stopped")


def _fit_maxclients(settings: RuntimeSettings) -> None:
    """Lower maxclients to what the open files limit allows (raised toward its hard value first), as Redis does;
    said as a warning where the value was asked for, quietly where it is the default."""
    fitted = open_files.fit(settings.maxclients)
    if fitted >= settings.maxclients:
        return
    level = logging.WARNING if "maxclients" in settings.model_fields_set else logging.INFO
    logger.log(
        level,
        "maxclients %d needs %d open files and the limit is %s: maxclients is %d. Raise the limit for more (ulimit -n, "
        "systemd's LimitNOFILE=, docker run --ulimit nofile=N:N)", settings.maxclients,
        settings.maxclients * open_files.FILES_PER_CLIENT + open_files.RESERVED, open_files.open_files_limit(), fitted,
    )  # fmt: skip
    settings.maxclients = fitted


async def _sample_calls(stats: CommandStats) -> None:
    """INFO's instantaneous_ops_per_sec: the calls sampled every SAMPLE_S, as Redis samples its own."""
    loop = asyncio.get_running_loop()
    while True:
        stats.sample(loop.time())
        await asyncio.sleep(SAMPLE_S)


async def _reach(backing: Address, settings: RuntimeSettings) -> BackendLink:
    """A logged-in link to the backing Redis, waiting up to `start_wait` for one that is not listening yet.

    In a k3s pod or a compose project the runtime's container may start before Redis opens its
    port: exiting at once left the kubelet to restart it after a growing back-off. Past the wait
    the error is the same as without it, so a wrong port still says so, only later.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.start_wait
    say = Every(_WAIT_LOG_S)
    while True:
        try:
            return await BackendLink.open(backing, settings.connect_timeout, authenticate=True)
        except NetworkError as exc:
            if isinstance(exc.__cause__, ssl.SSLError):  # it answered: waiting will not change its certificate
                raise ConfigError(str(exc)) from None
            left = deadline - loop.time()
            if left <= 0:
                if settings.start_wait:
                    raise NetworkError(f"{exc} (waited {settings.start_wait:g} s: runtime.start_wait)") from None
                raise
            if say.due():
                logger.warning("%s (waiting up to %.0f s more: runtime.start_wait)", exc, left)
        await asyncio.sleep(_WAIT_POLL_S)


async def _backing_serves(probe: BackendLink) -> None:
    """Return once the backing Redis serves; refuse one the runtime cannot front, with the fix.

    A Redis restarted with a large dataset answers LOADING for as long as it reads it (minutes for
    gigabytes of camera frames): the runtime waits, as a replica waits for its master, rather than
    exiting with a traceback and leaving its supervisor to restart it in a loop.
    """
    say = Every(_WAIT_LOG_S)
    while True:
        try:
            await probe.call(b"PING")
            break
        except ErrorReply as exc:
            if exc.message.startswith("NOAUTH"):
                raise ConfigError(
                    f"the backing Redis wants a password ({exc.message}); give it in {_URL_SETTING}: "
                    "redis://:password@host:port, or redis://user:password@host:port"
                ) from None
            if not exc.message.startswith(_NOT_SERVING_YET):
                raise ConfigError(
                    f"the backing Redis answered PING with '{exc.message}'; check the user in {_URL_SETTING} "
                    "and its ACL (docs/runtime.md, the runtime's user)"
                ) from None
            if say.due():
                logger.warning("the backing Redis does not serve yet (%s): waiting for it", exc.message)
        await asyncio.sleep(_WAIT_POLL_S)
    try:
        info = await probe.call(b"INFO", b"cluster")
    except ErrorReply:
        return  # INFO refused to this user: a cluster would then show in its first CLUSTERDOWN or MOVED
    if isinstance(info, bytes) and b"cluster_enabled:1" in info:
        raise ConfigError(
            "the backing Redis runs in cluster mode (cluster_enabled:1); the runtime fronts one standalone "
            f"Redis, with or without replicas: point {_URL_SETTING} at a redis-server started with cluster-enabled no"
        )


async def _proto_max_bulk_len(link: BackendLink) -> int:
    """The backing Redis' proto-max-bulk-len, which the runtime applies to its own clients (default if hidden)."""
    try:
        reply = await link.call(b"CONFIG", b"GET", b"proto-max-bulk-len")
    except ErrorReply:
        return PROTO_MAX_BULK_LEN  # CONFIG refused to the runtime's user, or renamed
    values = dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else {}
    try:
        return memory_bytes(values[b"proto-max-bulk-len"])  # as a CONFIG SET of it is read later (state.configured)
    except (KeyError, ValueError):
        return PROTO_MAX_BULK_LEN
