"""A Gears worker: a process of its own that runs scripts' code for one ACL user, apart from the runtime.

Started by the runtime (`workers.py`) with the Gears virtualenv's Python, it loads
scripts, runs their steps and callbacks, and talks to the backing Redis itself with
the rights of the user who ran RG.PYEXECUTE (nothing of the runtime's credentials
reaches it). `redisAI` calls go back to the runtime over the channel. A script that
spins, blocks or eats memory can only take this process down; the runtime then
replaces it.

    python -m gearcam.runtime.gears.worker --fd N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import logging
import os
import resource
import signal
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gearcam.allocator import keep_frame_buffers
from gearcam.runtime.backing_tls import BackingTls, client_context, renew
from gearcam.runtime.gears import ipc
from gearcam.runtime.gears.builder import GearsError, Plan, ScriptHooks, set_default_hooks
from gearcam.runtime.gears.engine import (
    ABORTED_BY_COMMAND,
    ExecutionAborted,
    Runner,
    current_execution,
    describe_error,
    enter_execution,
    run_steps,
)  # fmt: skip
from gearcam.runtime.gears.link import LinkPool
from gearcam.runtime.gears.readers import read_batch
from gearcam.runtime.gears.records import from_redis, plain
from gearcam.runtime.gears.redisai_api import Awaitable, build_module
from gearcam.runtime.gears.registrations import parse_args
from gearcam.runtime.gears.replies import NO_COMMAND_CTX, NO_HOOK_CTX
from gearcam.runtime.gears.script import (
    ChainLock,
    LoadedScript,
    PendingRegistration,
    ScriptEnv,
    check_serializable,
    environment_of,
    load_script,
)
from gearcam.runtime.own_traffic import Mark
from gearcam.runtime.relay import CODE_NAME, Address

__all__ = ["main"]

logger = logging.getLogger("gearcam.gears.worker")

_PR_SET_PDEATHSIG = 1


# The error a started execution that RG.ABORTEXECUTION stopped reports, like RedisGears' ForceStoppedError.
FORCE_STOPPED = "Execution was force stopped"


@dataclass
class _Running:
    runner: Runner
    task: asyncio.Task[Any] | None = None
    aborted: str | None = None
    token: str = ""  # the script it runs (register() from a step adds to it)
    in_step: bool = False  # RG.ABORTEXECUTION found it in a step (not queued, not awaiting an async step)
    started: bool = False  # it took its thread (`started` sent): no longer `created`, so it cannot be dropped
    keep: bool = False  # at its end it keeps its registration's queue until the runtime says "release"
    backing_lost: bool = False  # an execute() of its steps lost the backing Redis
    in_key_event: bool = False  # a sync KeysReader's: RedisGears runs it inside the key event (see ScriptEnv)
    # The execution it runs inside (through that one's call: a trigger or hook), or itself: ChainLock's owner.
    chain: str = ""
    read_ms: int = 0


def _steps_stopped(runner: Runner, waited: int) -> bool:
    """Whether no thread runs the execution's steps any more, checked every 50 ms once it was aborted.

    A step stuck in C code (time.sleep, a socket) keeps its thread, and the runtime then replaces the
    worker after the grace period. abort() raised into them already; a step that caught it gets it
    again every half second.
    """
    with runner.lock:
        if not runner.threads:
            return True
        if waited and waited % 10 == 0:
            _raise_in(set(runner.threads))
    return False


def _stopped(state: _Running) -> dict[str, Any]:
    """The outcome of an aborted execution, once its steps stopped.

    As on RedisGears: stopping a step fails it and the execution ends `done` with that error; one queued
    or awaiting an async step ends `aborted`.
    """
    if state.in_step and state.aborted == ABORTED_BY_COMMAND:
        return {"results": [], "errors": [FORCE_STOPPED], "steps": [], "read_ms": state.read_ms}
    return {"aborted": state.aborted or "aborted", "results": [], "errors": [], "steps": [], "read_ms": state.read_ms}


class _NestedRuns(ScriptHooks):
    """run() from a step or a time event: a nested execution in this worker, awaitable from `async def` steps.

    RedisGears runs it as an execution of its own; here it runs on the worker's loop and pool, and awaiting
    it gives `[results, errors]`, as on RedisGears (it is not listed by RG.DUMPEXECUTIONS).
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def run(self, plan: Plan, arg: Any, reader_args: dict[str, Any]) -> Any:
        worker = self.worker

        async def execute() -> list[Any]:
            runner = Runner(worker.pool, worker.loop, in_atomic=worker.env.in_atomic)
            records = await runner.in_pool(read_batch, worker.links, plan.reader, arg, reader_args)
            results, errors = await run_steps(runner, plan.steps, records)
            return [results, errors]

        return Awaitable(asyncio.run_coroutine_threadsafe(execute(), worker.loop), lambda results: results)

    def register(self, plan: Plan, reader_args: dict[str, Any]) -> Any:
        """register() from a step: the registration joins the session of the running execution."""
        worker = self.worker
        state = worker.running.get(current_execution())
        loaded = worker.scripts.get(state.token) if state is not None else None
        if state is None or loaded is None:
            raise GearsError("register() can only be called while RG.PYEXECUTE loads the script, or from a step")
        mode, args = parse_args(plan.reader, reader_args)
        pending = PendingRegistration(
            plan, mode, args, reader_args.get("onRegistered"), reader_args.get("onUnregistered")
        )
        check_serializable(pending, environment_of(pending, worker.env))  # as when the script registers
        index = len(loaded.registrations)
        loaded.registrations.append(pending)
        pending.id = str(worker.ask("gears.register", (state.token, index, _described(pending))))
        return pending.id


def _described(r: PendingRegistration) -> dict[str, Any]:
    """A registration as the runtime learns it from its worker."""
    return {
        "reader": r.plan.reader, "desc": r.plan.desc, "mode": r.mode, "args": r.args, "id": r.id,
        "on_registered": r.on_registered is not None, "on_unregistered": r.on_unregistered is not None,
    }  # fmt: skip


def _execution_or(words: str) -> str:
    """The running execution's id; outside one, RedisGears' `words` for the hook function called there."""
    execution = current_execution()
    if not execution:
        raise GearsError(words)
    return execution


def _raise_in(thread_ids: set[int]) -> None:
    for ident in thread_ids:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(ExecutionAborted))


class Worker:
    def __init__(self, channel: ipc.BlockingChannel, hello: dict[str, Any]) -> None:
        self.channel = channel
        self.address = address = Address.from_dict(hello["address"])
        # Each link's address goes to the runtime, which shows its commands to MONITOR as RM_Call's (own_traffic.py).
        self.links = LinkPool(address, float(hello.get("connect_timeout", 5.0)), on_link=self._link, name=CODE_NAME)
        self.pool = ThreadPoolExecutor(max_workers=int(hello["threads"]), thread_name_prefix="gears")
        # onRegistered and onUnregistered run on threads of their own: the register() or RG.UNREGISTER that calls
        # for one may come from a step holding the last of the ExecutionThreads (RedisGears runs them inline).
        # A pool, so its threads (and their links to Redis) are reused.
        self.callbacks = ThreadPoolExecutor(max_workers=32, thread_name_prefix="gears-callback")
        # Executions RedisGears runs inline, inside the call that needs them (no_async: a trigger or hook reached
        # from Gears code or call_next()): their steps run here, not on the ExecutionThreads, which the steps
        # waiting for them may hold every one of (a hook under a hook under a hook...).
        self.inline = ThreadPoolExecutor(max_workers=64, thread_name_prefix="gears-inline")
        # RedisGears' ExecutionThreads: how many executions run at once (one waiting on async steps does not
        # count); the others stay `created`. Sync and hooked executions run outside it, as in Redis' main thread.
        self.slots = asyncio.Semaphore(int(hello["threads"]))
        # RedisGears runs a KeysReader's or StreamReader's executions on the registration's own WorkerData:
        # one at a time, in the order they were triggered (one awaiting async records lets the next run).
        self.queues: dict[tuple[str, int], asyncio.Semaphore] = {}
        # Registration queues kept by an execution that ended until the runtime says "release" (see _execute).
        self.kept: dict[str, asyncio.Semaphore] = {}
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._run_loop, args=(self.loop,), name="gears-loop", daemon=True)
        self._loop_thread.start()
        # An `async def` step that calls the runtime (call_next(), execute('RG.TRIGGER', ...)) holds the Gears
        # loop until it answers, and the answer may need an execution of this worker: a hook under the one
        # calling, a sync CommandReader. RedisGears runs those inline, inside the call; here, an execution
        # that runs at once (not queued for a thread or its registration's turn) and comes while the loop
        # is held so runs on a loop of its own, where it cannot wait for its caller.
        self._loop_held = 0
        self._spare_loop: asyncio.AbstractEventLoop | None = None
        # The request each execution's outcome answers, until answered: an abort that finds the Gears loop
        # held answers it itself (abort()), and the execution's own answer, once the loop is free, is dropped.
        self._unanswered: dict[str, int] = {}
        self.env = ScriptEnv(self.links, dict(hello.get("config", {})), ChainLock(self._chain), self.loop)
        self.env.redisai = build_module(self)
        self.env.module_command = self.module_command
        self.env.amend = self.amend
        self.env.call_next = self.call_next
        self.env.override_reply = self.override_reply
        self.env.get_command = self.get_command
        self.env.backing_lost = self.backing_lost
        self.env.in_key_event = self.in_key_event
        self.env.hooked = set(hello.get("hooks", []))
        self.env.hooked_command = self.hooked_command
        self.env.own_settings = frozenset(hello.get("own_settings", []))
        self.env.install_modules()
        set_default_hooks(_NestedRuns(self))
        self.scripts: dict[str, LoadedScript] = {}
        self.running: dict[str, _Running] = {}
        self.loading: dict[str, int] = {}  # token -> thread id of a load in progress
        self.load_aborted: dict[str, str] = {}  # token -> why its top level was aborted
        self.profiles: dict[str, tuple[Any, Any]] = {}  # token -> (cProfile.Profile, lock)
        self._ids = itertools.count(1)
        self._calls: dict[int, tuple[Future[Any], str]] = {}  # id -> (its future, the execution that asked)
        self._lock = threading.Lock()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def _loop_for(self, op: str, payload: Any) -> asyncio.AbstractEventLoop:
        """The Gears loop, or the spare one for a run that must not wait for a step holding the Gears loop."""
        if op != "run" or not self._loop_held or payload[4] or payload[6]:  # (queued, serial: see run())
            return self.loop
        with self._lock:
            if self._spare_loop is None:
                self._spare_loop = asyncio.new_event_loop()
                threading.Thread(target=self._run_loop, args=(self._spare_loop,), name="gears-spare-loop",
                                 daemon=True).start()  # fmt: skip
            return self._spare_loop

    # -- calls to the runtime (redisAI) ------------------------------------------------------

    def submit(self, op: str, payload: Any) -> Future[Any]:
        future: Future[Any] = Future()
        call_id = next(self._ids)
        with self._lock:
            self._calls[call_id] = (future, current_execution())
        self.channel.send((ipc.REQUEST, call_id, op, payload))
        return future

    def call_next(self, *args: Any) -> Any:
        """call_next(...) in a command hook: the hooked command (or the hook under this one) runs in the runtime."""
        return from_redis(self.ask("gears.call_next", (_execution_or(NO_HOOK_CTX), _wire(args))))

    def backing_lost(self) -> None:
        """execute() in one of this worker's executions lost the backing Redis: its outcome says so."""
        state = self.running.get(current_execution())
        if state is not None:
            state.backing_lost = True

    def in_key_event(self) -> bool:
        state = self.running.get(current_execution())
        return state is not None and state.in_key_event

    def override_reply(self, value: Any) -> None:
        """override_reply(value) in a KeysReader(commands=[...]) execution: that value becomes the command's reply."""
        self.ask("gears.override_reply", (_execution_or(NO_COMMAND_CTX), plain(value)))

    def get_command(self) -> list[str]:
        """get_command() in a KeysReader(commands=[...]) execution: the arguments of the command it runs on."""
        return list(self.ask("gears.get_command", (_execution_or(NO_COMMAND_CTX), None)))

    def module_command(self, args: list[Any]) -> Any:
        """execute('RG.…') / execute('AI.…'): the runtime serves the modules' commands."""
        return self.ask("gears.command", (current_execution(), _wire(args)))

    def _link(self, address: str, opened: bool, login: list[Mark]) -> None:
        """A link opened is asked about, not told: the runtime knows it, and the marks of its login (the
        runtime's own commands, which no monitor is shown), before anything it sends can reach a monitor (a
        runtime that cannot be asked only shows its commands under their address); one closed is told."""
        with contextlib.suppress(ipc.ChannelClosed, GearsError):
            if opened:
                self.ask("gears.link", (address, login))
            else:
                self.channel.send((ipc.NOTICE, 0, "unlink", address))

    def _chain(self) -> object:
        """Whose atomic() the calling thread's code runs in: its execution's chain (_Running.chain), or the thread
        itself outside an execution."""
        state = self.running.get(current_execution())
        return state.chain if state is not None else threading.get_ident()

    def hooked_command(self, args: list[Any]) -> list[Any]:
        """execute() of a command a CommandReader hooks: the runtime runs the hooks that apply ([True, reply]), or
        says none does ([False, None])."""
        return list(self.ask("gears.hooked", (current_execution(), _wire(args))))

    def unhooked(self, args: list[Any]) -> Any:
        """call_next() past the last hook of a command this worker's code sent: run here, with its owner's rights."""
        return plain(self.env.unhooked(*args))

    def amend(self, args: list[Any], reply: Any) -> Any:
        """The runtime's part of a reply the backing Redis gave Gears code (INFO, MODULE LIST, CONFIG GET, CLIENT
        LIST)."""
        return self.ask("gears.amend", (_wire(args), reply))

    def ask(self, op: str, payload: Any) -> Any:
        """A request to the runtime, waited for; its error reply raised as Gears code sees one (GearsError)."""
        from gearcam.runtime.resp import ErrorReply

        holds_loop = threading.current_thread() is self._loop_thread
        if holds_loop:
            with self._lock:
                self._loop_held += 1
        try:
            return self.submit(op, payload).result()
        except ErrorReply as exc:
            raise GearsError(exc.message) from None
        finally:
            if holds_loop:
                with self._lock:
                    self._loop_held -= 1

    def _settle(self, kind: str, call_id: int, value: Any) -> None:
        from gearcam.runtime.resp import ErrorReply

        with self._lock:
            future, execution = self._calls.pop(call_id, (None, ""))
        if future is None:
            return
        if kind == ipc.REPLY:
            future.set_result(value)
            return
        if kind == ipc.LOST:  # as an execute() that lost Redis: the step sees an error, the batch runs again
            state = self.running.get(execution)
            if state is not None:
                state.backing_lost = True
        future.set_exception(ErrorReply(str(value)))

    # -- requests from the runtime ------------------------------------------------------------

    def serve(self) -> None:
        while True:
            try:
                kind, msg_id, op, payload = self.channel.receive()
            except ipc.ChannelClosed:
                os._exit(0)  # the runtime went away: nothing is left to do
            if kind in (ipc.REPLY, ipc.FAILURE, ipc.LOST):
                self._settle(kind, msg_id, payload)
            elif op == "load":
                threading.Thread(target=self._answer, args=(msg_id, self.load, payload), daemon=True).start()
            elif op in ("run", "batch"):
                fn, exec_id = (self.run, payload[2]) if op == "run" else (self.batch, payload[1])
                with self._lock:
                    self._unanswered[exec_id] = msg_id
                coro = self._answer_outcome(exec_id, fn(payload))
                asyncio.run_coroutine_threadsafe(coro, self._loop_for(op, payload))
            elif op == "drop":  # on the loop, after the run it names and in step with its `started`
                asyncio.run_coroutine_threadsafe(self._answer_async(msg_id, self.drop(payload)), self.loop)
            elif op == "abort" and payload[0] not in self.running and payload[0] not in self.loading:
                # Its run may be on its way to the loop (sent just before, not yet begun): abort it there, once
                # the run's first step has listed it; an abort that found nothing would leave it to the grace.
                asyncio.run_coroutine_threadsafe(self._answer_async(msg_id, self._abort_later(payload)), self.loop)
            elif op == "release":  # on the loop, after the drops sent before it
                self.loop.call_soon_threadsafe(self._release, payload)
            elif op == "command":  # the end of a hook chain one of this worker's execute() calls went through
                self.inline.submit(self._answer, msg_id, self.unhooked, payload)
            elif op == "callback":
                self.callbacks.submit(self._answer, msg_id, self.callback, payload)
            elif op == "profile":  # may wait for a step holding the profiler: never on this reading thread
                threading.Thread(target=self._answer, args=(msg_id, self.profile, payload), daemon=True).start()
            else:
                self._answer(msg_id, self.immediate, (op, payload))

    def _reply(self, msg_id: int, ok: bool, value: Any) -> None:
        try:
            self.channel.send((ipc.REPLY if ok else ipc.FAILURE, msg_id, None, value))
        except ipc.ChannelClosed:
            os._exit(0)

    def _answer(self, msg_id: int, fn: Any, payload: Any) -> None:
        try:
            value = fn(payload)
        except GearsError as exc:
            self._reply(msg_id, False, str(exc))
        except BaseException as exc:
            self._reply(msg_id, False, describe_error(exc))
        else:
            self._reply(msg_id, True, value)

    def _take_request(self, exec_id: str) -> int | None:
        """The request an execution's outcome answers, if nothing answered it yet (taken: answered once)."""
        with self._lock:
            return self._unanswered.pop(exec_id, None)

    async def _answer_outcome(self, exec_id: str, coro: Any) -> None:
        """An execution's outcome, unless an abort answered its request already (_answer_stopped)."""
        try:
            ok, value = True, await coro
        except Exception as exc:
            ok, value = False, describe_error(exc)
        msg_id = self._take_request(exec_id)
        if msg_id is not None:
            self._reply(msg_id, ok, value)

    async def _answer_async(self, msg_id: int, coro: Any) -> None:
        try:
            value = await coro
        except Exception as exc:
            self._reply(msg_id, False, describe_error(exc))
        else:
            self._reply(msg_id, True, value)

    def _drop_queues(self, token: str) -> None:
        for key in [k for k in self.queues if k[0] == token]:
            del self.queues[key]

    def immediate(self, request: tuple[str, Any]) -> Any:
        op, payload = request
        if op == "forget":
            self.scripts.pop(payload, None)
            self.loop.call_soon_threadsafe(self._drop_queues, payload)  # the queues live on the Gears loop
            return None
        if op == "abort":
            return self.abort(*payload)
        if op == "config":
            self.env.config.clear()
            self.env.config.update(payload)
            return None
        if op == "hooks":
            self.env.hooked = set(payload)
            return None
        if op == "tls":
            _renew_links(self.address.tls, payload)
            return None
        if op == "ping":
            return "PONG"
        raise GearsError(f"unknown request {op!r}")

    # -- scripts ------------------------------------------------------------------------------

    def load(self, payload: tuple[str, str, bool, list[str]]) -> dict[str, Any]:
        token, code, restoring, known_ids = payload
        import importlib

        importlib.invalidate_caches()  # requirements may have been installed since the last load

        def registration_id(n: int) -> str:
            # A restored session keeps its ids; a new registration gets the runtime's next id.
            return known_ids[n] if n < len(known_ids) else str(self.submit("gears.next_id", None).result(30))

        self.loading[token] = threading.get_ident()
        try:
            loaded = load_script(code, self.env, restoring, registration_id)
        except ExecutionAborted:
            reason = self.load_aborted.pop(token, "aborted")
            loaded = LoadedScript(error=f"execution aborted: {reason}")
        finally:
            self.loading.pop(token, None)
        if loaded.error is not None:
            return {"error": loaded.error}
        self.scripts[token] = loaded
        return {
            "error": None,
            "runs": [{"reader": r.plan.reader, "desc": r.plan.desc} for r in loaded.runs],
            "registrations": [_described(r) for r in loaded.registrations],
        }  # fmt: skip

    def _plan(self, token: str, index: int, kind: str) -> Any:
        loaded = self.scripts.get(token)
        if loaded is None:
            raise GearsError("the script of this registration is not loaded in its Gears worker")
        found = loaded.runs if kind == "run" else loaded.registrations
        if index >= len(found):
            raise GearsError(
                "this registration was made by a step, and its worker was replaced since: register it again"
            )
        return found[index]

    def callback(self, payload: tuple[str, int, str]) -> None:
        token, index, name = payload
        pending = self._plan(token, index, "registration")
        fn = pending.on_registered if name == "onRegistered" else pending.on_unregistered
        if fn is not None:
            fn()

    def _profiler(self, token: str) -> tuple[Any, Any]:
        """The session's profiler when ProfileExecutions is on (RG.PYPROFILE reads it), else (None, None)."""
        if not int(self.env.config.get("ProfileExecutions") or 0):
            return None, None
        if token not in self.profiles:
            import cProfile

            self.profiles[token] = (cProfile.Profile(), threading.Lock())
        return self.profiles[token]

    def profile(self, payload: tuple[str, str, str]) -> Any:
        """RG.PYPROFILE STATS|RESET of a session's script."""
        action, token, order = payload
        if action == "RESET":
            self.profiles.pop(token, None)
            return "OK"
        found = self.profiles.get(token)
        if found is None:
            raise GearsError("no profile information for this session (set ProfileExecutions 1 and run it)")
        import io
        import pstats

        out = io.StringIO()
        with found[1]:
            try:
                pstats.Stats(found[0], stream=out).sort_stats(order).print_stats()
            except (KeyError, TypeError) as exc:
                raise GearsError(f"bad sort order {order!r}: {exc}") from None
        return out.getvalue()

    async def _execute(
        self,
        exec_id: str,
        plan: Plan,
        read: Any,
        token: str = "",
        queued: bool = True,
        no_async: bool = False,
        queue: asyncio.Semaphore | None = None,
        keep: bool = False,
        in_key_event: bool = False,
        parent: str = "",
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()  # the Gears loop, or the spare one (_loop_for)
        pool = self.inline if no_async else self.pool
        runner = Runner(pool, loop, exec_id, in_atomic=self.env.in_atomic, no_async=no_async)
        runner.profiler, runner.profiler_lock = self._profiler(token)
        state = _Running(runner, asyncio.current_task(), token=token, keep=keep, in_key_event=in_key_event)
        calling = self.running.get(parent) if parent else None
        state.chain = calling.chain if calling is not None else exec_id
        self.running[exec_id] = state
        enter_execution(exec_id)
        read_ms = 0
        steps: list[Any] = []
        try:
            if queued:  # `created` until its registration's turn comes and one of the ExecutionThreads slots is free
                runner.needs = (queue, self.slots) if queue is not None else (self.slots,)
                await runner.take()
            state.started = True
            with contextlib.suppress(ipc.ChannelClosed):
                self.channel.send((ipc.NOTICE, 0, "started", exec_id))
            started = time.monotonic()
            try:
                records = await runner.in_pool(read)
            except ExecutionAborted:
                raise asyncio.CancelledError from None
            except Exception as exc:
                return {"results": [], "errors": [describe_error(exc)], "steps": [], "read_ms": 0}
            read_ms = state.read_ms = int((time.monotonic() - started) * 1000)
            try:
                results, errors = await run_steps(runner, plan.steps, records, steps)
            except ExecutionAborted:
                raise asyncio.CancelledError from None
            return {
                "results": plain(results), "errors": errors, "read_ms": read_ms,
                "steps": [(s.kind, s.name, s.duration_ms) for s in steps], "backing_lost": state.backing_lost,
            }  # fmt: skip
        except asyncio.CancelledError:
            waited = 0
            while not _steps_stopped(runner, waited):
                waited += 1
                await asyncio.sleep(0.05)
            return _stopped(state)
        finally:
            if state.keep and queue is not None and runner.held:
                # A StreamReader's next execution waits until the runtime has dealt with this one's end (a
                # failure or a pause stops the registration first, as in RedisGears, where its queue
                # takes the next execution only after this one's done callback).
                runner.needs = (self.slots,)
                self.kept[exec_id] = queue
            runner.give_back()
            self.running.pop(exec_id, None)

    async def run(self, payload: tuple[Any, ...]) -> dict[str, Any]:
        """One trigger of a registration over records the runtime read (`queued`: not sync, not a hook)."""
        token, index, exec_id, records, queued, no_async, serial, keep, in_key_event, parent = payload
        pending = self._plan(token, index, "registration")
        queue = self.queues.setdefault((token, index), asyncio.Semaphore(1)) if serial else None
        return await self._execute(
            exec_id, pending.plan, lambda: records, token, queued, no_async, queue, keep, in_key_event, parent
        )

    def _release(self, exec_id: str) -> None:
        queue = self.kept.pop(exec_id, None)
        if queue is not None:
            queue.release()
        elif exec_id in self.running:  # the runtime stopped waiting for it (cancelled): keep nothing at its end
            self.running[exec_id].keep = False

    async def batch(self, payload: tuple[str, str]) -> dict[str, Any]:
        """A script's run(): read with the owner's rights here, then run the steps."""
        token, exec_id = payload
        pending = self._plan(token, 0, "run")
        return await self._execute(
            exec_id,
            pending.plan,
            lambda: read_batch(self.links, pending.plan.reader, pending.arg, pending.reader_args),
            token,
        )

    async def drop(self, exec_id: str) -> bool:
        """Abort an execution only while it waits for its thread (`created`); whether it was."""
        state = self.running.get(exec_id)
        if state is None or state.started or state.aborted or state.task is None:
            return False
        state.aborted = ABORTED_BY_COMMAND
        state.task.cancel()
        return True

    async def _abort_later(self, payload: tuple[str, str]) -> bool:
        return self.abort(*payload)

    def abort(self, exec_id: str, reason: str) -> bool:
        """Stop an execution for real: cancel its coroutine and raise in the threads running its steps."""
        if exec_id in self.loading:
            self.load_aborted[exec_id] = reason
            _raise_in({self.loading[exec_id]})
            return True
        state = self.running.get(exec_id)
        if state is None:
            return False
        state.aborted = reason
        if state.task is not None:
            state.task.get_loop().call_soon_threadsafe(state.task.cancel)
        with state.runner.lock:
            state.in_step = bool(state.runner.threads)
            _raise_in(set(state.runner.threads))
        if self._loop_held and state.task is not None and state.task.get_loop() is self.loop:
            # An `async def` step holds the Gears loop waiting for the runtime (this abort may be its call, as
            # RedisGears aborts inline): the execution cannot end on that loop until the step goes on, so its
            # outcome is answered from here once its steps stopped; its own answer, later, is dropped.
            threading.Thread(target=self._answer_stopped, args=(exec_id, state), daemon=True).start()
        return True

    def _answer_stopped(self, exec_id: str, state: _Running) -> None:
        waited = 0
        while not _steps_stopped(state.runner, waited):
            waited += 1
            time.sleep(0.05)
        msg_id = self._take_request(exec_id)
        if msg_id is not None:
            self._reply(msg_id, True, _stopped(state))


def _limit(hello: dict[str, Any]) -> None:
    """Die with the runtime, cap the address space for data, and give up root."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    memory_mb = int(hello.get("memory_mb") or 0)
    if memory_mb:
        # A backstop only: the runtime watches the resident size and replaces the worker first.
        cap = (memory_mb * 4 + 1024) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    run_as = hello.get("run_as")
    if run_as is not None and os.getuid() == 0:
        uid, gid = run_as
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        except OSError as exc:
            logger.warning("Gears worker keeps running as root: could not switch to uid %s: %s", uid, exc)


def _wire(args: Any) -> list[bytes]:
    """Command arguments as the runtime takes them: bytes (a bytearray's, or the text of anything else)."""
    return [a if isinstance(a, bytes) else bytes(a) if isinstance(a, bytearray) else str(a).encode() for a in args]


def _renew_links(tls: BackingTls | None, files: dict[str, Any]) -> None:
    """CONFIG SET renewed the backing links' TLS files: this worker's new links read them. It may have given up
    the runtime's user (run_as) and be unable to: then its new links keep the files it read before."""
    if tls is None:
        return
    try:
        renew(tls, BackingTls(**files))
    except (ssl.SSLError, OSError) as exc:
        logger.warning(
            "Gears worker: its new links to the backing Redis keep the TLS files it read before: the renewed ones "
            "could not be read (%s); make them readable by the workers' user, or restart the runtime",
            exc,
        )


def main(argv: list[str] | None = None) -> int:
    keep_frame_buffers()  # a frame's decode buffers and tensor, every frame (gearcam/allocator.py)
    parser = argparse.ArgumentParser(description="A gearcam Gears worker (started by the runtime)")
    parser.add_argument("--fd", type=int, required=True, help="the runtime's end of the Gears channel")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    channel = ipc.BlockingChannel(sock)
    kind, _, op, hello = channel.receive()
    if kind != ipc.NOTICE or op != "hello":
        print("gears worker: expected the runtime's hello", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=hello.get("log_level", "INFO"), stream=sys.stderr,
        format=f"%(asctime)s gears-worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip
    if os.getppid() == 1:
        return 0
    tls = Address.from_dict(hello["address"]).tls
    if tls is not None:  # its files read now, as the runtime's user: _limit may give that user up
        if hello.get("tls_files"):  # renewed by CONFIG SET since the runtime started
            _renew_links(tls, hello["tls_files"])
        client_context(tls)
    _limit(hello)
    worker = Worker(channel, hello)
    channel.send((ipc.NOTICE, 0, "ready", {"pid": os.getpid(), "python": sys.version.split()[0],
                                           "uid": os.getuid(), "prefix": sys.prefix}))  # fmt: skip
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
