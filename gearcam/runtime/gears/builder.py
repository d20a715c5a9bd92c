"""`GearsBuilder` (alias `GB`): a reader, a list of steps, then `run()` or `register()`.

The builder only records what to do; `engine.py` executes the steps and the script
context (`script.py`) receives the finished plan. Derived operations (aggregate,
count, sort, ...) are built from the basic ones as RedisGears 1.2 defines them, so
their results have the same shapes.
"""

from __future__ import annotations

import copy
import functools
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

__all__ = [
    "READERS", "GearsBuilder", "GearsError", "Plan", "Step", "current_script", "script_scope", "set_default_hooks",
]  # fmt: skip

READERS = ("KeysReader", "KeysOnlyReader", "StreamReader", "PythonReader", "ShardsIDReader", "CommandReader")


class GearsError(Exception):
    """What RedisGears raises inside scripts (`redisgears.GearsError` there too)."""


@dataclass(frozen=True)
class Step:
    kind: str  # map, foreach, filter, flatmap, accumulate, localgroupby, batchgroupby, limit, collect, repartition
    funcs: tuple[Any, ...] = ()
    name: str = ""


@dataclass
class Plan:
    reader: str
    default_arg: Any
    desc: str | None
    steps: list[Step] = field(default_factory=list)


class ScriptHooks:
    """What run() and register() hand their plans to; set while a script is being loaded."""

    def run(self, plan: Plan, arg: Any, reader_args: dict[str, Any]) -> Any:
        raise GearsError("run() can only be called while RG.PYEXECUTE loads the script")

    def register(self, plan: Plan, reader_args: dict[str, Any]) -> Any:
        raise GearsError("register() can only be called while RG.PYEXECUTE loads the script")


_local = threading.local()
_default: list[ScriptHooks] = [ScriptHooks()]  # outside a script's loading (steps, timers): set by the worker


def current_script() -> ScriptHooks:
    hooks: ScriptHooks | None = getattr(_local, "hooks", None)
    return hooks if hooks is not None else _default[0]


def set_default_hooks(hooks: ScriptHooks) -> None:
    """Where run() and register() go when no script is being loaded in this thread (steps, time events)."""
    _default[0] = hooks


class script_scope:  # noqa: N801 - used as a context manager like contextlib helpers
    """Makes `hooks` receive the plans of the script loaded in this thread."""

    def __init__(self, hooks: ScriptHooks) -> None:
        self._hooks = hooks

    def __enter__(self) -> None:
        self._previous = getattr(_local, "hooks", None)
        _local.hooks = self._hooks

    def __exit__(self, *exc: object) -> None:
        _local.hooks = self._previous


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _args_checked(method: _Method) -> _Method:
    """A step method called with the wrong number of arguments answers RedisGears' words, not a TypeError."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            raise GearsError("wrong number of args") from None
        return method(*args, **kwargs)

    return cast(_Method, checked)


def _callable(value: Any, what: str) -> Any:
    if not callable(value):
        raise GearsError(f"{what} argument must be a function")
    return value


class GearsBuilder:
    def __init__(self, reader: str = "KeysReader", defaultArg: Any = "*", desc: str | None = None) -> None:  # noqa: N803
        if not isinstance(reader, str):
            raise GearsError("reader argument must be a string")
        if reader not in READERS:
            raise GearsError(f"given reader does not exists: {reader!r}; choose one of {', '.join(READERS)}")
        if desc is not None and not isinstance(desc, str):
            raise GearsError("desc argument must be a string")
        self.plan = Plan(reader, defaultArg, desc)

    def _add(self, kind: str, *funcs: Any) -> GearsBuilder:
        self.plan.steps.append(Step(kind, tuple(funcs)))
        return self

    # Basic operations ---------------------------------------------------------------------------

    @_args_checked
    def map(self, f: Callable[[Any], Any]) -> GearsBuilder:
        return self._add("map", _callable(f, "map"))

    @_args_checked
    def foreach(self, f: Callable[[Any], Any]) -> GearsBuilder:
        return self._add("foreach", _callable(f, "foreach"))

    @_args_checked
    def filter(self, f: Callable[[Any], Any]) -> GearsBuilder:
        return self._add("filter", _callable(f, "filter"))

    @_args_checked
    def flatmap(self, f: Callable[[Any], Any]) -> GearsBuilder:
        return self._add("flatmap", _callable(f, "flatmap"))

    @_args_checked
    def accumulate(self, f: Callable[[Any, Any], Any]) -> GearsBuilder:
        return self._add("accumulate", _callable(f, "accumulate"))

    @_args_checked
    def localgroupby(self, extractor: Callable[[Any], Any], reducer: Callable[..., Any]) -> GearsBuilder:
        return self._add(
            "localgroupby", _callable(extractor, "groupby extractor"), _callable(reducer, "groupby reducer")
        )

    @_args_checked
    def groupby(self, extractor: Callable[[Any], Any], reducer: Callable[..., Any]) -> GearsBuilder:
        # One shard: repartition is the identity, so groupby is a local groupby.
        return self.localgroupby(extractor, reducer)

    @_args_checked
    def batchgroupby(self, extractor: Callable[[Any], Any], reducer: Callable[..., Any]) -> GearsBuilder:
        return self._add(
            "batchgroupby", _callable(extractor, "batchgroupby extractor"), _callable(reducer, "batchgroupby reducer")
        )

    @_args_checked
    def collect(self) -> GearsBuilder:
        return self._add("collect")

    @_args_checked
    def repartition(self, extractor: Callable[[Any], Any]) -> GearsBuilder:
        return self._add("repartition", _callable(extractor, "repartition"))

    @_args_checked
    def limit(self, length: int, start: int = 0) -> GearsBuilder:
        if not isinstance(length, int) or not isinstance(start, int):
            raise GearsError("limit argument must be a number")
        return self._add("limit", length, start)

    # Derived operations, defined as in RedisGears' GearsBuilder.py ------------------------------

    def aggregate(self, zero: Any, seqOp: Callable[..., Any], combOp: Callable[..., Any]) -> GearsBuilder:  # noqa: N803
        self.accumulate(lambda a, r: seqOp(a if a else copy.deepcopy(zero), r))
        self.collect()
        return self.accumulate(lambda a, r: combOp(a if a else copy.deepcopy(zero), r))

    def __localAggregateby__(  # noqa: N802 - RedisGears' name, which scripts and its tests call
        self, extractor: Callable[[Any], Any], zero: Any, aggregator: Callable[..., Any]
    ) -> GearsBuilder:
        return self.localgroupby(extractor, lambda k, a, r: aggregator(k, a if a else copy.deepcopy(zero), r))

    def aggregateby(
        self,
        extractor: Callable[[Any], Any],
        zero: Any,
        seqOp: Callable[..., Any],
        combOp: Callable[..., Any],  # noqa: N803
    ) -> GearsBuilder:
        self.__localAggregateby__(extractor, zero, seqOp)
        return self.localgroupby(
            lambda r: r["key"], lambda k, a, r: combOp(k, a if a else copy.deepcopy(zero), r["value"])
        )

    def count(self) -> GearsBuilder:
        self.accumulate(lambda a, r: 1 + (a if a else 0))
        self.collect()
        return self.accumulate(lambda a, r: r + (a if a else 0))

    def countby(self, extractor: Callable[[Any], Any] = lambda x: x) -> GearsBuilder:
        return self.aggregateby(extractor, 0, lambda k, a, r: 1 + a, lambda k, a, r: r + a)

    def sort(self, reverse: bool = True) -> GearsBuilder:
        self.aggregate([], lambda a, r: a + [r], lambda a, r: a + r)
        self.map(lambda r: sorted(r, reverse=reverse))
        return self.flatmap(lambda r: r)

    def distinct(self) -> GearsBuilder:
        return self.aggregate(set(), lambda a, r: a | {r}, lambda a, r: a | r).flatmap(lambda x: list(x))

    def avg(self, extractor: Callable[[Any], Any] = lambda x: float(x)) -> GearsBuilder:
        self.map(extractor)
        self.aggregate((0, 0), lambda a, r: (a[0] + r, a[1] + 1), lambda a, r: (a[0] + r[0], a[1] + r[1]))
        return self.map(lambda x: x[0] / x[1])

    # Actions ------------------------------------------------------------------------------------

    def _finish(self, convert_to_str: bool, collect: bool) -> Plan:
        if convert_to_str:
            self.map(lambda x: str(x))
        if collect:
            self.collect()
        return self.plan

    def run(self, arg: Any = None, convertToStr: bool = True, collect: bool = True, **kargs: Any) -> Any:  # noqa: N803
        reader_arg = arg if arg else self.plan.default_arg
        _check_run_args(self.plan.reader, reader_arg, kargs)
        plan = self._finish(convertToStr, collect)
        return current_script().run(plan, reader_arg, kargs)

    def register(
        self,
        prefix: str = "*",
        convertToStr: bool = True,
        collect: bool = True,
        **kwargs: Any,  # noqa: N803
    ) -> Any:
        plan = self._finish(convertToStr, collect)
        kwargs["prefix"] = kwargs.pop("regex", prefix)
        return current_script().register(plan, kwargs)


def _check_run_args(reader: str, arg: Any, kargs: dict[str, Any]) -> None:
    """run()'s arguments, checked when run() is called, as RedisGears does (its texts)."""
    if reader == "PythonReader" and not callable(arg):
        raise GearsError("pyreader argument must be a function")
    if reader == "StreamReader" and not isinstance(kargs.get("fromId", "0-0"), str):
        raise GearsError("fromId argument must be a string")
    if reader in ("KeysReader", "KeysOnlyReader"):
        for name in ("noScan", "readValue"):
            if name in kargs and not isinstance(kargs[name], bool):
                raise GearsError(f"{name} value must be a boolean")


GB = GearsBuilder
