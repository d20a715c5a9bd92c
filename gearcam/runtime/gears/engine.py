"""Runs a plan's steps over a list of records, as one RedisGears execution does.

Synchronous step functions run on the Gears thread pool (they may block on
`execute`); a function that returns a coroutine (an `async def` step) has it
awaited on the Gears event loop, so a step waiting for a model run holds no
thread and other executions go on. Records go through consecutive per-record
steps one at a time, as RedisGears pulls them (see _Chain). A step that raises on
a record drops that record and adds an error to the execution; the other records go on.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import inspect
import logging
import os
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from gearcam.runtime.gears.builder import GearsError, Step
from gearcam.runtime.gears.replies import NO_ASYNC

__all__ = [
    "ABORTED_BY_COMMAND", "ExecutionAborted", "Runner", "StepCall", "StepStats", "current_execution", "current_step",
    "async_allowed", "describe_error", "enter_execution", "run_steps",
]  # fmt: skip

logger = logging.getLogger(__name__)


_OWN_FILES = os.path.dirname(os.path.abspath(__file__))
# Frames a script's traceback leaves out: the engine's own and the machinery that calls steps.
_NOT_THE_SCRIPTS = (_OWN_FILES, os.path.dirname(concurrent.futures.__file__), os.path.dirname(asyncio.__file__))
_current = threading.local()


# The reason RG.ABORTEXECUTION gives: a started execution it stops ends `done` with an error (as on
# RedisGears); one still queued ends `aborted`.
ABORTED_BY_COMMAND = "aborted by RG.ABORTEXECUTION"


# The execution an `async def` step belongs to: set in the execution's task on the worker's loop, and
# copied by asyncio into the tasks that run its coroutines.
_loop_execution: contextvars.ContextVar[str] = contextvars.ContextVar("gears_execution", default="")


def current_execution() -> str:
    """The id of the execution whose step runs here: a plain step in this thread, or a coroutine's ('' elsewhere)."""
    return getattr(_current, "execution", "") or _loop_execution.get()


def enter_execution(execution: str) -> None:
    """In an execution's task on the loop: its coroutines (async def steps) belong to it."""
    _loop_execution.set(execution)


class ExecutionAborted(BaseException):  # noqa: N818 - RedisGears' word; BaseException so `except Exception` in a step cannot swallow it
    """Raised inside a running step (by RG.ABORTEXECUTION or a time limit) to stop it."""


def describe_error(exc: BaseException) -> str:
    """A GearsError reads as its message; anything else as its traceback (the script's frames only)."""
    if isinstance(exc, GearsError):
        return str(exc)
    if type(exc) is SyntaxError and exc.msg != "invalid syntax":
        # RedisGears' Python 3.7 says `invalid syntax` where newer ones name the fault: keep both.
        exc = SyntaxError(f"invalid syntax ({exc.msg})", (exc.filename, exc.lineno, exc.offset, exc.text))
    last = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
    if isinstance(exc, SyntaxError):
        return last
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_NOT_THE_SCRIPTS)]
    if not frames:
        return last
    return "Traceback (most recent call last):\n" + "".join(traceback.format_list(frames)) + last


@dataclass
class Runner:
    """Where one execution's steps run: the thread pool for plain functions, the loop for coroutines.

    It knows which pool threads are running its steps right now, so an abort can raise
    ExecutionAborted in exactly those threads.
    """

    pool: Executor
    loop: asyncio.AbstractEventLoop
    execution: str = ""
    threads: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # ProfileExecutions: the session's profiler, and the lock that lets one thread at a time use it.
    profiler: Any = None
    profiler_lock: Any = None
    # What a queued execution must hold to run its steps, taken in this order (asyncio.Semaphores): its
    # registration's own queue when it has one (RedisGears' WorkerData: one execution of the registration
    # at a time) and one of the worker's ExecutionThreads slots. An execution awaiting async records
    # gives both back meanwhile, as RedisGears' worker goes on with its next message.
    needs: tuple[Any, ...] = ()
    held: bool = False
    # Whether the calling thread is inside atomic() (the script environment's), for awaits in coroutines.
    in_atomic: Callable[[], bool] = field(default=lambda: False)
    # Inside a transaction (RG.TRIGGER in MULTI): its steps may not create async records (RedisGears' RFNoAsync).
    no_async: bool = False

    def _tracked(self, fn: Callable[..., Any], *args: Any) -> Any:
        ident = threading.get_ident()
        with self.lock:
            self.threads.add(ident)
        _current.execution = self.execution
        _current.no_async = self.no_async
        try:
            if self.profiler is not None:
                with self.profiler_lock:
                    self.profiler.enable()
                    try:
                        return fn(*args)
                    finally:
                        self.profiler.disable()
            return fn(*args)
        finally:
            _current.execution = ""
            _current.no_async = False
            self._leave(ident)

    def _leave(self, ident: int) -> None:
        """This thread no longer runs the execution's steps. An abort raised into it while it waited for the
        lock lands here, once the step is over already: it must not keep the thread listed (the execution
        would then wait for it for ever, and its worker be replaced)."""
        while True:
            try:
                with self.lock:
                    self.threads.discard(ident)
                return
            except ExecutionAborted:
                continue

    async def in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.loop.run_in_executor(self.pool, self._tracked, fn, *args)

    async def take(self) -> None:
        """Wait for what the execution needs to run (`needs`); until then it is `created`."""
        taken: list[Any] = []
        try:
            for need in self.needs:
                await need.acquire()
                taken.append(need)
        except BaseException:  # aborted while it waited: what it took goes back
            for need in reversed(taken):
                need.release()
            raise
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            for need in reversed(self.needs):
                need.release()

    async def waiting(self, coro: Awaitable[Any]) -> Any:
        """Await async records; meanwhile the execution gives its slot and its registration's queue to others,
        as on RedisGears."""
        if not self.held:
            return await coro
        self.give_back()
        result = await coro  # aborted meanwhile: it ends holding nothing, and waits for nothing
        await self.take()
        return result

    def wait(self, value: Any) -> Any:
        """From a pool thread: the value, or the result of the coroutine it is, run on the Gears loop."""
        if inspect.isawaitable(value) and self.no_async:
            _refuse_async(value)
        if inspect.isawaitable(value):
            return asyncio.run_coroutine_threadsafe(_await(value, self.in_atomic), self.loop).result()
        return value


async def _await(value: Awaitable[Any], in_atomic: Callable[[], bool]) -> Any:
    if inspect.iscoroutine(value):
        return await _NoAwaitInAtomic(value, in_atomic)
    return await value


class _NoAwaitInAtomic:
    """Drives a step's coroutine and refuses, as RedisGears does, an await that would suspend it inside
    atomic(): the coroutine gets a GearsError there (its `with atomic()` then releases the block)."""

    def __init__(self, coro: Any, in_atomic: Callable[[], bool]) -> None:
        self._coro = coro
        self._in_atomic = in_atomic

    def __await__(self) -> Any:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                waiting = self._coro.send(value) if error is None else self._coro.throw(error)
            except StopIteration as stop:
                return stop.value
            value, error = None, None
            if self._in_atomic():
                if isinstance(waiting, asyncio.Future):
                    waiting.cancel()
                error = GearsError("await is not allow inside atomic block")
                continue
            try:
                value = yield waiting
            except BaseException as exc:  # noqa: BLE001 - cancellation and the rest go to the coroutine
                error = exc


@dataclass
class StepStats:
    kind: str
    name: str
    duration_ms: int = 0


@dataclass
class _Outcome:
    records: list[Any]
    errors: list[str] = field(default_factory=list)


_MISSING = object()


class StepCall:
    """The step call this thread is in: RedisGears lets a step create one future, returned by the step."""

    # What the step asked for that must wait until it returns (a future it completed: see GearsFuture).
    # A tuple on the class, replaced when added to: no allocation for the many step calls that add nothing.
    after: tuple[Callable[[], None], ...] = ()

    def __init__(self) -> None:
        self.future: Any = None

    def __enter__(self) -> StepCall:
        self._outer = getattr(_current, "step", None)
        _current.step = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.step = self._outer
        if self.future is not None:
            self.future.returned = True
        for call in self.after:
            call()


def current_step() -> StepCall | None:
    """The step call running in this thread (None outside steps: a script's top level, a timer)."""
    return getattr(_current, "step", None)


def async_allowed() -> bool:
    """isAsyncAllow(): False in a step of an execution inside a transaction (RG.TRIGGER in MULTI)."""
    return not getattr(_current, "no_async", False)


def _refuse_async(value: Any) -> None:
    if inspect.iscoroutine(value):
        value.close()
    raise GearsError(NO_ASYNC)


def _no_async(value: Any, kind: str) -> Any:
    """Steps that cannot wait (repartition, batchgroupby's reducer) refuse what would make them wait."""
    if inspect.iscoroutine(value):
        value.close()
        raise GearsError(f"coroutine are not allow on {kind} step")
    if inspect.isawaitable(value):
        raise GearsError("Step does not support async")
    return value


def _repartition(extractor: Callable[[Any], Any], records: list[Any], errors: list[str]) -> list[Any]:
    """One shard keeps every record, but the extractor runs, as on RedisGears (its failures count)."""
    out = []
    for record in records:
        try:
            with StepCall():
                _no_async(extractor(record), "repartition")
            out.append(record)
        except ExecutionAborted:
            raise
        except BaseException as exc:
            errors.append(describe_error(exc))
    return out


_PER_RECORD = ("map", "foreach", "filter", "flatmap")


def _following(kind: str, record: Any, value: Any) -> list[Any]:
    """The records a per-record step passes on, given what its function returned for `record`."""
    if kind == "map":
        return [value]
    if kind == "foreach":
        return [record]
    if kind == "filter":
        return [record] if value else []
    if isinstance(value, list):  # flatmap: RedisGears expands lists only, popping from the end
        return list(reversed(value))
    return [value]


class _Chain:
    """Consecutive map/filter/foreach/flatmap steps, run record by record as RedisGears pulls records.

    A record goes through every step before the next record starts, so an `async def` step (a
    model run) of one record overlaps the next records' steps: the execution's lane (one pool
    thread at a time, as one RedisGears execution runs on one thread) walks on while the
    coroutine runs on the loop, and the record continues on the lane once it resolved. Outputs
    keep the records' order.
    """

    def __init__(self, runner: Runner, steps: list[Step], records: list[Any], errors: list[str]) -> None:
        self.runner = runner
        self.steps = steps
        self.errors = errors
        self.out: list[list[Any]] = [[] for _ in records]
        self.seconds = [0.0] * len(steps)
        self.fresh: collections.deque[tuple[int, int, Any]] = collections.deque(
            (i, 0, r) for i, r in enumerate(records)
        )
        # Records whose awaited step resolved: (index, step position, record, value or _Failed), filled on the loop.
        self.resolved: collections.deque[tuple[int, int, Any, Any]] = collections.deque()
        self.in_flight: set[object] = set()  # awaits started by the lane and not resolved yet
        self.tasks: set[asyncio.Future[Any]] = set()
        self.wake = asyncio.Event()
        self.context = contextvars.copy_context()  # the execution's (see enter_execution)
        self.closed = False

    async def run(self) -> list[Any]:
        try:
            while self.fresh or self.resolved or self.in_flight:
                if self.fresh or self.resolved:
                    await self.runner.in_pool(self._walk)
                else:
                    self.wake.clear()
                    await self.runner.waiting(self.wake.wait())
        finally:
            self.closed = True
            for task in list(self.tasks):
                task.cancel()
        return [record for records in self.out for record in records]

    def _walk(self) -> None:
        """On the lane: resolved records first (they are oldest), then the next fresh record, until none is left."""
        while True:
            if self.resolved:
                index, position, record, value = self.resolved.popleft()
                if isinstance(value, _Failed):
                    self.errors.append(value.error)
                    continue
                self._go(index, [(position + 1, r) for r in _following(self.steps[position].kind, record, value)])
            elif self.fresh:
                index, position, record = self.fresh.popleft()
                self._go(index, [(position, record)])
            else:
                return

    def _go(self, index: int, todo: list[tuple[int, Any]]) -> None:
        todo.reverse()  # a stack: the first record on top
        while todo:
            position, record = todo.pop()
            if position == len(self.steps):
                self.out[index].append(record)
                continue
            step = self.steps[position]
            started = time.perf_counter()
            try:
                with StepCall():
                    value = step.funcs[0](record)
                if inspect.isawaitable(value) and not async_allowed():
                    _refuse_async(value)
            except ExecutionAborted:
                raise
            except BaseException as exc:  # a step's failure is data for the execution, not ours
                self.errors.append(describe_error(exc))
                continue
            finally:
                self.seconds[position] += time.perf_counter() - started
            if inspect.isawaitable(value):
                self._await(index, position, record, value)
                continue
            todo.extend(reversed([(position + 1, r) for r in _following(step.kind, record, value)]))

    def _await(self, index: int, position: int, record: Any, value: Any) -> None:
        # A gearsFuture is awaited through its completion only: one the script dropped fails its record.
        if callable(getattr(value, "detach", None)):
            value = value.detach()
        token = object()
        self.in_flight.add(token)  # before the lane returns, so the driver knows to wait for it
        # Started on the loop in the execution's context (its coroutines belong to it: current_execution()).
        self.runner.loop.call_soon_threadsafe(self._start, token, index, position, record, value, context=self.context)

    def _start(self, token: object, index: int, position: int, record: Any, value: Any) -> None:
        if self.closed:  # the execution ended (aborted) before this await started
            if inspect.iscoroutine(value):
                value.close()
            return
        task = asyncio.ensure_future(_await(value, self.runner.in_atomic))
        self.tasks.add(task)
        task.add_done_callback(lambda _: self._done(task, token, index, position, record))

    def _done(self, task: asyncio.Future[Any], token: object, index: int, position: int, record: Any) -> None:
        self.tasks.discard(task)
        self.in_flight.discard(token)
        if task.cancelled():
            return
        error = task.exception()
        value = _Failed(describe_error(error)) if error is not None else task.result()
        self.resolved.append((index, position, record, value))
        self.wake.set()


@dataclass
class _Failed:
    error: str


def _reduced(runner: Runner, reducer: Callable[..., Any], *args: Any) -> Any:
    """An accumulator's new value. A reducer that made a gearsFuture and did not return it (it returned
    something else, or raised) leaves None: RedisGears completes such a future with None in the
    accumulator's place and drops the value and the error, logging the misuse."""
    with StepCall() as call:
        try:
            value = reducer(*args)
        except ExecutionAborted:
            raise
        except BaseException as exc:
            if call.future is None:
                raise
            logger.warning("a reducer made a gearsFuture and failed without returning it: %s", describe_error(exc))
            return None
    if call.future is not None and value is not call.future:
        logger.warning("a reducer made a gearsFuture and returned something else: its accumulator is None")
        return None
    return runner.wait(value)


def _reduce(runner: Runner, step: Step, records: list[Any], errors: list[str]) -> list[Any]:
    """accumulate, localgroupby and batchgroupby: one pass on a pool thread."""
    if step.kind == "accumulate":
        acc: Any = None
        for record in records:
            try:
                acc = _reduced(runner, step.funcs[0], acc, record)
            except ExecutionAborted:
                raise
            except BaseException as exc:
                errors.append(describe_error(exc))
        return [acc] if records else []
    extractor, reducer = step.funcs
    groups: dict[Any, Any] = {}
    for record in records:
        try:
            with StepCall():
                key = extractor(record)
            key = runner.wait(key)
            if not isinstance(key, str):  # RedisGears keys groups by the extractor's str, or else its repr
                key = repr(key)
            if step.kind == "batchgroupby":
                groups.setdefault(key, []).append(record)
            else:
                groups[key] = _reduced(runner, reducer, key, groups.get(key), record)
        except ExecutionAborted:
            raise
        except BaseException as exc:
            errors.append(describe_error(exc))
    if step.kind == "batchgroupby":
        out = []
        for key, items in groups.items():
            try:
                with StepCall():
                    value = _no_async(reducer(key, items), "batchgroupby")
                out.append({"key": key, "value": value})
            except ExecutionAborted:
                raise
            except BaseException as exc:
                errors.append(describe_error(exc))
        return out
    return [{"key": key, "value": value} for key, value in groups.items()]


async def run_steps(
    runner: Runner, steps: list[Step], records: list[Any], stats: list[StepStats] | None = None
) -> tuple[list[Any], list[str]]:
    errors: list[str] = []
    position = 0
    while position < len(steps):
        step = steps[position]
        started = time.monotonic()
        if step.kind in _PER_RECORD:
            end = position
            while end < len(steps) and steps[end].kind in _PER_RECORD:
                end += 1
            chain = _Chain(runner, steps[position:end], records, errors)
            records = await chain.run()
            if stats is not None:
                stats.extend(StepStats(s.kind, _name(s), int(seconds * 1000))
                             for s, seconds in zip(chain.steps, chain.seconds, strict=True))  # fmt: skip
            position = end
            continue
        if step.kind in ("accumulate", "localgroupby", "batchgroupby"):
            records = await runner.in_pool(_reduce, runner, step, records, errors)
        elif step.kind == "limit":
            length, start = step.funcs
            records = records[start : start + length]
        elif step.kind == "repartition":
            records = await runner.in_pool(_repartition, step.funcs[0], records, errors)
        # collect: one shard holds every record already.
        if stats is not None:
            stats.append(StepStats(step.kind, _name(step), int((time.monotonic() - started) * 1000)))
        position += 1
    return records, errors


def _name(step: Step) -> str:
    return getattr(step.funcs[0], "__name__", "") if step.funcs and callable(step.funcs[0]) else ""
