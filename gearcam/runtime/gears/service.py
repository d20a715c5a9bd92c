"""The Gears side of the runtime: sessions, registrations, executions, and the worker processes they run in.

Scripts' code never runs in the runtime: each ACL user that owns sessions gets a Gears
worker process (workers.py, worker.py) that loads their scripts and runs their steps.
The runtime keeps what RedisGears keeps in Redis' main thread: sessions, registrations,
executions and their counters, StreamReader positions (stream.py), and key events.
Three places run this side's work: the runtime's main loop (commands, key events, the
AI service the workers' `redisAI` calls reach), a Gears event loop thread (executions,
stream readers, the workers' channels) and a small thread pool for blocking reads of
the backing Redis. A worker that dies or is replaced is started again with its
owner's sessions; what ran in it is marked aborted with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import pwd
import secrets
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, TypeVar

from gearcam.cancel import wait_for
from gearcam.config import PROJECT_ROOT, RuntimeSettings
from gearcam.runtime.ai.service import AIService
from gearcam.runtime.backing_tls import BackingTls
from gearcam.runtime.gears import streams
from gearcam.runtime.gears.ai_calls import AICalls
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.gears.cluster import ShardLinks
from gearcam.runtime.gears.engine import ABORTED_BY_COMMAND, StepStats
from gearcam.runtime.gears.executions import Execution, Executions, IdCounter
from gearcam.runtime.gears.link import CommandError, LinkPool
from gearcam.runtime.gears.owners import worker_address
from gearcam.runtime.gears.readers import event_matches, key_matches, key_record, key_type
from gearcam.runtime.gears.records import command_keys, from_redis
from gearcam.runtime.gears.registrations import Registration
from gearcam.runtime.gears.replies import NO_COMMAND_CTX, NO_HOOK_CTX, NON_SYNC_IN_TRANSACTION, OVERRIDE_ONCE
from gearcam.runtime.gears.requirements import GearsEnv, describe_python
from gearcam.runtime.gears.sessions import SESSIONS_KEY, Session, save_sessions_again
from gearcam.runtime.gears.workers import GearsWorker, WorkerDied
from gearcam.runtime.keyevents import KEYS_QUIET_OFF, KEYS_QUIET_ON, merge_flags
from gearcam.runtime.own_settings import OWNED_NAMES
from gearcam.runtime.own_traffic import OWN_TRAFFIC, Mark
from gearcam.runtime.relay import Address, BackendLink, OwnLink
from gearcam.runtime.resp import ErrorReply, SimpleString, plain_reply

__all__ = ["CommandShape", "GearsService", "OwnedInfo", "Terminal", "default_config", "gears_python", "hook_reply"]

logger = logging.getLogger(__name__)

# What ends a hooked command the runtime serves itself (AI.*, RG.*), past its last hook: the command run as
# RM_Call runs it (the connection's, with the client's rights), given the arguments call_next() passed and the
# execution that called it (the caller of what the command runs: a trigger nests under the hook, in its atomic()).
Terminal = Callable[[list[bytes], str], Awaitable[Any]]
# A command's COMMAND INFO as RedisGears' hook checks read it: its flags, first key, last key, step.
CommandShape = tuple[set[str], int, int, int]
# The runtime's own commands' shapes (AI.*, RG.*), by name; None for the others.
OwnedInfo = Callable[[str], CommandShape | None]
_SESSIONS_KEY = SESSIONS_KEY.encode()

# The readers that key events trigger (whose executions run one at a time per registration).
_EVENT_READERS = ("KeysReader", "KeysOnlyReader", "StreamReader")
_RESTART_PAUSE = 1.0  # seconds between replacements of one owner's worker


def default_config(threads: int) -> dict[str, Any]:
    """RedisGears 1.2's configuration keys and the runtime's values for them."""
    return {
        "MaxExecutions": 1000, "MaxExecutionsPerRegistration": 100, "ProfileExecutions": 0,
        "PythonAttemptTraceback": 1, "OverridePythonAllocators": 0, "DownloadDeps": 1, "DependenciesUrl": "",
        "DependenciesSha256": "", "PythonInstallationDir": "", "CreateVenv": 1, "ExecutionThreads": threads,
        "ExecutionMaxIdleTime": 5000, "PythonInstallReqMaxIdleTime": 30000, "SendMsgRetries": 3, "Plugin": "",
    }  # fmt: skip


def gears_python(settings: RuntimeSettings) -> str:
    """The Gears virtualenv's Python: the setting, else .venv-gears beside the sources, else the runtime's own."""
    if settings.gears_python:
        return settings.gears_python
    candidate = PROJECT_ROOT / ".venv-gears" / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    import sys

    logger.warning(
        "no Gears virtualenv (.venv-gears; run scripts/bootstrap, or set runtime.gears_python): Gears scripts run "
        "with the runtime's own Python %s and its packages", sys.executable,
    )  # fmt: skip
    return sys.executable


def _open_to_others(path: str) -> bool:
    """Whether every folder on the way to `path` lets other users in (and the file itself be read)."""
    current = os.path.realpath(path)
    while True:
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return False
        needed = 0o005 if os.path.isdir(current) else 0o004  # folders: read and enter; files: read
        if (mode & needed) != needed:
            return False
        parent = os.path.dirname(current)
        if parent == current:
            return True
        current = parent


def _run_as(name: str | None, python: str) -> tuple[int, int] | None:
    """The (uid, gid) Gears workers switch to when the runtime runs as root, if that user can run the Python."""
    if not name or os.getuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        logger.warning("runtime.gears_user %r does not exist: Gears workers run as root", name)
        return None
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    for needed in (python, package_root):
        if not _open_to_others(needed):
            logger.warning(
                "Gears workers run as root, not as %r: %s is not readable by other users (install Python and "
                "gearcam where other users can read them, e.g. /usr/local or /opt, to run scripts without root)",
                name, os.path.realpath(needed),
            )  # fmt: skip
            return None
    return entry.pw_uid, entry.pw_gid


def _pool_link(address: str, opened: bool, _login: list[Mark]) -> None:
    """The runtime's Gears pool's links: their login is recorded as it is sent (own, in this process); a worker's
    is told with the link (gears.link)."""
    OWN_TRAFFIC.module_link(address, opened)


def _prefix_matches(reg: Registration, args: list[bytes]) -> bool:
    prefix = reg.args.get("keyprefix")
    if prefix is None:
        return True
    first, last, step = reg.args.get("keys", (1, 1, 1))
    last = len(args) - 1 if last < 0 else min(last, len(args) - 1)
    wanted = prefix.encode()
    return any(args[i].startswith(wanted) for i in range(first, last + 1, max(step, 1)))


# How deep executions may run inside each other's calls (a hook or trigger whose steps call the command that runs it
# recurses; inside Redis, where each runs inline, that goes on until the stack overflows).
MAX_NESTED = 32
_SCRIPTS_THAT_MAY_WRITE = {"eval", "evalsha", "fcall"}  # their _ro forms may not write
_NO_OVERRIDE = object()
_T = TypeVar("_T")


def _after(before: asyncio.Future[None] | None, turn: asyncio.Future[None]) -> None:
    """Resolve `turn` once `before` is (at once when there is none): turns pass on in order."""

    def resolve(_: object = None) -> None:
        if not turn.done():
            turn.set_result(None)

    if before is None or before.done():
        resolve()
    else:
        before.add_done_callback(resolve)


class KeyHook:
    """A command whose key events KeysReader(commands=[...]) registrations run on: its arguments
    (get_command()) and the one reply override_reply() may set, shared by every registration it
    triggered, as RedisGears shares the command's context among their executions."""

    def __init__(self, command: list[bytes]) -> None:
        self.command = command
        self.override: Any = _NO_OVERRIDE

    def set_override(self, value: Any) -> None:
        if self.override is not _NO_OVERRIDE:
            raise GearsError(OVERRIDE_ONCE)
        self.override = value

    def arguments(self) -> list[str]:
        return [arg.decode("utf-8", "replace") for arg in self.command]


class HookCall:
    """A command hook in progress: the client's link, and the hooks under the running one."""

    def __init__(
        self, service: GearsService, link: BackendLink, under: list[Registration], command: bytes,
        terminal: Terminal | None = None, depth: int = 0,
    ) -> None:  # fmt: skip
        self.service = service
        self.link = link
        self.under = under
        self.command = command
        self.terminal = terminal
        self.depth = depth

    async def next(self, args: list[bytes], caller: str) -> Any:
        """Main loop: call_next(*args) from the execution `caller`: the next hook, or the command on the client's
        link; plain data back."""
        reply = await self.service.run_hook(
            self.link, self.under, [self.command, *args], True, self.terminal, self.depth, caller
        )
        return plain_reply(reply)


def attribute_key_events(
    events: list[tuple[str, bytes]], command_keys: list[set[bytes]]
) -> list[list[tuple[str, bytes]]]:
    """The key events of a transaction's run, each given to the queued command it came from.

    The commands ran in order, so an event belongs to the first command, from the one the
    last event went to onwards, that names its key; an event no such command names (another
    command's, another client's) is dropped.
    """
    per_command: list[list[tuple[str, bytes]]] = [[] for _ in command_keys]
    current = 0
    for event, key in events:
        for index in range(current, len(command_keys)):
            if key in command_keys[index]:
                per_command[index].append((event, key))
                current = index
                break
    return per_command


def hook_reply(value: Any) -> Any:
    """A hook's reply as RedisGears sends a Python string: '+text' a status reply, '-text' an error."""
    if isinstance(value, str) and len(value) > 1 and value[0] in "+-":
        return SimpleString(value[1:]) if value[0] == "+" else ErrorReply(value[1:])
    return value


def check_nesting(depth: int) -> None:
    """Refuse an execution `depth` calls deep past MAX_NESTED, naming the usual cause."""
    if depth > MAX_NESTED:
        raise ErrorReply(
            f"ERR Gears executions nested more than {MAX_NESTED} deep: a hook or trigger whose steps execute() the "
            "command that runs it runs itself again; a hook passes its command on with call_next() instead"
        )


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class GearsService:
    def __init__(self, settings: RuntimeSettings, backing: Address, ai: AIService) -> None:
        self.settings = settings
        self.backing = backing
        self.ai = ai
        threads = settings.gears_execution_threads
        self.config: dict[str, Any] = default_config(threads)
        self.shards = ShardLinks(lambda: int(self.config["SendMsgRetries"]))  # RG.CLUSTERSET's, on the main loop
        # Two sequences, as RedisGears counts registrations and executions apart (`<shard>-1` is both).
        self.ids = IdCounter()
        self.executions = Executions(IdCounter())
        self.sessions: dict[str, Session] = {}
        self.requirements_seen: set[str] = set()  # every requirement a session asked for (RedisGears' dictionary)
        self.registrations: dict[str, Registration] = {}
        self.workers: dict[tuple[str, bytes], streams.StreamWorker] = {}  # StreamReader readers
        # Marks published with a reader's look at its stream, not back yet (see stream_mark).
        self._marks: weakref.WeakValueDictionary[bytes, streams.StreamWorker] = weakref.WeakValueDictionary()
        self._mark_ids = itertools.count(1)
        self.processes: dict[str, GearsWorker] = {}  # Gears worker per owner
        self.worker_links: dict[str, set[str]] = {}  # the addresses of its links to the backing Redis, per owner
        self._tls_files: dict[str, Any] | None = None  # the backing links' TLS files CONFIG SET renewed (renew_links)
        self.hooks: dict[str, list[Registration]] = {}  # command name -> CommandReader hooks, newest first
        self.key_hooks: dict[str, list[Registration]] = {}  # command name -> KeysReader(commands=[...]) hooks
        self.key_specs: dict[str, tuple[int, int, int]] = {}  # command name -> (first, last, step) key positions
        self._collectors: list[list[tuple[str, bytes]]] = []  # key events seen while a hooked command runs
        # mode='sync' KeysReader executions started by key events and not finished yet (see sync_settle).
        self.sync_pending: set[Future[Any]] = set()
        self.sync_registrations = 0  # how many active KeysReader registrations are mode='sync'
        # Between the marks framing a reader's read or a sync KeysReader's write (on_mark): no KeysReader fires.
        self.keys_quiet = False
        self.write_commands: set[str] = set()  # from the backing Redis' COMMAND table
        self.events: Any = None  # the runtime's KeyEvents (fences), set by the server
        self._starting: dict[str, asyncio.Future[GearsWorker]] = {}
        self._retrying: set[str] = set()  # StreamReader registrations waiting for onFailedRetryInterval
        self._background: set[asyncio.Task[None]] = set()  # tasks nobody awaits, kept until they end
        self._keys_reading: set[asyncio.Future[None]] = set()  # KeysReader triggers reading their key (_on_key)
        self._master_watch: asyncio.Task[None] | None = None  # see _read_when_master
        # The backing Redis is a replica (seen from the sessions it receives): no registration runs there.
        self.replica = False
        self._following: asyncio.Future[None] | None = None  # see _sessions_changed
        self._follow_again = False
        # INFO leaves its traffic out; MONITOR shows what it sends for Gears (own_traffic.py)
        self.links = LinkPool(backing, settings.connect_timeout, own=True, on_link=_pool_link)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gears-io")
        self.loop = asyncio.new_event_loop()
        self.lock = threading.RLock()  # registrations and sessions change on the main loop, are read everywhere
        self._thread = threading.Thread(target=self._run_loop, name="gears-loop", daemon=True)
        # Gears code writes through its worker's own connection, so this link cannot see its program
        # order: every AI read on it asks Redis (see ai/coherence.py).
        self._ai_link = OwnLink(self.backing, self.settings.connect_timeout, trusts_memory=False)
        self.main_loop: asyncio.AbstractEventLoop | None = None
        self.calls: AICalls | None = None
        self.python = gears_python(settings)
        self.env: GearsEnv | None = None
        self.stopping = False
        self.closing = False  # set on the Gears loop when the runtime stops: no stream worker starts after it
        self.peak_memory = 0  # RG.PYSTATS' peak of the workers' resident memory
        # Serves execute('RG.…'/'AI.…') from Gears code; set by the server, which owns the command table.
        # An RG.* or AI.* command from Gears code, and the execution that sent it (Context.caller).
        self.module_command: Callable[[list[bytes], str], Coroutine[Any, Any, Any]] | None = None
        # COMMAND INFO of the runtime's own commands, for hooks on them; set by the server, as module_command.
        self.owned_info: OwnedInfo | None = None
        # The runtime's part of a reply the backing Redis gave Gears code (commands/core.py amend_for_gears).
        self.amend_reply: Callable[[list[bytes], Any], Coroutine[Any, Any, Any]] | None = None
        self._run_as = _run_as(settings.gears_user, self.python)

    # Lifecycle -----------------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def start(self) -> None:
        from gearcam.runtime.gears import lifecycle

        self.main_loop = asyncio.get_running_loop()
        await self.ai_link()
        self.calls = AICalls(self.ai, self.ai_link)
        prefix, purelib = await describe_python(self.python)
        s = self.settings
        self.env = GearsEnv(
            self.python, prefix, purelib, wheelhouse=s.gears_wheelhouse, download=s.gears_download,
            index_url=s.gears_index_url, idle_timeout=self.config["PythonInstallReqMaxIdleTime"] / 1000,
        )  # fmt: skip
        self._thread.start()
        try:
            await self.call(self.in_pool(self.load_command_table))
        except Exception as exc:
            logger.warning("no command table from the backing Redis (%s): mode='sync' runs after the reply", exc)
        await lifecycle.restore(self)
        with contextlib.suppress(Exception):  # not known yet: the first sessions change tells
            if not await self.call(self.in_pool(self._is_master)):
                self.mark_replica()

    async def ai_link(self) -> BackendLink:
        """Main loop: the link `redisAI` calls use, reopened when the backing Redis restarted."""
        return await self._ai_link.get()

    async def stop(self) -> None:
        """Let each stream reader finish (and acknowledge) its batch in flight, then stop workers and threads."""
        await self.shards.close()
        if self._thread.is_alive():
            finishing = asyncio.wrap_future(self.on_loop(self._finish_batches(self.settings.shutdown_grace)))
            with contextlib.suppress(Exception):  # waited for, never cancelled: a batch past the grace is, there
                await asyncio.wait([finishing], timeout=self.settings.shutdown_grace + 1)
            self.stopping = True
            with contextlib.suppress(Exception):
                await wait_for(self.call(self._stop_processes()), 10)
            with contextlib.suppress(Exception):
                await wait_for(self.call(_end_the_rest()), 5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, 5)
        if not self.loop.is_running():
            self.loop.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.links.close)
        await self._ai_link.close()

    async def _finish_batches(self, grace: float) -> None:
        """Gears loop: the stream workers finish their batch in flight; none starts from here on.

        Closed first, on this loop: otherwise the next XADD after a worker's end started a new one
        that nothing waited for, and the loop stopped under it.
        """
        self.closing = True
        workers = list(self.workers.values())
        for worker in workers:
            worker.stopping = True
            worker.wake.set()
        await self._wait_workers(workers, grace)

    async def _stop_processes(self) -> None:
        await asyncio.gather(*(w.stop() for w in list(self.processes.values())), return_exceptions=True)

    async def _wait_workers(self, workers: list[streams.StreamWorker], grace: float) -> None:
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()

    # Worker processes ------------------------------------------------------------------------------

    async def call(self, coro: Any) -> Any:
        """From the main loop: run a coroutine on the Gears loop and wait for it."""
        return await asyncio.wrap_future(self.on_loop(coro))

    async def _worker_call(self, owner: str, op: str, payload: Any) -> Any:
        """Gears loop: a call from a worker: a registration id, a hook's call_next/override_reply, an RG.*/AI.*
        command, or `redisAI` served by the AI service on the main loop."""
        if op == "gears.next_id":
            return self.ids.next()
        if op == "gears.link":  # a link of the worker's opened: MONITOR shows its commands as RM_Call's
            address, login = payload
            self._worker_link(owner, str(address), True)
            OWN_TRAFFIC.expect(str(address), login)
            return None
        assert self.main_loop is not None and self.calls is not None
        if op == "gears.register":
            from gearcam.runtime.gears import lifecycle

            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(lifecycle.register_from_step(self, *payload), self.main_loop)
            )
        if op in ("gears.override_reply", "gears.get_command"):
            # RedisGears answers both only in a KeysReader(commands=[...]) execution, not in a command hook's.
            execution = self.executions.get(payload[0])
            if execution is None or not isinstance(execution.hook, KeyHook):
                raise GearsError(NO_COMMAND_CTX)
            if op == "gears.get_command":
                return execution.hook.arguments()
            execution.hook.set_override(payload[1])
            return None
        if op == "gears.call_next":
            execution = self.executions.get(payload[0])
            if execution is None or not isinstance(execution.hook, HookCall):
                raise GearsError(NO_HOOK_CTX)
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(execution.hook.next(list(payload[1]), payload[0]), self.main_loop)
            )
        if op == "gears.amend":
            if self.amend_reply is None:
                return payload[1]
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self.amend_reply(*payload), self.main_loop)
            )
        if op == "gears.hooked":
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(
                    self.hook_from_code(owner, payload[0], list(payload[1])), self.main_loop
                )
            )
        if op == "gears.command":
            return await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(self._owned(list(payload[1]), payload[0]), self.main_loop)
            )
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self.calls.handle(op, payload), self.main_loop)
        )

    def _worker_link(self, owner: str, address: str, opened: bool) -> None:
        links = self.worker_links.setdefault(owner, set())
        (links.add if opened else links.discard)(address)
        OWN_TRAFFIC.module_link(address, opened)

    def _on_notice(self, owner: str, op: str, payload: Any) -> None:
        """Gears loop: a worker's one-way news: an execution's first step took a thread (`started`), or a link of
        its closed (`unlink`; one that opens is asked about, gears.link)."""
        if op == "unlink":
            self._worker_link(owner, str(payload), False)
        elif op == "started":
            execution = self.executions.get(str(payload))
            if execution is not None and execution.status == "created":
                execution.status = "running"

    async def worker_for(self, owner: str) -> GearsWorker:
        """Gears loop: the running worker of `owner`, started (with the owner's sessions) if needed."""
        worker = self.processes.get(owner)
        if worker is not None and worker.alive:
            return worker
        if self.stopping:
            raise GearsError("the gearcam runtime is stopping")
        starting = self._starting.get(owner)
        if starting is None:
            starting = asyncio.ensure_future(self._start_worker(owner, replacing=worker))
            self._starting[owner] = starting
            starting.add_done_callback(lambda _: self._starting.pop(owner, None))
        return await asyncio.shield(starting)

    async def _start_worker(self, owner: str, replacing: GearsWorker | None) -> GearsWorker:
        if replacing is not None:
            await asyncio.sleep(_RESTART_PAUSE)
        address = await self.in_pool(worker_address, self.links.call, self.backing, owner)
        s = self.settings
        hello = {
            "address": address.as_dict(), "tls_files": self._tls_files,
            "threads": s.gears_execution_threads, "config": dict(self.config), "memory_mb": s.gears_max_memory_mb,
            "hooks": self.hooked_commands(), "own_settings": sorted(OWNED_NAMES),
            "run_as": self._run_as, "connect_timeout": s.connect_timeout,
            "log_level": logging.getLevelName(logging.getLogger("gearcam").getEffectiveLevel()),
        }  # fmt: skip
        calls = functools.partial(self._worker_call, owner)
        links = self.worker_links[owner] = set()  # its links' addresses (gears.link), forgotten when it exits
        notice = functools.partial(self._on_notice, owner)
        worker = GearsWorker(owner, self.python, hello, calls, s.gears_max_memory_mb, notice)
        await worker.start()
        if replacing is not None:
            await self._reload(owner, worker)  # before anything runs in it: registrations point at the new scripts
        self.processes[owner] = worker
        asyncio.ensure_future(self._on_exit(worker, links))
        return worker

    def renew_links(self, files: BackingTls) -> None:
        """CONFIG SET of the TLS files of a rediss:// backing's links: each worker's new links read them, and so
        do those of a worker started later (its hello)."""
        if not self.loop.is_closed():  # stopped: no worker is left to tell
            self.loop.call_soon_threadsafe(self._renew_links, asdict(files))

    def _renew_links(self, files: dict[str, Any]) -> None:
        self._tls_files = files
        for worker in self.processes.values():
            if worker.alive:
                worker.notify("tls", files)

    async def _on_exit(self, worker: GearsWorker, links: set[str]) -> None:
        await worker.exited.wait()
        for address in links:  # its links closed with it
            OWN_TRAFFIC.module_link(address, False)
        if self.stopping or self.processes.get(worker.owner) is not worker:
            return
        with self.lock:
            owned = any(s.owner == worker.owner for s in self.sessions.values())
        if owned:
            try:
                await self.worker_for(worker.owner)
            except GearsError as exc:
                logger.error("could not replace the Gears worker of user %r: %s", worker.owner, exc)

    async def _load_sessions_again(self) -> None:
        """Gears loop: every session's script loaded again in its owner's worker (fresh globals), the old one
        forgotten once its registrations point at the new one. As RedisGears' registrations are new
        objects then, their counters start from zero and their finished executions are dropped."""
        owners: dict[str, list[str]] = {}
        with self.lock:
            for session in self.sessions.values():
                owners.setdefault(session.owner, []).append(session.token)
            regs = list(self.registrations.values())
        for reg in regs:
            reg.clear_stats()
            self._drop_finished(reg, len(reg.executions))
        for owner, old_tokens in owners.items():
            try:
                worker = await self.worker_for(owner)
            except GearsError as exc:
                logger.error("the Gears sessions of user %r were not loaded again: %s", owner, exc)
                continue
            await self._reload(owner, worker)
            for token in old_tokens:
                await self.forget(owner, token)

    async def _reload(self, owner: str, worker: GearsWorker) -> None:
        """Load the owner's sessions again in `worker` (a replacement, or after DEBUG RELOAD) and point their
        registrations at it."""
        with self.lock:
            sessions = [s for s in self.sessions.values() if s.owner == owner]
        for session in sessions:
            token = secrets.token_hex(8)
            try:
                loaded = await worker.request("load", (token, session.code, True, list(session.registrations)))
            except GearsError as exc:
                loaded = {"error": str(exc)}
            if loaded.get("error"):
                logger.error("Gears session %s could not be loaded again: %s", session.id, loaded["error"])
                continue
            session.token = token
            for index, reg_id in enumerate(session.registrations):
                reg = self.registrations.get(reg_id)
                if reg is not None:
                    reg.ref = (token, index)
        logger.info("Gears sessions of user %r loaded again: %d", owner, len(sessions))

    async def load(self, owner: str, token: str, code: str, ids: list[str] | None = None) -> dict[str, Any]:
        """Gears loop: load a script in its owner's worker (`ids`: a restored session's registration ids).

        Its top level may take runtime.gears_max_execution_seconds.
        """
        worker = await self.worker_for(owner)
        request = worker.request("load", (token, code, ids is not None, list(ids or [])))
        result: dict[str, Any] = await self._guarded(worker, token, request)
        return result

    async def _guarded(self, worker: GearsWorker, exec_id: str, request: Any) -> Any:
        """Wait for a worker request; past the time limit, abort it, and replace the worker if that fails."""
        limit = self.settings.gears_max_execution_seconds
        task = asyncio.ensure_future(request)
        if limit:
            done, _ = await asyncio.wait([task], timeout=limit)
            if not done:
                reason = f"it ran longer than runtime.gears_max_execution_seconds ({limit:g}s)"
                asyncio.ensure_future(self._abort_in(worker, exec_id, reason, task))
        return await task

    async def _abort_in(self, worker: GearsWorker, exec_id: str, reason: str, running: asyncio.Future[Any]) -> None:
        with contextlib.suppress(GearsError):
            await worker.request("abort", (exec_id, reason))
        grace = self.settings.gears_abort_grace
        done, _ = await asyncio.wait([running], timeout=grace)
        if not done:
            worker.kill(f"execution {exec_id} did not stop within {grace:g}s of being aborted ({reason})")

    async def forget(self, owner: str, token: str | None) -> None:
        worker = self.processes.get(owner)
        if token and worker is not None and worker.alive:
            with contextlib.suppress(GearsError):
                await worker.request("forget", token)

    async def callback(self, reg: Registration, name: str) -> None:
        """Gears loop: a registration's onRegistered/onUnregistered, in its worker."""
        if not reg.callbacks.get(name):
            return
        try:
            worker = await self.worker_for(reg.owner)
            await worker.request("callback", (*reg.ref, name))
        except GearsError as exc:
            logger.warning("%s of registration %s failed: %s", name, reg.id, exc)

    def configure(self) -> None:
        """After RG.CONFIGSET: scripts' configGet sees the new values."""
        config = dict(self.config)
        for worker in list(self.processes.values()):
            self.loop.call_soon_threadsafe(worker.notify, "config", config)

    async def abort(self, execution: Execution) -> None:
        """Gears loop: RG.ABORTEXECUTION: stop it in its worker, or replace the worker when it will not stop."""
        if execution.done:
            return
        worker = execution.worker
        if worker is None or execution.request is None or not worker.alive:  # not sent yet, or to be sent again
            if execution.task is not None:
                execution.task.cancel()
            execution.finish("aborted")
            return
        await self._abort_in(worker, execution.id, ABORTED_BY_COMMAND, execution.request)

    # Running things ------------------------------------------------------------------------------

    def on_loop(self, coro: Any) -> Future[Any]:
        """Schedule a coroutine on the Gears loop (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def execute_plan(self, execution: Execution, owner: str, op: str, payload: Callable[[], Any]) -> Execution:
        """On the Gears loop: run one execution (see _execute_plan), then apply MaxExecutions."""
        try:
            return await self._execute_plan(execution, owner, op, payload)
        finally:
            self.executions.trim()

    async def _execute_plan(self, execution: Execution, owner: str, op: str, payload: Callable[[], Any]) -> Execution:
        """On the Gears loop: have the owner's worker read (for run()) and run the steps; fill the execution.

        `payload` is made once the worker is known: a worker that was just replaced has new script tokens.
        """
        execution.task = asyncio.current_task()
        try:
            outcome = await self._in_a_worker(execution, owner, op, payload)
            if outcome is None:
                return execution
        except WorkerDied as exc:
            execution.errors.append(str(exc))
            execution.finish("aborted")
            return execution
        except GearsError as exc:
            execution.errors.append(str(exc))
            execution.finish()
            return execution
        except asyncio.CancelledError:
            execution.finish("aborted")
            return execution
        execution.read_ms = int(outcome.get("read_ms", 0))
        execution.steps = [StepStats(kind, name, ms) for kind, name, ms in outcome.get("steps", [])]
        execution.results = list(outcome.get("results", []))
        execution.errors = list(outcome.get("errors", []))
        execution.backing_lost = bool(outcome.get("backing_lost"))
        if outcome.get("aborted"):
            if outcome["aborted"] != ABORTED_BY_COMMAND:
                execution.errors.append(f"execution aborted: {outcome['aborted']}")
            execution.finish("aborted")
        else:
            execution.finish()
        return execution

    async def _in_a_worker(self, execution: Execution, owner: str, op: str, payload: Callable[[], Any]) -> Any:
        """Send the execution to the owner's worker and wait for its outcome (None when it was aborted before
        it was sent).

        One that no thread had taken up when the worker died (killed from outside, or for another
        execution's time or memory) runs in the replacement: none of its steps ran, and its records are
        the runtime's. Such executions are sent again in the order they were first sent (a KeysReader's
        events stay in order), and once only, so a worker that dies at every start does not hold them.
        """
        worker = await self.worker_for(owner)
        if execution.done:  # aborted while its worker started (a StreamReader's, by a pause or a failure)
            return None
        sent = worker.sent  # this execution's place among those sent to the worker; done once it is sent again
        resent = sent[execution.id] = asyncio.get_running_loop().create_future()
        try:
            try:
                return await self._sent_to(worker, execution, op, payload)
            except WorkerDied as exc:
                if execution.status != "created" or self.stopping:
                    raise
                logger.info("Gears execution %s had not started when its worker ended (%s): it runs in the "
                            "replacement", execution.id, exc)  # fmt: skip
                order = list(sent)
                place = order.index(execution.id)
                if place:
                    await sent[order[place - 1]]
            worker = await self.worker_for(owner)
            if execution.done:
                return None
            running = self._sent_to(worker, execution, op, payload)
            resent.set_result(None)
            return await running
        finally:
            sent.pop(execution.id, None)
            if not resent.done():
                resent.set_result(None)

    def _sent_to(self, worker: GearsWorker, execution: Execution, op: str, payload: Callable[[], Any]) -> Any:
        """Send the execution now; an awaitable of its outcome."""
        execution.worker = worker
        # 'created' until a thread of the worker's ExecutionThreads takes it up (on_notice 'started').
        execution.request = asyncio.ensure_future(worker.asked(op, payload()))
        return self._guarded(worker, execution.id, execution.request)

    def start_run(self, owner: str, token: str, forget: bool) -> Execution:
        """A script's run(): read and run in the owner's worker (the reader runs with the owner's rights)."""
        execution = self.executions.create(registered=False)

        async def run() -> Execution:
            try:
                return await self.execute_plan(execution, owner, "batch", lambda: (token, execution.id))
            finally:
                if forget:
                    await self.forget(owner, token)

        self.on_loop(run())
        return execution

    async def run_registration(
        self,
        reg: Registration,
        records: list[Any] | Callable[[], Awaitable[list[Any]]],
        hook: HookCall | KeyHook | None = None,
        no_async: bool = False,
        keep: bool = False,
        depth: int = 0,
        parent: str = "",
    ) -> Execution:
        """One trigger of a registration (on the Gears loop), with its counters; `no_async`: inside a
        transaction, where its steps may not create async records (RedisGears' RFNoAsync).

        `records` may be a call that reads them: a StreamReader's execution exists (triggered,
        `created`) before it reads its batch, as in RedisGears, so it can be aborted before it starts.
        With `keep`, the registration's next execution waits in the worker until the caller calls
        release(execution), once it has dealt with this one's end. `depth`: Execution.depth; `parent`: the
        execution whose call runs this one inside it, whose atomic() it shares in the worker.
        """
        reg.num_triggered += 1
        execution = self.executions.create(registered=True)
        execution.hook = hook
        execution.depth = depth
        execution.on_finish = lambda done: reg.record_run(done.total_ms, done.errors, aborted=done.status == "aborted")
        reg.executions.append(execution.id)
        self.trim(reg)
        if callable(records):
            try:
                records = await records()
            except BaseException as exc:
                if not execution.done:
                    execution.errors.append(f"could not read the batch: {exc}")
                    execution.finish("aborted")
                raise
        # Sync and hooked executions run at once, as RedisGears runs them in Redis' main thread; the others
        # wait for one of the worker's ExecutionThreads.
        queued = hook is None and reg.mode != "sync"
        # A KeysReader's or StreamReader's executions run one at a time, on the registration's own queue
        # (RedisGears' WorkerData); a CommandReader's side by side (with inorder=True, see reg.order).
        serial = reg.reader in _EVENT_READERS
        if reg.args.get("inorder"):
            reg.order = reg.order or asyncio.Lock()  # on the Gears loop; fair, so in trigger order
        # RedisGears runs a sync KeysReader inside the key event: its steps' writes trigger no KeysReader.
        in_key_event = reg.mode == "sync" and reg.reader in ("KeysReader", "KeysOnlyReader")
        if not execution.done:  # aborted while it read its batch
            async with reg.order if reg.args.get("inorder") and reg.order else contextlib.nullcontext():
                got = records
                await self.execute_plan(
                    execution, reg.owner, "run",
                    lambda: (*reg.ref, execution.id, got, queued, no_async, serial, keep, in_key_event, parent),
                )  # fmt: skip
        self.trim(reg)
        return execution

    def trim(self, reg: Registration) -> None:
        """MaxExecutionsPerRegistration: drop the registration's oldest finished executions past the limit.

        Runs when one is created and when one ends, so executions that were still running at the
        last trigger are dropped once they are done, as on RedisGears; an unregistered registration
        keeps none.
        """
        limit = int(self.config.get("MaxExecutionsPerRegistration", 100)) if reg.active else 0
        if limit >= 0:
            self._drop_finished(reg, len(reg.executions) - limit)

    def _drop_finished(self, reg: Registration, most: int) -> None:
        """Drop up to `most` of the registration's finished executions, oldest first."""
        for old_id in list(reg.executions):
            if most <= 0:
                return
            old = self.executions.get(old_id)
            if old is None or old.done:
                reg.executions.remove(old_id)
                self.executions.drop(old_id)
                most -= 1

    async def _stream_execute(self, reg: Registration, read: Callable[[], Awaitable[list[Any]]]) -> streams.Outcome:
        execution = await self.run_registration(reg, read, keep=True)
        if execution.backing_lost:
            # Its steps' writes failed part-way because Redis restarted: leave the batch pending, to run again.
            self.release(execution)
            raise streams.BackingLost(f"execution {execution.id} lost the backing Redis")
        return streams.Outcome(execution.errors, execution.status == "aborted", lambda: self.release(execution))

    def release(self, execution: Execution) -> None:
        """Gears loop: the registration's next execution may start (see run_registration's `keep`)."""
        if execution.worker is not None and execution.request is not None:
            execution.worker.notify("release", execution.id)

    def halt_streams(self, reg: Registration, status: str) -> None:
        """Gears loop: a batch failed (onFailedPolicy 'retry' or 'abort') or the registration pauses: as in
        RedisGears, every stream of it stops at once.

        Batches in flight finish; the executions still waiting for a thread (`created`) are aborted
        now and counted (drop_created), their entries left pending, to be read first when reading starts
        again: after `onFailedRetryInterval` seconds for 'retry', on RG.UNPAUSEREGISTRATIONS after a
        pause, never for 'abort'.
        """
        reg.status = status
        self._stopping(reg.id)
        self.drop_created(reg)
        if status == "WAITING_FOR_RETRY_ON_FAILURE" and reg.id not in self._retrying:
            self._retrying.add(reg.id)
            retry = self.loop.create_task(self._retry_streams(reg))
            retry.add_done_callback(lambda _: self._retrying.discard(reg.id))

    def drop_created(self, reg: Registration) -> None:
        """Gears loop: a StreamReader that stops (failure, pause, RG.UNREGISTER) drops its executions that no
        thread took up yet, counted as aborted at once (in the same step as the failure or before the
        pause's reply, as RedisGears counts them); it does so for mode='async_local' ones (the others
        it has sent to the cluster's shards)."""
        if reg.reader != "StreamReader" or reg.mode != "async_local":
            return
        for execution in [self.executions.get(i) for i in list(reg.executions)]:
            if execution is not None and execution.status == "created":
                on_finish = execution.on_finish
                execution.finish("aborted")
                if execution.worker is not None and execution.request is not None:
                    self._confirm_drop(reg, execution, execution.worker, on_finish)
        self.trim(reg)

    def _confirm_drop(self, reg: Registration, execution: Execution, worker: GearsWorker, on_finish: Any) -> None:
        """Have the worker drop an execution counted as aborted, unless a thread took it up already: its
        `started` news may still be on its way. Such an execution runs to its end and counts as what it
        was; stopped part-way instead, its batch would be acknowledged unprocessed, or run twice."""
        try:  # sent now: before the release of the execution whose end stopped the registration
            answer = worker.asked("drop", execution.id)
        except GearsError:
            return  # the worker went away: the execution ended with it

        async def ask() -> None:
            try:
                if await answer:
                    return
            except GearsError:
                return
            reg.uncount_abort()
            if execution.status == "aborted":  # its end is still to come, and counts then
                execution.status, execution.on_finish = "running", on_finish
            elif on_finish is not None:  # it ended already (status done): count that
                on_finish(execution)

        task = self.loop.create_task(ask())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _is_master(self) -> bool:
        """Pool thread: whether the backing Redis is a master (StreamReaders run only there, as in RedisGears)."""
        return bool(self.links.call("ROLE")[0] == b"master")

    async def _until_master(self) -> None:
        """Gears loop: return once the backing Redis is a master, looking every second (RedisGears' check)."""
        while True:
            try:
                if await self.in_pool(self._is_master):
                    return
            except Exception as exc:  # away for a moment (a restart): look again
                logger.debug("could not ask the backing Redis for its role: %s", exc)
            await asyncio.sleep(1.0)

    def _read_when_master(self) -> None:
        """Gears loop: a stream reader met a replica: every StreamReader reads again once it is a master."""
        if self._master_watch is not None and not self._master_watch.done():
            return

        async def watch() -> None:
            await self._until_master()
            self.replica = False
            logger.info("the backing Redis is a master: StreamReaders read their streams again")
            with self.lock:
                regs = [r for r in self.registrations.values() if r.active and r.reader == "StreamReader"]
            for reg in regs:
                if reg.status == "OK":
                    await self.in_pool(self._rescan, reg)

        self._master_watch = self.loop.create_task(watch())

    async def _retry_streams(self, reg: Registration) -> None:
        """Gears loop: onFailedPolicy='retry': read every stream again, pending entries first, after the interval
        (on a master: a replica waits until it is one, as in RedisGears)."""
        await asyncio.sleep(reg.args["onFailedRetryInterval"])
        await self._until_master()
        if reg.status != "WAITING_FOR_RETRY_ON_FAILURE" or not reg.active:
            return
        await self._streams_ended(reg)
        if reg.status == "WAITING_FOR_RETRY_ON_FAILURE" and reg.active:
            reg.status = "OK"
            await self.in_pool(self._rescan, reg)

    async def _streams_ended(self, reg: Registration) -> None:
        """Gears loop: wait (at most the shutdown grace) for the stopping readers of `reg` to end their batch."""
        tasks = [w.task for (r, _), w in list(self.workers.items()) if r == reg.id and w.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.shutdown_grace)

    # Key events ----------------------------------------------------------------------------------

    def on_key_event(self, event: str, db: int, key: bytes) -> None:
        """Main loop: start what this event triggers (KeysReader executions, stream workers)."""
        if db != self.backing.db:
            return
        if key == _SESSIONS_KEY:
            self._sessions_changed()
            return
        quiet = self.keys_quiet  # a reader's read, a sync KeysReader's write: unheard (LinkPool.transaction)
        if not quiet:
            for collector in self._collectors:
                collector.append((event, key))
        if not self.registrations or self.replica:  # no registration, or a replica: nothing runs (as RedisGears)
            return
        name = key.decode("utf-8", "replace")
        with self.lock:
            regs = [r for r in self.registrations.values() if r.active]
        for reg in regs:
            if reg.reader in ("KeysReader", "KeysOnlyReader") and (quiet or reg.args.get("commands")):
                continue  # unheard, or they run from their commands only (run_key_hooks)
            if reg.reader in ("KeysReader", "KeysOnlyReader"):
                types = reg.args["eventTypes"]
                if key_matches(reg.args["prefix"], name) and event_matches(types, event):
                    started = self.on_loop(self._on_key(reg, event, key))
                    if reg.mode == "sync":
                        self.sync_pending.add(started)
                        started.add_done_callback(self.sync_pending.discard)
            elif reg.reader == "StreamReader" and event == "xadd" and key_matches(reg.args["prefix"], name):
                # Called now, in the order the events came (a reader's mark must come after them: on_mark).
                self.loop.call_soon_threadsafe(self.poke_stream, reg, key)
                if reg.mode == "sync":  # the writer waits until the stream's reader has nothing left to run
                    settled = self.on_loop(self._settle_stream(reg, key))
                    self.sync_pending.add(settled)
                    settled.add_done_callback(self.sync_pending.discard)

    def on_mark(self, token: bytes) -> None:
        """Main loop: a mark came back on the key events: its reader gets it after the events that came before.
        Two marks frame a Gears reader's reads and a sync KeysReader's writes, whose events no KeysReader sees."""
        if token in (KEYS_QUIET_ON, KEYS_QUIET_OFF):
            self.keys_quiet = token == KEYS_QUIET_ON
            return
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._mark_came, token)

    def stream_mark(self, worker: streams.StreamWorker) -> bytes | None:
        """Gears loop: a token a reader publishes with a look at its stream (its start count, an idle look: see
        StreamWorker._look); None while the key events are down (nothing would bring it back)."""
        if self.events is None or not self.events.ready.is_set():
            return None
        token = b"stream-look:%d" % next(self._mark_ids)
        self._marks[token] = worker
        return token

    def _mark_came(self, token: bytes) -> None:
        worker = self._marks.pop(token, None)
        if worker is not None:
            worker.marked(token)

    async def _on_key(
        self, reg: Registration, event: str, key: bytes, hook: Any = None, no_async: bool = False
    ) -> None:
        # Until its execution exists (triggered), RG.DUMPREGISTRATIONS waits for it: see triggered().
        reading: asyncio.Future[None] = self.loop.create_future()
        self._keys_reading.add(reading)
        # Keys are read side by side, but RedisGears triggers in the key event itself: an event's execution
        # is created after the registration's earlier events' (their turn), in the order the events came.
        turn: asyncio.Future[None] = self.loop.create_future()
        before, reg.event_turn = reg.event_turn, turn
        try:
            kind = await self.in_pool(key_type, self.links, key) if reg.args["keyTypes"] else None
            if kind is not None and kind not in reg.args["keyTypes"]:
                return
            if reg.reader == "KeysOnlyReader":  # the key's name is its record: nothing to read
                record = from_redis(key)
            else:
                record = await self.in_pool(key_record, self.links, key, event, reg.args["readValue"], kind)
            if before is not None:
                await before
        except Exception as exc:
            logger.warning("registration %s could not read %r: %s", reg.id, key, exc)
            return
        finally:
            self._keys_reading.discard(reading)
            reading.set_result(None)
            _after(before, turn)
            if reg.event_turn is turn:
                reg.event_turn = None
        await self.run_registration(reg, [record], hook, no_async)

    def _sessions_changed(self) -> None:
        """Main loop: the sessions hash changed. On a replica (replication wrote it), follow it (lifecycle.follow)."""
        if self._following is not None and not self._following.done():
            self._follow_again = True
            return

        async def follow() -> None:
            from gearcam.runtime.gears import lifecycle

            again = True
            while again:
                self._follow_again = False
                try:
                    if not await self.call(self.in_pool(self._is_master)):
                        self.mark_replica()
                        await lifecycle.follow(self)
                except Exception as exc:  # the next change tries again
                    logger.warning("could not follow the replicated Gears sessions: %s", exc)
                again = self._follow_again

        self._following = asyncio.ensure_future(follow())

    def mark_replica(self) -> None:
        """Main loop: the backing Redis is a replica: no registration runs until it is a master again."""
        if not self.replica:
            self.replica = True
            logger.info("the backing Redis is a replica: Gears registrations wait until it is a master")
        self.loop.call_soon_threadsafe(self._read_when_master)

    def poke_stream(self, reg: Registration, key: bytes, added: bool = True) -> None:
        """Gears loop: an XADD to `key` (`added`), or a scan found it: tell the worker of (registration,
        stream), starting one if needed."""
        if self.closing or not reg.active or reg.status != "OK":
            return
        worker = self.workers.get((reg.id, key))
        if worker is not None and not worker.stopping:
            if added:
                worker.add()
            else:
                worker.recheck = True
                worker.wake.set()
            return
        worker = streams.StreamWorker(
            reg, key, self.links, self.in_pool, self._stream_execute, self.stream_groups, self.halt_streams,
            self._read_when_master, stamped=added, mark=self.stream_mark,
        )  # fmt: skip
        self.workers[(reg.id, key)] = worker
        worker.task = self.loop.create_task(worker.run())

        def ended(_: Any, worker: streams.StreamWorker = worker) -> None:
            if self.workers.get((reg.id, key)) is worker:  # not a newer one started while it finished
                del self.workers[(reg.id, key)]

        worker.task.add_done_callback(ended)

    async def _settle_stream(self, reg: Registration, key: bytes) -> None:
        """Gears loop: a sync StreamReader, after poke_stream: wait until its reader ran what it can run now."""
        worker = self.workers.get((reg.id, key))
        if worker is not None:
            await worker.settled()

    def stream_groups(self, key: bytes) -> set[str]:
        """Consumer groups of the StreamReader registrations that read `key`."""
        name = key.decode("utf-8", "replace")
        with self.lock:
            # Aborted registrations count too: their entries wait for an operator, not for trimming.
            regs = [r for r in self.registrations.values() if r.reader == "StreamReader"]
        return {streams.group_name(r) for r in regs if key_matches(r.args["prefix"], name)}

    def scan_streams(self, reg: Registration) -> None:
        """Pool thread: start workers for the streams that already match a new StreamReader registration."""
        prefix: str = reg.args["prefix"]
        pattern = glob_escape(prefix[:-1]) + "*" if prefix.endswith("*") else glob_escape(prefix)
        cursor: Any = 0
        while True:
            # RedisGears finds a new registration's streams with SCAN through RM_Call: counted.
            cursor, keys = self.links.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, "TYPE", "stream", own=False)
            for key in keys:
                self.loop.call_soon_threadsafe(self.poke_stream, reg, key, False)
            if int(cursor) == 0:
                return

    def resync(self) -> None:
        """Main loop, after key events (re)subscribed: catch up on streams written while they were down."""
        self.keys_quiet = False  # a mark that closed a sync KeysReader's write may have been lost with the link
        if not self._thread.is_alive():
            return  # not started yet: restoring scans the streams itself
        with self.lock:
            regs = [r for r in self.registrations.values() if r.active and r.reader == "StreamReader"]
        for reg in regs:
            self.pool.submit(self._rescan, reg)

    def _rescan(self, reg: Registration) -> None:
        try:
            self.scan_streams(reg)
        except Exception as exc:
            logger.warning("could not look for streams of registration %s: %s", reg.id, exc)

    async def pause(self, reg: Registration) -> None:
        """Main loop: RG.PAUSEREGISTRATIONS: the stream readers stop at once (batches in flight finish, the
        ones waiting for a thread are aborted), as in RedisGears."""

        async def halt() -> None:
            if reg.status in ("OK", "WAITING_FOR_RETRY_ON_FAILURE"):
                self.halt_streams(reg, "PAUSED")

        await self.call(halt())

    async def unpause(self, reg: Registration) -> None:
        """Main loop: RG.UNPAUSEREGISTRATIONS: read again, pending entries first."""

        async def resume() -> None:
            await self._streams_ended(reg)  # the batches in flight at the pause: not read twice
            reg.status = "OK"
            await self.in_pool(self.scan_streams, reg)

        await self.call(resume())

    # mode='sync' --------------------------------------------------------------------------------

    def wants_sync(self, name: str, in_multi: bool = False, queued: int = 0) -> bool:
        """Main loop: whether a client's command must wait for the sync registrations its writes trigger: a
        write, a script (which may write), or the EXEC of a transaction that queued commands."""
        if not self.sync_registrations:
            return False
        if in_multi:
            return name == "EXEC" and queued > 0
        return name.lower() in self.write_commands

    async def sync_settle(self, link: BackendLink) -> None:
        """Main loop, after a client's write (or an execution it ran: RG.PYEXECUTE, RG.TRIGGER, a hook) and
        before its reply: the sync registrations its writes triggered have run."""
        if not self.sync_registrations or self.events is None:
            return
        if not await self.events.fence(link, self.settings.connect_timeout):
            return
        pending = [asyncio.wrap_future(f) for f in list(self.sync_pending)]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.gears_max_execution_seconds or None)

    async def triggered(self, link: BackendLink, timeout: float = 1.0) -> None:
        """Main loop, before RG.DUMPREGISTRATIONS/RG.DUMPEXECUTIONS: what the client's earlier writes trigger exists.

        In RedisGears a write triggers a KeysReader's or StreamReader's execution before its reply;
        here the key event comes after, so an operator reading the counters right after a write
        would see the trigger missing. The client's events are fenced, then the KeysReaders reading
        the keys and each stream reader have `timeout` seconds to create what the events trigger.
        """
        with self.lock:
            triggers = any(r.reader in _EVENT_READERS and r.active for r in self.registrations.values())
        if not triggers or self.events is None or not await self.events.fence(link, timeout):
            return

        async def quiet() -> None:
            waits: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(w.quiet.wait()) for w in list(self.workers.values()) if not w.quiet.is_set()
            ]
            waits += [asyncio.shield(f) for f in self._keys_reading]  # cancelled if late: not the reading itself
            if waits:
                _, late = await asyncio.wait(waits, timeout=timeout)
                for wait in late:
                    wait.cancel()

        if self._thread.is_alive():
            await self.call(quiet())

    def count_sync(self) -> None:
        """After registrations changed: how many are mode='sync', and whether stream events are needed."""
        with self.lock:
            self.sync_registrations = sum(
                1 for r in self.registrations.values()
                if r.mode == "sync" and r.reader in _EVENT_READERS and r.active
            )  # fmt: skip
            any_registration = bool(self.registrations)
        if self.events is not None:
            self.events.want_stream_events(any_registration)

    def load_command_table(self) -> None:
        """Pool thread: the names of the backing Redis' write commands (sync registrations wait on those)."""
        names = set()
        for entry in self.links.call("COMMAND"):
            flags = {f.decode() if isinstance(f, bytes) else str(f) for f in entry[2]}
            name = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
            # Scripts may write: Redis 7.2 flags EVAL and FCALL may_replicate, 7.0 flags them neither way.
            if flags & {"write", "may_replicate"} or name in _SCRIPTS_THAT_MAY_WRITE:
                names.add(name)
            self.key_specs[name] = (int(entry[3]), int(entry[4]), int(entry[5]))
        self.write_commands = names

    # Command hooks ---------------------------------------------------------------------------------

    def _command_info(self, name: str) -> CommandShape | None:
        """Pool thread: COMMAND INFO's flags and key range of `name` as RedisGears reads them to hook it: the
        runtime's own commands (AI.*, RG.*) as it registers them, the others the backing Redis'; None if none."""
        owned = self.owned_info(name) if self.owned_info is not None else None
        if owned is not None:
            return owned
        (info,) = self.links.call("COMMAND", "INFO", name)
        if not info:
            return None
        flags = {f.decode() if isinstance(f, bytes) else str(f) for f in info[2]}
        return flags, int(info[3]), int(info[4]), int(info[5])

    def check_hook(self, reg: Registration) -> None:
        """Pool thread: refuse what RedisGears refuses to hook (the command table says)."""
        info = self._command_info(reg.args["hook"])
        if info is None:
            raise GearsError("Can not override an unexisting command")
        flags, first, last, step = info
        if "noscript" in flags:
            raise GearsError("Can not override a command which are not allowed inside a script")
        if reg.args["keyprefix"] is not None:
            if "movablekeys" in flags:
                raise GearsError("Can not override a command with moveable keys by key prefix")
            if first <= 0:
                raise GearsError("Can not override a command by key prefix with none positive first key")
        reg.args["keys"] = (first, last, step)

    def check_key_hook(self, reg: Registration) -> None:
        """Pool thread: KeysReader(commands=[...]): RedisGears' checks, and keymiss events turned on."""
        for name in reg.args["commands"]:
            info = self._command_info(name)
            if info is None:
                raise GearsError(f"bad reply from COMMAND INFO {name}: Can not hook an unexisting command")
            flags, first, last, step = info
            if "noscript" in flags:
                raise GearsError("Can not hook a command which are not allowed inside a script")
            if "movablekeys" in flags:  # RedisGears hooks KeysReader commands by its prefix, '*' included
                raise GearsError("Can not hook a command with moveable keys by key prefix")
            self.key_specs[name] = (first, last, step)
        self.hear_key_misses(f"a KeysReader hooking {', '.join(reg.args['commands'])}")

    def hear_key_misses(self, who: str) -> None:
        """Pool thread: `keymiss` events on, for a KeysReader that may fire on them (RedisGears subscribes to
        them whatever notify-keyspace-events says: a registration with no eventTypes fires on them too)."""
        try:
            current = self.links.call("CONFIG", "GET", "notify-keyspace-events")[1]
            current = current.decode() if isinstance(current, bytes) else str(current)
            if "m" not in current:
                self.links.call("CONFIG", "SET", "notify-keyspace-events", merge_flags(current) + "m")
        except CommandError as exc:  # a managed Redis: RedisGears hears them anyway (its subscription needs no CONFIG)
            logger.warning(
                "%s sees key misses only where the backing Redis' notify-keyspace-events has 'm', and the "
                "runtime may not check or set it (%s): add m there (redis.conf, your service's parameters) "
                "or grant the runtime's user +config|get +config|set", who, exc,
            )  # fmt: skip
            return
        if self.events is not None:
            self.events.require("m")  # kept on from now on, as RedisGears' own subscription stays

    def activate_hook(self, reg: Registration) -> None:
        with self.lock:
            if reg.reader == "CommandReader" and reg.args.get("hook"):
                self.hooks[reg.args["hook"]] = [reg, *self.hooks.get(reg.args["hook"], [])]
            for name in reg.args.get("commands") or [] if reg.reader != "CommandReader" else []:
                self.key_hooks[name] = [*self.key_hooks.get(name, []), reg]
        self._announce_hooks()

    def deactivate_hook(self, reg: Registration) -> None:
        with self.lock:
            for table in (self.hooks, self.key_hooks):
                for name, regs in list(table.items()):
                    left = [r for r in regs if r is not reg]
                    if left:
                        table[name] = left
                    else:
                        table.pop(name, None)
        self._announce_hooks()

    def hooked_commands(self) -> list[str]:
        """Commands some CommandReader hooks (upper case): Gears code sends these to the runtime, which runs the
        hooks that apply (hook_from_code)."""
        with self.lock:
            return sorted(name.upper() for name, regs in self.hooks.items() if regs)

    def _announce_hooks(self) -> None:
        names = self.hooked_commands()
        for worker in list(self.processes.values()):
            self.loop.call_soon_threadsafe(worker.notify, "hooks", names)

    def key_hooks_for(self, name: str) -> list[Registration]:
        """Main loop: the KeysReader registrations a client's command runs (commands=[...])."""
        return [r for r in self.key_hooks.get(name.lower(), []) if r.active]

    def _command_keys(self, name: str, args: list[bytes]) -> set[bytes]:
        return set(command_keys(self.key_specs.get(name.lower(), (1, 1, 1)), args[1:]) or ())

    async def _key_events_of(
        self, link: BackendLink, send: Coroutine[Any, Any, _T]
    ) -> tuple[_T, list[tuple[str, bytes]]]:
        """Main loop: what `send` answers, and the key events seen until a fence published after it."""
        collected: list[tuple[str, bytes]] = []
        self._collectors.append(collected)
        try:
            reply = await send
            if self.events is not None:
                await self.events.fence(link, self.settings.connect_timeout)
        finally:
            self._collectors.remove(collected)
        return reply, collected

    async def _fire_key_hooks(
        self,
        regs: list[Registration],
        events: list[tuple[str, bytes]],
        command: list[bytes],
        in_transaction: bool = False,
    ) -> KeyHook:
        """Main loop: run the registrations these events of `command` call for; the hook holds its override.

        Inside a transaction, as on RedisGears, a sync registration runs without async records
        and may override; the others run but cannot (the client may not be blocked there).
        """
        hook = KeyHook(command)
        for event, key in events:
            name = key.decode("utf-8", "replace")
            for reg in regs:
                if key_matches(reg.args["prefix"], name) and event_matches(reg.args["eventTypes"], event):
                    if in_transaction and reg.mode != "sync":
                        await self.call(self._on_key(reg, event, key))
                    else:
                        await self.call(self._on_key(reg, event, key, hook, no_async=in_transaction))
        return hook

    async def run_key_hooks(
        self, link: BackendLink, regs: list[Registration], args: list[bytes], send: Coroutine[Any, Any, bytes]
    ) -> bytes | Any:
        """Main loop: run a client's command, then the KeysReader registrations its key events call for.

        The events of the command are the ones seen before a fence published after it (as for
        mode='sync'), on the keys the command names. The reply is the command's, unless a
        registration called override_reply(value).
        """
        frame, collected = await self._key_events_of(link, send)
        keys = self._command_keys(args[0].decode("utf-8", "replace"), args)
        hook = await self._fire_key_hooks(regs, [(event, key) for event, key in collected if key in keys], args)
        await self.sync_settle(link)  # the command's (and the hooks' writes') sync registrations
        return frame if hook.override is _NO_OVERRIDE else hook_reply(hook.override)

    async def run_key_hooks_at_exec(
        self, link: BackendLink, queued: list[tuple[int, list[bytes]]], send: Coroutine[Any, Any, Any]
    ) -> Any:
        """Main loop: EXEC of a transaction that queued hooked commands (`queued`: their places and arguments).

        Redis runs the transaction whole, so the registrations run after it, each on the events of
        its command (`attribute_key_events`), and an override replaces that command's reply in
        EXEC's. A transaction that did not run (EXECABORT, a WATCHed key changed) runs none.
        """
        result, collected = await self._key_events_of(link, send)
        if not isinstance(result, list):
            return result
        names = [args[0].decode("utf-8", "replace") for _, args in queued]
        keys = [self._command_keys(name, args) for name, (_, args) in zip(names, queued, strict=True)]
        result = list(result)
        for (position, args), name, events in zip(queued, names, attribute_key_events(collected, keys), strict=True):
            hook = await self._fire_key_hooks(self.key_hooks_for(name), events, args, in_transaction=True)
            if hook.override is not _NO_OVERRIDE and position < len(result):
                result[position] = hook_reply(hook.override)
        return result

    def hooks_for(self, name: str, args: list[bytes]) -> list[Registration]:
        """Main loop: the hooks a client's command goes through (by name, and key prefix when given)."""
        return [r for r in self.hooks.get(name.lower(), []) if r.active and _prefix_matches(r, args)]

    async def hook_from_code(self, owner: str, caller: str, args: list[bytes]) -> list[Any]:
        """Main loop: a command Gears code of `owner`'s worker sent (execute()) that a CommandReader hooks.
        RedisGears' command filter sees the module's own RM_Calls too, so the hooks that apply run, as inside
        such a call: `sync` ones only (Redis denies blocking there), without async records. `[True, reply]`
        once they ran; `[False, None]` when none applies by key prefix (the worker sends the command itself).

        Past the last hook the command goes back to the calling worker, to run with its owner's rights, as
        the call would have (an AI.* or RG.* one to the runtime's own commands, as execute() sends those).
        """
        regs = self.hooks_for(args[0].decode("utf-8", "replace"), args)
        if not regs:
            return [False, None]
        depth = self.nested_depth(caller)
        check_nesting(depth)
        owned = args[0].upper().startswith((b"AI.", b"RG."))
        terminal = self._owned if owned else functools.partial(self._in_worker, owner)
        link = await self.ai_link()
        reply = await self.run_hook(link, regs, args, nested=True, terminal=terminal, depth=depth, parent=caller)
        return [True, plain_reply(reply)]

    def nested_depth(self, caller: str) -> int:
        """How deep a call from the execution `caller` (its id; empty: a script's top level) runs (Execution.depth)."""
        calling = self.executions.get(caller) if caller else None
        return calling.depth + 1 if calling is not None else 0

    async def _owned(self, args: list[bytes], caller: str) -> Any:
        """Main loop: an AI.* or RG.* command the execution `caller` sent, run by the runtime."""
        if self.module_command is None:
            raise GearsError("the runtime's commands are not available to Gears code")
        return await self.module_command(args, caller)

    async def _in_worker(self, owner: str, args: list[bytes], caller: str) -> Any:
        """Main loop: a command run by `owner`'s worker on its own link (its owner's rights); an error reply raised.
        A Redis command runs no execution, so `caller` (the hook that called call_next()) is not needed there."""
        worker = self.processes.get(owner)
        if worker is None or not worker.alive:
            raise ErrorReply("ERR the Gears worker that sent the command is gone; send it again")
        try:
            return await self.call(worker.request("command", args))
        except GearsError as exc:
            raise ErrorReply(str(exc)) from None

    async def run_hook(
        self, link: BackendLink, regs: list[Registration], args: list[bytes], nested: bool = False,
        terminal: Terminal | None = None, depth: int = 0, parent: str = "",
    ) -> Any:  # fmt: skip
        """Main loop: a client's command goes to the newest hook; call_next() reaches the next one, then Redis
        (or `terminal`, for a command the runtime serves itself).

        A hook reached by call_next() or from Gears code (`nested`) runs as RedisGears runs it, inside the
        module's own call of the command, where Redis denies blocking: a `sync` one only, and its steps may
        not create async records. `depth` and `parent`: run_registration's, for a hook reached from Gears code.
        """
        if not regs:  # the client's command, reached through the hooks
            return await (terminal(args, parent) if terminal is not None else link.call(*args, own=False))
        if nested and regs[0].mode != "sync":
            raise ErrorReply(NON_SYNC_IN_TRANSACTION)
        hook = HookCall(self, link, regs[1:], args[0], terminal, depth)
        record = [from_redis(a) for a in args]
        execution: Execution = await self.call(
            self.run_registration(regs[0], [record], hook, no_async=nested, depth=depth, parent=parent)
        )
        if not nested:  # what call_next() and the hooks' own writes triggered (the outermost hook waits for all)
            await self.sync_settle(link)
        if execution.errors:
            raise ErrorReply(execution.errors[0])
        if len(execution.results) != 1:
            raise ErrorReply("Command hook must return exactly one result")
        return hook_reply(execution.results[0])

    async def streams_settled(self, timeout: float) -> None:
        """Main loop: every StreamReader has run and acknowledged the batches it can run now (or `timeout` passed).

        Before a snapshot (SAVE, BGSAVE, DEBUG RELOAD), so that it never holds a batch whose
        records already ran but whose entries are not acknowledged yet: loaded again, that
        batch would run twice. RedisGears' snapshot cannot fall between the two either.
        """

        async def settle() -> None:
            workers = list(self.workers.values())
            if workers:
                await asyncio.wait([asyncio.ensure_future(w.settled()) for w in workers], timeout=timeout)

        if self._thread.is_alive():
            await asyncio.wrap_future(self.on_loop(settle()))

    def keep_sessions(self) -> None:
        """Main loop: a FLUSHALL or FLUSHDB went by and took the sessions' hash with the data. RedisGears'
        sessions are no keys: they outlive it, and a restart after it. Written again."""

        async def save() -> None:
            try:
                await self.in_pool(save_sessions_again, self.links, lambda: self.sessions)
            except Exception as exc:
                logger.warning("could not write the Gears sessions again after a FLUSHALL: %s (a restart of the "
                               "runtime would not find them)", exc)  # fmt: skip

        if self.sessions and not self.replica and self._thread.is_alive():  # a replica's come from its master
            self.on_loop(save())

    async def after_reload(self) -> None:
        """Main loop: the backing Redis loaded its data again: the sessions' scripts start again with fresh
        globals, as RedisGears deserializes its registrations from the data it loads; StreamReaders
        re-read, pending entries first."""
        with self.lock:
            regs = [r for r in self.registrations.values() if r.active and r.reader == "StreamReader"]
        for reg in regs:
            await self.stop_workers(reg)
        await self.call(self._load_sessions_again())
        for reg in regs:
            if reg.status != "PAUSED":
                await self.call(self.in_pool(self.scan_streams, reg))

    async def stop_workers(self, reg: Registration, wait: bool = True) -> None:
        """Main loop: let the registration's stream workers finish their batch in flight, and (`wait`) wait for them.

        An UPGRADE activates the new registration only then, so the two never read the same
        consumer group at once (which would run the batch in flight twice).
        """
        await asyncio.wrap_future(self.on_loop(self._stop_workers(reg.id, wait)))

    def _stopping(self, reg_id: str) -> list[streams.StreamWorker]:
        """Gears loop: the registration's stream workers, told to finish their batch in flight and stop."""
        workers = [w for (r, _), w in list(self.workers.items()) if r == reg_id]
        for worker in workers:
            worker.stopping = True
            worker.wake.set()
        return workers

    async def _stop_workers(self, reg_id: str, wait: bool = True) -> None:
        workers = self._stopping(reg_id)
        if not wait:
            return
        await self._wait_workers(workers, self.settings.shutdown_grace)


async def _end_the_rest() -> None:
    """Gears loop, last: cancel what still runs there (a worker cancelled past the grace, its calls) and let it end.

    A task left pending when the loop stops is destroyed with it, and asyncio logs that as an error.
    """
    rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=2)
