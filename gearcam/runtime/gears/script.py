"""The globals a Gears script sees, and loading a script: RedisGears 1.2's Python environment.

Globals: `GB`/`GearsBuilder`, `execute`, `atomic`, `log`, `configGet`,
`gearsConfigGet`, `hashtag`, `GearsError`. `import redisgears` and `import redisAI`
resolve to modules built here for the script, so the script's functions find them
when they run later, on any thread; the service also puts them in sys.modules for the
libraries a script uses (`ScriptEnv.install_modules`).
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gearcam.runtime.gears.builder import GB, GearsBuilder, GearsError, Plan, ScriptHooks, script_scope
from gearcam.runtime.gears.engine import describe_error
from gearcam.runtime.gears.link import CommandError, LinkPool
from gearcam.runtime.gears.records import command_args, from_redis
from gearcam.runtime.gears.registrations import parse_args

__all__ = ["LoadedScript", "ScriptEnv", "load_script"]

logger = logging.getLogger("gearcam.gears.script")
_LEVELS = {"debug": logging.DEBUG, "verbose": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING}
# Hash tag of slot 0: what a one-shard "cluster" serves.
HASHTAG = "06S"


@dataclass
class ScriptEnv:
    """What a script's globals need from the runtime."""

    links: LinkPool
    config: dict[str, Any]
    atomic_lock: threading.RLock
    redisai: types.ModuleType | None = None

    def execute(self, command: Any, *args: Any) -> Any:
        if not isinstance(command, str):
            raise GearsError("the given command must be a string")
        try:
            return from_redis(self.links.call(command, *command_args(args)))
        except CommandError as exc:
            raise GearsError(str(exc)) from None

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

    def redisgears_module(self) -> types.ModuleType:
        module = types.ModuleType("redisgears")
        module.executeCommand = self.execute  # type: ignore[attr-defined]
        module.log = self.log  # type: ignore[attr-defined]
        module.config_get = self.config_get  # type: ignore[attr-defined]
        module.getMyHashTag = lambda: HASHTAG  # type: ignore[attr-defined]
        module.GearsError = GearsError  # type: ignore[attr-defined]
        module.atomic = self.atomic  # type: ignore[attr-defined]
        module.atomicCtx = self.atomic  # type: ignore[attr-defined]  # the name gearsclient imports
        return module

    def atomic(self) -> _Atomic:
        return _Atomic(self.atomic_lock)

    def install_modules(self) -> None:
        """Make `redisgears` and `redisAI` importable by library code too, as they are on RedisGears.

        A script's own imports resolve through its globals; a library it uses (gearsclient's
        `execute` does `from redisgears import executeCommand`) imports through sys.modules.
        One runtime process runs one Gears service, so one module of each is right.
        """
        sys.modules["redisgears"] = self.redisgears_module()
        if self.redisai is not None:
            sys.modules["redisAI"] = self.redisai

    def globals(self) -> dict[str, Any]:
        modules = {"redisgears": self.redisgears_module()}
        if self.redisai is not None:
            modules["redisAI"] = self.redisai
        real_import = builtins.__import__

        def gears_import(name: str, *args: Any, **kwargs: Any) -> Any:
            if name in modules:
                return modules[name]
            return real_import(name, *args, **kwargs)

        script_builtins = dict(vars(builtins))
        script_builtins["__import__"] = gears_import
        return {
            "__builtins__": script_builtins, "__name__": "__main__",
            "GB": GB, "GearsBuilder": GearsBuilder, "GearsError": GearsError,
            "execute": self.execute, "atomic": self.atomic, "log": self.log,
            "configGet": self.config_get, "gearsConfigGet": self.gears_config_get, "hashtag": lambda: HASHTAG,
        }  # fmt: skip


class _Atomic:
    """atomic(): the enclosed commands are not interleaved with other Gears code (see docs/gears.md)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock

    def __enter__(self) -> _Atomic:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


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


@dataclass
class LoadedScript:
    runs: list[PendingRun] = field(default_factory=list)
    registrations: list[PendingRegistration] = field(default_factory=list)
    error: str | None = None


class _LoadHooks(ScriptHooks):
    def __init__(self, loaded: LoadedScript, restoring: bool) -> None:
        self.loaded = loaded
        self.restoring = restoring

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
            plan, mode, args, reader_args.get("onRegistered"), reader_args.get("onUnregistered")
        )
        self.loaded.registrations.append(pending)
        return None


def load_script(code: str, env: ScriptEnv, restoring: bool = False) -> LoadedScript:
    """Run the script's top level (on a Gears thread) and collect its run() and register() calls."""
    loaded = LoadedScript()
    try:
        compiled = compile(code, "<string>", "exec")
    except SyntaxError as exc:
        loaded.error = describe_error(exc)
        return loaded
    with script_scope(_LoadHooks(loaded, restoring)):
        try:
            exec(compiled, env.globals())  # noqa: S102 - running the client's script is the point
        except BaseException as exc:
            loaded.error = describe_error(exc)
    return loaded
