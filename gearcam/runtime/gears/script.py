"""The globals a Gears script sees, and loading a script: RedisGears 1.2's Python environment.

Runs in a Gears worker process. A script gets every name RedisGears 1.2's builder module
puts in its globals (../shared/reference/redisgears-1.2.md §4): the modules `redisgears`
(also `rg`), `asyncio`, `copy`, `io`, `cProfile`, `pstats`; `execute`, `atomic`, `log`,
`configGet`, `gearsCtx`, `GB`/`GearsBuilder`, `hashtag`, `registerTE`, `runCoroutine`,
`createKeysOnlyReader`, the futures and profiler helpers and the deprecated aliases.
`import redisgears` and `import redisAI` resolve to modules built here, in the script's
globals and in sys.modules (for the libraries a script uses).
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import cProfile
import io
import logging
import pstats
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gearcam.errors import NetworkError
from gearcam.runtime.gears import ai_keys
from gearcam.runtime.gears.builder import GB, GearsBuilder, GearsError, Plan, ScriptHooks, script_scope
from gearcam.runtime.gears.engine import ExecutionAborted, async_allowed, current_step, describe_error
from gearcam.runtime.gears.link import CommandError, LinkPool
from gearcam.runtime.gears.records import SHARD_RECORD, command_args, from_redis
from gearcam.runtime.gears.registrations import parse_args
from gearcam.runtime.gears.replies import NO_ASYNC, NO_COMMAND_CTX, NO_HOOK_CTX
from gearcam.runtime.gears.sessions import SESSIONS_KEY

__all__ = [
    "HASHTAG", "ChainLock", "LoadedScript", "PendingRegistration", "PendingRun", "ScriptEnv", "check_serializable",
    "environment_of", "load_script",
]  # fmt: skip

logger = logging.getLogger("gearcam.gears.script")
_LEVELS = {"debug": logging.DEBUG, "verbose": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING}
# Hash tag of slot 0: what a one-shard "cluster" serves.
HASHTAG = "06S"

# Commands that would leave the execution's connection in another state than the next one expects.
_REFUSED = {
    "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "SWAPDB", "AUTH", "HELLO", "RESET", "QUIT",
    "MONITOR", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "SYNC",
    "PSYNC", "REPLCONF",
}  # fmt: skip
# Blocking commands return at once from Gears code, as through RedisGears' RM_Call: inside
# MULTI/EXEC Redis runs them without blocking.
_BLOCKING = {
    "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
}  # fmt: skip


def _blocks(name: str, args: tuple[Any, ...]) -> bool:
    if name in _BLOCKING:
        return True
    if name in ("XREAD", "XREADGROUP"):
        return any(isinstance(a, str | bytes) and a.upper() in ("BLOCK", b"BLOCK") for a in args)
    return False


class ChainLock:
    """atomic()'s lock, held by a chain of executions rather than a thread.

    RedisGears' atomic() holds Redis' lock, and a trigger or hook that the enclosed code's call runs
    inside Redis runs on the same thread, inline: it enters atomic() too. Here such an execution runs
    on a thread of its own while the caller waits, so the lock is re-entered by `chain()`, which is the
    same for an execution and those run inside its calls (its own thread outside any execution).
    """

    def __init__(self, chain: Callable[[], object]) -> None:
        self._chain = chain
        self._free = threading.Condition()
        self._owner: object = None
        self._count = 0

    def acquire(self) -> None:
        chain = self._chain()
        with self._free:
            while self._count and self._owner != chain:
                self._free.wait()
            self._owner = chain
            self._count += 1

    def release(self) -> None:
        with self._free:
            self._count -= 1
            if not self._count:
                self._owner = None
                self._free.notify_all()


class _Atomic:
    """atomic(): the enclosed commands are not interleaved with other Gears code (see docs/gears.md)."""

    def __init__(self, lock: ChainLock, depth: threading.local) -> None:
        self._lock = lock
        self._depth = depth

    def __enter__(self) -> _Atomic:
        self._lock.acquire()
        self._depth.n = getattr(self._depth, "n", 0) + 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth.n -= 1
        self._lock.release()


class GearsSession:
    """What getGearsSession() returns: the session whose code is running (its id)."""

    def __init__(self, session_id: str | None = None) -> None:
        self.id = session_id


class GearsFuture:
    """RedisGears' future: a step returns it and another thread completes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[Any] = asyncio.Future(loop=loop)
        self.returned = False  # set when the step that made it returned
        weakref.finalize(self, _abandoned, loop, self._future)

    def detach(self) -> asyncio.Future[Any]:
        """What the engine awaits: the completion, without keeping this object (and so the script's hold) alive."""
        return self._future

    def _check(self) -> None:
        if not self.returned:
            raise GearsError("Can not handle future untill it returned from the callback")

    def continueRun(self, result: Any) -> None:  # noqa: N802 - RedisGears' name
        self._check()
        self._resolve(_set_result, result)

    def continueFailed(self, error: Any) -> None:  # noqa: N802 - RedisGears' name
        self._check()
        self._resolve(_set_error, GearsError(str(error)))

    def _resolve(self, setter: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
        """Completed from a step (another execution's): the waiting execution goes on once that step returned.

        RedisGears queues the continuation while the completing step keeps the GIL, so the step's
        next lines run before the continued execution's (RedisGears' own tests rely on it: a step
        completes a future, then clears the global that the continuation sets again). Here waking the
        loop is a system call that lets other threads run, so the wake-up waits for the step's end.
        """
        step = current_step()
        if step is None:  # a thread of the script's, a timer: at once
            self._loop.call_soon_threadsafe(setter, self._future, value)
        else:  # the callback holds this object, whose collection would fail the record (_abandoned)
            step.after += (lambda: self._wake(setter, value),)

    def _wake(self, setter: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(setter, self._future, value)

    def __await__(self) -> Any:
        return self._future.__await__()


def _word(arg: Any) -> str:
    return bytes(arg).decode("utf-8", "replace") if isinstance(arg, bytes | bytearray) else str(arg)


def _amended(name: str, args: tuple[Any, ...]) -> bool:
    """Whether the runtime has its part to add to this command's reply: inside Redis, RM_Call answers INFO,
    MODULE LIST, CONFIG GET and CLIENT LIST with the server's own modules, their sections, its port and clients."""
    sub = _word(args[0]).upper() if args else ""
    return name == "INFO" or (sub, name) in (("LIST", "MODULE"), ("GET", "CONFIG"), ("LIST", "CLIENT"))


def _without_internal_key(name: str, reply: Any) -> Any:
    """KEYS and SCAN as Gears code sees them: the runtime's own session store is not the script's data."""
    if name == "KEYS" and isinstance(reply, list):
        return [k for k in reply if k != SESSIONS_KEY]
    if name == "SCAN" and isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], list):
        return [reply[0], [k for k in reply[1] if k != SESSIONS_KEY]]
    return reply


def _abandoned(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
    """A gearsFuture nobody can complete any more (garbage collected): its record fails, as on RedisGears."""
    if not loop.is_closed():
        loop.call_soon_threadsafe(_set_dropped, future)


def _set_dropped(future: asyncio.Future[Any]) -> None:
    """The failure of an abandoned gearsFuture, marked as seen: the engine awaiting it still gets it, and one that
    no engine awaits (its step returned something else) is not logged as an unretrieved error."""
    _set_error(future, GearsError("Async record did not called continue"))
    if future.done() and not future.cancelled():
        future.exception()


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_error(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


@dataclass
class ScriptEnv:
    """What a script's globals need from its worker: links, configuration, the loop, `redisAI`."""

    links: LinkPool
    config: dict[str, Any]
    atomic_lock: ChainLock
    loop: asyncio.AbstractEventLoop
    redisai: types.ModuleType | None = None
    # Runs an RG.* or AI.* command in the runtime and returns its reply (GearsError for an error reply).
    module_command: Callable[[list[Any]], Any] | None = None
    # The runtime's part of a reply the backing Redis gave (INFO, MODULE LIST, CONFIG GET, CLIENT LIST): _amended.
    amend: Callable[[list[Any], Any], Any] | None = None
    # call_next(...) of command hooks, override_reply(value) and get_command() of KeysReader(commands=[...])
    # registrations, served by the runtime.
    call_next: Callable[..., Any] | None = None
    override_reply: Callable[[Any], None] | None = None
    get_command: Callable[[], list[str]] | None = None
    # Called when execute() lost the backing Redis (it restarted): the execution's batch is run again.
    backing_lost: Callable[[], None] | None = None
    # Commands a CommandReader hooks (upper case), and what runs one through its hooks: as RedisGears' command
    # filter sees the module's own calls, execute() of one goes to the runtime first (gears.hooked).
    hooked: set[str] = field(default_factory=set)
    hooked_command: Callable[[list[Any]], list[Any]] | None = None
    # The runtime's own CONFIG parameters (own_settings.py): a CONFIG SET of one here would change the backing
    # Redis' instead (its port, say, and the runtime would lose it), so it is refused.
    own_settings: frozenset[str] = frozenset()
    # Whether the step calling execute() runs where RedisGears runs a sync KeysReader: inside a key event.
    in_key_event: Callable[[], bool] | None = None
    _depth: threading.local = field(default_factory=threading.local)
    _sessions: threading.local = field(default_factory=threading.local)

    # -- commands ------------------------------------------------------------------------------

    def execute(self, command: Any, *args: Any) -> Any:
        return self._execute(command, args, hooked=True)

    def unhooked(self, command: Any, *args: Any) -> Any:
        """execute() past the last command hook: where a hook's call_next() leaves a call of Gears code (its name
        may come as the runtime's bytes)."""
        return self._execute(_word(command), args, hooked=False)

    def _execute(self, command: Any, args: tuple[Any, ...], hooked: bool) -> Any:
        if not isinstance(command, str):
            raise GearsError("the given command must be a string")
        name = command.upper()
        if name in _REFUSED:
            raise GearsError(
                f"{command} is not allowed from Gears code: every execution starts on a clean connection "
                "(DB 0, no transaction); group commands with atomic() instead (docs/gears.md)"
            )
        if name == "CONFIG":
            self._refuse_own_settings(args)
        if hooked and name in self.hooked and self.hooked_command is not None and self._hookable(name, args):
            ran, reply = self.hooked_command([command, *command_args(args)])
            if ran:
                return _without_internal_key(name, from_redis(reply))
        if name.startswith(("RG.", "AI.")):
            # The modules' own commands: served by the runtime, as RedisGears and RedisAI serve them to RM_Call.
            if self.module_command is None:
                raise GearsError(f"{command} is not available here")
            return from_redis(self.module_command([command, *command_args(args)]))
        try:
            quiet = self.in_key_event is not None and self.in_key_event()
            if name == "TYPE" and len(args) == 1:  # RedisAI's names for stored AI objects (gears/ai_keys.py)
                return ai_keys.type_of(self._sender(quiet), command_args(args)[0], loud=True)
            if name == "SCAN":
                reply = ai_keys.scan(self.links, [command, *command_args(args)])
            elif quiet or _blocks(name, args):
                reply = self._in_transaction(command, args, quiet)
            else:
                reply = self.links.call(command, *command_args(args))
            if self.amend is not None and _amended(name, args):
                reply = self.amend([command, *command_args(args)], reply)
            return _without_internal_key(name, from_redis(reply))
        except CommandError as exc:
            raise GearsError(str(exc)) from None
        except NetworkError:
            # Inside Redis this cannot happen; here the backing Redis went away under the script, which
            # cannot tell. The execution is marked, so a StreamReader batch runs again (not acknowledged).
            if self.backing_lost is not None:
                self.backing_lost()
            raise

    def _hookable(self, name: str, args: tuple[Any, ...]) -> bool:
        """Whether the runtime's hooks see this call. Not a sync KeysReader's step's (its writes must stay inside
        its transaction, where they trigger no KeysReader) nor a blocking command's (sent in a transaction, so it
        cannot block a link): docs/gears.md, "Command hooks"."""
        return not (self.in_key_event is not None and self.in_key_event()) and not _blocks(name, args)

    def _refuse_own_settings(self, args: tuple[Any, ...]) -> None:
        words = [_word(a) for a in args]
        if not words or words[0].upper() != "SET":
            return
        own = [name for name in words[1::2] if name.lower() in self.own_settings]
        if own:
            raise GearsError(
                f"ERR {own[0]} is the gearcam runtime's own setting, which CONFIG SET from Gears code cannot change "
                "(it would reach the backing Redis' instead): send the CONFIG SET from a client"
            )

    def _sender(self, quiet: bool) -> Callable[..., Any]:
        """How execute() sends a command now: inside a transaction in a sync KeysReader's step (`quiet`)."""
        if not quiet:
            return self.links.call
        return lambda command, *args: self._in_transaction(command.decode(), args, quiet)

    def _in_transaction(self, command: str, args: tuple[Any, ...], quiet: bool) -> Any:
        """`command` in MULTI/EXEC. `quiet`: a sync KeysReader's step, which RedisGears runs inside the key event:
        its commands' events trigger no KeysReader (LinkPool.transaction)."""
        call = (command, *command_args(args))
        try:
            return self.links.transaction(*call, unheard=quiet)
        except CommandError as exc:
            if "inside a transaction" in str(exc) and not _blocks(command.upper(), args):
                return self.links.call(*call)  # a command MULTI refuses (SAVE, SHUTDOWN): sent as it is
            raise

    def log(self, message: Any, level: str = "notice") -> None:
        if not isinstance(message, str):
            raise GearsError("Log message must be a string")
        if level not in _LEVELS:
            raise GearsError("Log level must be a sting (debug/verbose/notice/warning)")
        logger.log(_LEVELS[level], "%s", message)

    def config_get(self, key: str) -> Any:
        if not isinstance(key, str):
            raise GearsError("get_config key must be a string")
        return self.config.get(key)

    def gears_config_get(self, key: str, default: Any = None) -> Any:
        value = self.config_get(key)
        return default if value is None else value

    def atomic(self) -> _Atomic:
        return _Atomic(self.atomic_lock, self._depth)

    def in_atomic(self) -> bool:
        return getattr(self._depth, "n", 0) > 0

    # -- helpers of RedisGears' builder module ------------------------------------------------

    def register_time_event(self, period: Any, callback: Callable[[], Any], key: Any = None) -> None:
        """registerTE: call `callback` every `period` seconds on a thread of its own.

        With a key, as on RedisGears, the event lives in that key: it is created (a string here, a
        module value there) and deleting it stops the event.
        """
        if not isinstance(period, int | float) or isinstance(period, bool) or period <= 0:
            raise GearsError("time argument must be a long")
        if not callable(callback):
            raise GearsError("callback must be a function")
        if key is not None:
            self.execute("SET", str(key), "gearcam time event", "NX")

        def tick() -> None:
            if key is not None and not self.execute("EXISTS", str(key)):
                return
            try:
                callback()
            except Exception as exc:
                logger.warning("time event callback failed: %s", describe_error(exc))
            timer = threading.Timer(float(period), tick)
            timer.daemon = True
            timer.start()

        first = threading.Timer(float(period), tick)
        first.daemon = True
        first.start()

    def run_coroutine(self, coroutine: Any, future: Any = None, delay: float = 0) -> None:
        """runCoroutine: run an `async def` call on the worker's loop, completing `future` with its result."""

        async def main() -> None:
            if delay:
                await asyncio.sleep(delay)
            try:
                result = await coroutine
            except Exception as exc:
                if isinstance(future, GearsFuture):
                    future.continueFailed(str(exc))
                else:
                    logger.warning("coroutine failed: %s", describe_error(exc))
                return
            if isinstance(future, GearsFuture):
                future.continueRun(result)

        asyncio.run_coroutine_threadsafe(main(), self.loop)

    def create_future(self) -> GearsFuture:
        """gearsFuture(): inside a step only, one per step call (RedisGears' rules and words)."""
        step = current_step()
        if step is None:
            raise GearsError("Future object can only be created inside certain execution steps")
        if step.future is not None:
            raise GearsError("Can not create async record twice on the same step")
        if not async_allowed():
            raise GearsError(NO_ASYNC)
        future = GearsFuture(self.loop)
        step.future = future
        return future

    def keys_only_reader(
        self,
        pattern: str = "*",
        count: int = 1000,
        noScan: bool = False,
        patternGenerator: Any = None,  # noqa: N803
    ) -> Callable[[], Iterator[str]]:
        """createKeysOnlyReader: a PythonReader generator of the keys matching `pattern`."""

        def reader() -> Iterator[str]:
            patterns = patternGenerator() if patternGenerator is not None else [pattern]
            for current in patterns:
                if noScan:
                    yield current
                    continue
                cursor: Any = "0"
                while True:
                    cursor, keys = self.execute("SCAN", cursor, "MATCH", current, "COUNT", str(count))
                    yield from keys
                    if str(cursor) == "0":
                        break

        return reader

    def set_session(self, session: Any) -> None:
        self._sessions.current = session

    def get_session(self) -> Any:
        return getattr(self._sessions, "current", None)

    # -- modules and globals -------------------------------------------------------------------

    def redisgears_module(self) -> types.ModuleType:
        module = types.ModuleType("redisgears")
        names: dict[str, Any] = {
            "executeCommand": self.execute, "execute": self.execute, "log": self.log,
            "config_get": self.config_get, "configGet": self.config_get, "getMyHashTag": lambda: HASHTAG,
            "hashtag": lambda: HASHTAG, "GearsError": GearsError, "atomic": self.atomic, "atomicCtx": self.atomic,
            "registerTimeEvent": self.register_time_event, "gearsCtx": RawContext, "PyFlatExecution": RawContext,
            "gearsFutureCtx": self.create_future, "setGearsSession": self.set_session,
            "getGearsSession": self.get_session, "registerGearsThread": lambda *a, **k: None,
            "isInAtomicBlock": self.in_atomic, "isAsyncAllow": async_allowed, "flatError": _flat_error,
            "callNext": self.call_next or _outside(NO_HOOK_CTX),
            "getCommand": self.get_command or _outside(NO_COMMAND_CTX),
            "overrideReply": self.override_reply or _outside(NO_COMMAND_CTX),
        }  # fmt: skip
        for name, value in names.items():
            setattr(module, name, value)
        return module

    def install_modules(self) -> None:
        """Make `redisgears` and `redisAI` importable by library code too, as they are on RedisGears."""
        sys.modules["redisgears"] = self.redisgears_module()
        if self.redisai is not None:
            sys.modules["redisAI"] = self.redisai

    def globals(self) -> dict[str, Any]:
        rg = sys.modules.get("redisgears") or self.redisgears_module()
        modules: dict[str, Any] = {"redisgears": rg}
        if self.redisai is not None:
            modules["redisAI"] = self.redisai
        real_import = builtins.__import__

        def gears_import(name: str, *args: Any, **kwargs: Any) -> Any:
            if name in modules:
                return modules[name]
            return real_import(name, *args, **kwargs)

        def deprecated(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                logger.warning("%s is deprecated, use %s", name, fn.__name__)
                return fn(*args, **kwargs)

            return call

        profiler = _Profiler()
        script_builtins = dict(vars(builtins))
        script_builtins["__import__"] = gears_import
        return {
            "__builtins__": script_builtins, "__name__": "__main__",
            "redisgears": rg, "rg": rg, "asyncio": asyncio, "copy": copy, "io": io, "cProfile": cProfile,
            "pstats": pstats,
            "execute": self.execute, "executeCommand": self.execute, "call_next": rg.callNext,
            "callNext": rg.callNext, "get_command": rg.getCommand, "getCommand": rg.getCommand,
            "override_reply": rg.overrideReply, "overrideReply": rg.overrideReply,
            "atomic": self.atomic, "atomicCtx": self.atomic,
            "hashtag": lambda: HASHTAG, "getMyHashTag": lambda: HASHTAG,
            "registerTE": self.register_time_event, "registerTimeEvent": self.register_time_event,
            "gearsCtx": RawContext, "PyFlatExecution": RawContext,
            "gearsFuture": self.create_future, "gearsFutureCtx": self.create_future,
            "log": self.log, "setGearsSession": self.set_session, "getGearsSession": self.get_session,
            "registerGearsThread": rg.registerGearsThread, "isInAtomicBlock": self.in_atomic,
            "configGet": self.config_get, "config_get": self.config_get, "isAsyncAllow": rg.isAsyncAllow,
            "flat_error": _flat_error, "flatError": _flat_error,
            "GB": GB, "GearsBuilder": GearsBuilder, "GearsError": GearsError,
            "createKeysOnlyReader": self.keys_only_reader, "shardReaderCallback": _shard_reader,
            "gearsConfigGet": self.gears_config_get, "GearsSession": GearsSession, "GearsFuture": GearsFuture,
            "createFuture": self.create_future, "setFutureResults": _set_future_results,
            "setFutureException": _set_future_exception, "runCoroutine": self.run_coroutine,
            "profilerCreate": profiler.create, "profileStart": profiler.start, "profileStop": profiler.stop,
            "profileGetInfo": profiler.info, "Future": asyncio.Future, "Thread": threading.Thread,
            "Log": deprecated("Log", self.log), "ConfigGet": deprecated("ConfigGet", self.config_get),
            "GearsConfigGet": deprecated("GearsConfigGet", self.gears_config_get),
        }  # fmt: skip


class RawContext(GearsBuilder):
    """gearsCtx(reader, desc): the builder without GB's conveniences (results stay as the steps leave them)."""

    def run(self, arg: Any = None, convertToStr: bool = False, collect: bool = False, **kargs: Any) -> Any:  # noqa: N803
        return super().run(arg, convertToStr, collect, **kargs)

    def register(self, prefix: str = "*", convertToStr: bool = False, collect: bool = False, **kwargs: Any) -> Any:  # noqa: N803
        return super().register(prefix, convertToStr, collect, **kwargs)


def _flat_error(message: Any) -> None:
    """flat_error(msg): fail the record with `msg` as its error text, without a traceback."""
    raise GearsError(str(message))


def _outside(words: str) -> Callable[..., Any]:
    """A hook's function where there is no hook to serve it: RedisGears' `words`."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise GearsError(words)

    return refuse


def _shard_reader() -> Iterator[str]:
    yield SHARD_RECORD


def _set_future_results(future: Any, result: Any) -> None:
    future.continueRun(result)


def _set_future_exception(future: Any, error: Any) -> None:
    future.continueFailed(error)


class _Profiler:
    """profilerCreate/profileStart/profileStop/profileGetInfo over cProfile, as RedisGears' helpers."""

    def create(self) -> cProfile.Profile:
        return cProfile.Profile()

    def start(self, profiler: cProfile.Profile) -> None:
        profiler.enable()

    def stop(self, profiler: cProfile.Profile) -> None:
        profiler.disable()

    def info(self, profiler: cProfile.Profile, order: str = "cumtime") -> str:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(order).print_stats()
        return out.getvalue()


@dataclass
class PendingRun:
    plan: Plan
    arg: Any
    reader_args: dict[str, Any]


@dataclass
class PendingRegistration:
    plan: Plan
    mode: str
    args: dict[str, Any]
    on_registered: Callable[..., Any] | None
    on_unregistered: Callable[..., Any] | None
    id: str = ""


@dataclass
class LoadedScript:
    runs: list[PendingRun] = field(default_factory=list)
    registrations: list[PendingRegistration] = field(default_factory=list)
    error: str | None = None


def _callbacks(pending: PendingRegistration) -> list[Any]:
    """Every function a registration keeps: its steps', onRegistered and onUnregistered."""
    steps = [func for step in pending.plan.steps for func in step.funcs if callable(func)]
    return steps + [func for func in (pending.on_registered, pending.on_unregistered) if func is not None]


def check_serializable(pending: PendingRegistration, environment: dict[str, Any]) -> None:
    """Refuse a registration whose callbacks cannot be pickled, as RedisGears does when it registers.

    RedisGears serializes every callback of a registration with cloudpickle (to keep it in the
    RDB and send it to the shards), so a step that holds, say, a redis.Redis connection is
    refused at register() with `Error occured when serialized a python callback`. The
    runtime keeps registrations in memory, but a script that registers here must register
    on the module too. What the script environment itself provides (`execute`, `GB`, ...), in the
    script's globals or imported from `redisgears`, is pickled by name: RedisGears' own are C
    functions. Without cloudpickle nothing is checked.
    """
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        return
    provided = {id(value): name for name, value in environment.items()}
    # And what the modules `redisgears` and `redisAI` provide, which libraries import (rgsync's
    # `from redisgears import executeCommand as execute`): C functions of those modules there.
    for module_name in ("redisgears", "redisAI"):
        module = sys.modules.get(module_name)
        if module is not None:
            provided.update(
                (id(value), f"{module_name}.{name}") for name, value in vars(module).items()
                if callable(value) and not name.startswith("__")
            )  # fmt: skip

    class Pickler(cloudpickle.CloudPickler):  # type: ignore[misc]  # untyped base
        def persistent_id(self, obj: Any) -> str | None:
            return provided.get(id(obj))

    for callback in _callbacks(pending):
        try:
            Pickler(io.BytesIO()).dump(callback)
        except Exception as exc:
            name = getattr(callback, "__name__", type(callback).__name__)
            raise GearsError(
                f"Error occured when serialized a python callback, callback={name} error={type(exc).__name__}: {exc}"
            ) from None


def environment_of(pending: PendingRegistration, env: ScriptEnv) -> dict[str, Any]:
    """What the environment provides, as a registration made from a step sees it in its script's globals.

    At load time the script's globals are at hand; from a step only its callbacks are, and a
    function's ``__globals__`` is the dict its script (or module) ran in.
    """
    provided = env.globals().keys() - {"__builtins__", "__name__"}
    environment: dict[str, Any] = {}
    # Every callback's globals, not the first one's: a step may be a function of an imported module (and a
    # registration without steps has only its onRegistered, say).
    for found in (getattr(f, "__globals__", None) for f in _callbacks(pending)):
        if isinstance(found, dict):
            environment.update((name, found[name]) for name in provided if name in found)
    return environment


class _LoadHooks(ScriptHooks):
    def __init__(
        self, loaded: LoadedScript, restoring: bool, ids: Callable[[int], str], environment: dict[str, Any]
    ) -> None:
        self.loaded = loaded
        self.restoring = restoring
        self.ids = ids
        self.environment = environment

    def run(self, plan: Plan, arg: Any, reader_args: dict[str, Any]) -> Any:
        if self.loaded.runs:
            raise GearsError("Can not run more then 1 executions in a single script")
        if plan.reader == "CommandReader":
            raise GearsError("Given reader do not support run or not exists")
        if not self.restoring:  # a restored session only brings its registrations back
            self.loaded.runs.append(PendingRun(plan, arg, reader_args))
        return None

    def register(self, plan: Plan, reader_args: dict[str, Any]) -> Any:
        mode, args = parse_args(plan.reader, reader_args)
        pending = PendingRegistration(
            plan,
            mode,
            args,
            reader_args.get("onRegistered"),
            reader_args.get("onUnregistered"),
            self.ids(len(self.loaded.registrations)),
        )
        if not self.restoring:  # a restored session was checked when it registered
            check_serializable(pending, self.environment)
        self.loaded.registrations.append(pending)
        return pending.id  # RedisGears 1.2's register() returns the registration id


def load_script(
    code: str, env: ScriptEnv, restoring: bool = False, ids: Callable[[int], str] = lambda n: ""
) -> LoadedScript:
    """Run the script's top level and collect its run() and register() calls (`ids` names the n-th one)."""
    loaded = LoadedScript()
    try:
        compiled = compile(code, "<string>", "exec")
    except SyntaxError as exc:
        loaded.error = describe_error(exc)
        return loaded
    script_globals = env.globals()
    with script_scope(_LoadHooks(loaded, restoring, ids, dict(script_globals))):
        try:
            exec(compiled, script_globals)  # noqa: S102 - running the client's script is the point
        except ExecutionAborted:
            raise
        except BaseException as exc:
            loaded.error = describe_error(exc)
    return loaded
