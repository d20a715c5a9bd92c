"""The Gears side of the runtime: sessions, registrations, executions, and the threads they run on.

Three places run Gears work: the runtime's main loop (commands, key events), a
dedicated Gears event loop thread (executions as coroutines, `async def` steps,
stream workers) and a thread pool (plain step functions, script loading, every
blocking `execute`). Blocking on the main loop never happens: it only hands work over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from gearcam.config import RuntimeSettings
from gearcam.runtime.ai.service import AIService
from gearcam.runtime.gears import streams
from gearcam.runtime.gears.builder import Plan
from gearcam.runtime.gears.engine import Runner, describe_error, run_steps
from gearcam.runtime.gears.executions import Execution, Executions, IdCounter
from gearcam.runtime.gears.link import LinkPool
from gearcam.runtime.gears.readers import key_matches, key_record, read_batch
from gearcam.runtime.gears.records import from_redis
from gearcam.runtime.gears.redisai_api import AIBridge, build_module
from gearcam.runtime.gears.registrations import Registration
from gearcam.runtime.gears.script import ScriptEnv
from gearcam.runtime.gears.sessions import SESSIONS_KEY, Session
from gearcam.runtime.relay import Address, BackendLink

__all__ = ["GearsService", "default_config"]

logger = logging.getLogger(__name__)


def default_config(threads: int) -> dict[str, Any]:
    """RedisGears 1.2's configuration keys and the runtime's values for them."""
    return {
        "MaxExecutions": 1000, "MaxExecutionsPerRegistration": 100, "ProfileExecutions": 0,
        "PythonAttemptTraceback": 1, "OverridePythonAllocators": 0, "DownloadDeps": 0, "DependenciesUrl": "",
        "DependenciesSha256": "", "PythonInstallationDir": "", "CreateVenv": 0, "ExecutionThreads": threads,
        "ExecutionMaxIdleTime": 5000, "PythonInstallReqMaxIdleTime": 30000, "SendMsgRetries": 3, "Plugin": "",
    }  # fmt: skip


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class GearsService:
    def __init__(self, settings: RuntimeSettings, backing: Address, ai: AIService) -> None:
        self.settings = settings
        self.backing = backing
        self.ai = ai
        threads = settings.gears_execution_threads
        self.config: dict[str, Any] = default_config(threads)
        self.ids = IdCounter()
        self.executions = Executions(self.ids)
        self.sessions: dict[str, Session] = {}
        self.registrations: dict[str, Registration] = {}
        self.workers: dict[tuple[str, bytes], streams.StreamWorker] = {}
        self.links = LinkPool(backing, settings.connect_timeout)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gears")
        self.loop = asyncio.new_event_loop()
        self.lock = threading.RLock()  # registrations and sessions change on the main loop, are read everywhere
        self.atomic_lock = threading.RLock()
        self._thread = threading.Thread(target=self._run_loop, name="gears-loop", daemon=True)
        self._ai_link: BackendLink | None = None
        self.main_loop: asyncio.AbstractEventLoop | None = None
        self.runner = Runner(self.pool, self.loop)
        self.env: ScriptEnv | None = None

    # Lifecycle -----------------------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def start(self) -> None:
        from gearcam.runtime.gears import lifecycle

        self.main_loop = asyncio.get_running_loop()
        await self.ai_link()
        bridge = AIBridge(self.ai, self.ai_link, self.main_loop)
        self.env = ScriptEnv(self.links, self.config, self.atomic_lock, build_module(bridge))
        self.env.install_modules()
        self._thread.start()
        await lifecycle.restore(self)

    async def ai_link(self) -> BackendLink:
        """Main loop: the link `redisAI` calls use, reopened when the backing Redis restarted."""
        link = self._ai_link
        if link is None or link.closed.is_set():
            link = self._ai_link = await BackendLink.open(
                self.backing, self.settings.connect_timeout, authenticate=True
            )
        return link

    async def stop(self) -> None:
        """Let each stream worker finish (and acknowledge) its batch in flight, then stop the threads."""
        if self._thread.is_alive():
            workers = list(self.workers.values())
            for worker in workers:
                worker.stopping = True
                self.loop.call_soon_threadsafe(worker.wake.set)
            tasks = [asyncio.wrap_future(self.on_loop(self._wait_workers(workers, self.settings.shutdown_grace)))]
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=self.settings.shutdown_grace + 1)
            self.loop.call_soon_threadsafe(self.loop.stop)
            await asyncio.to_thread(self._thread.join, 5)
        if not self.loop.is_running():
            self.loop.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.links.close)
        if self._ai_link is not None:
            await self._ai_link.close()

    async def _wait_workers(self, workers: list[streams.StreamWorker], grace: float) -> None:
        tasks = [w.task for w in workers if w.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()

    # Running things ------------------------------------------------------------------------------

    def on_loop(self, coro: Any) -> Future[Any]:
        """Schedule a coroutine on the Gears loop (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def execute_plan(self, execution: Execution, plan: Plan, read: Callable[[], list[Any]]) -> Execution:
        """On the Gears loop: read the records, run the steps, fill the execution."""
        execution.status = "running"
        execution.task = asyncio.current_task()
        try:
            try:
                records = await self.in_pool(read)
            except Exception as exc:
                execution.errors.append(describe_error(exc))
                execution.finish()
                return execution
            execution.read_ms = int((time.monotonic() - execution.started) * 1000)
            execution.results, execution.errors = await run_steps(self.runner, plan.steps, records, execution.steps)
            execution.finish()
        except asyncio.CancelledError:
            execution.finish("aborted")
        return execution

    def start_run(self, plan: Plan, arg: Any, reader_args: dict[str, Any]) -> Execution:
        execution = self.executions.create(registered=False)
        self.on_loop(self.execute_plan(execution, plan, lambda: read_batch(self.links, plan.reader, arg, reader_args)))
        return execution

    async def run_registration(self, reg: Registration, records: list[Any]) -> Execution:
        """One trigger of a registration (on the Gears loop), with its counters."""
        reg.num_triggered += 1
        execution = self.executions.create(registered=True)
        self._keep(reg, execution)
        await self.execute_plan(execution, reg.plan, lambda: records)
        reg.record_run(execution.total_ms, execution.errors, aborted=execution.status == "aborted")
        return execution

    def _keep(self, reg: Registration, execution: Execution) -> None:
        reg.executions.append(execution.id)
        limit = int(self.config.get("MaxExecutionsPerRegistration", 100))
        while limit >= 0 and len(reg.executions) > limit:
            old = self.executions.get(reg.executions[0])
            if old is not None and not old.done:
                break
            self.executions.drop(reg.executions.popleft())

    async def _stream_execute(self, reg: Registration, records: list[Any]) -> list[str]:
        return (await self.run_registration(reg, records)).errors

    # Key events ----------------------------------------------------------------------------------

    def on_key_event(self, event: str, db: int, key: bytes) -> None:
        """Main loop: start what this event triggers (KeysReader executions, stream workers)."""
        if db != self.backing.db or key == SESSIONS_KEY.encode():
            return
        name = key.decode("utf-8", "replace")
        with self.lock:
            regs = [r for r in self.registrations.values() if r.active]
        for reg in regs:
            if reg.reader in ("KeysReader", "KeysOnlyReader"):
                types = reg.args["eventTypes"]
                if key_matches(reg.args["prefix"], name) and (types is None or event in types):
                    self.on_loop(self._on_key(reg, event, key))
            elif reg.reader == "StreamReader" and event == "xadd" and key_matches(reg.args["prefix"], name):
                self.loop.call_soon_threadsafe(self.poke_stream, reg, key)

    async def _on_key(self, reg: Registration, event: str, key: bytes) -> None:
        try:
            record = await self.in_pool(key_record, self.links, key, event, reg.args["readValue"])
        except Exception as exc:
            logger.warning("registration %s could not read %r: %s", reg.id, key, exc)
            return
        if reg.args["keyTypes"] and record["type"] not in reg.args["keyTypes"]:
            return
        await self.run_registration(reg, [from_redis(key) if reg.reader == "KeysOnlyReader" else record])

    def poke_stream(self, reg: Registration, key: bytes) -> None:
        """Gears loop: wake the worker of (registration, stream), starting one if needed."""
        if not reg.active:
            return
        worker = self.workers.get((reg.id, key))
        if worker is not None:
            worker.wake.set()
            return
        worker = streams.StreamWorker(reg, key, self.links, self.in_pool, self._stream_execute, self.stream_groups)
        self.workers[(reg.id, key)] = worker
        worker.task = self.loop.create_task(worker.run())
        worker.task.add_done_callback(lambda _: self.workers.pop((reg.id, key), None))

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
            cursor, keys = self.links.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000, "TYPE", "stream")
            for key in keys:
                self.loop.call_soon_threadsafe(self.poke_stream, reg, key)
            if int(cursor) == 0:
                return

    def resync(self) -> None:
        """Main loop, after key events (re)subscribed: catch up on streams written while they were down."""
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

    async def stop_workers(self, reg: Registration) -> None:
        """Main loop: let the registration's stream workers finish their batch in flight, and wait for them.

        An UPGRADE activates the new registration only then, so the two never read the same
        consumer group at once (which would run the batch in flight twice).
        """
        await asyncio.wrap_future(self.on_loop(self._stop_workers(reg.id)))

    async def _stop_workers(self, reg_id: str) -> None:
        workers = [w for (r, _), w in list(self.workers.items()) if r == reg_id]
        for worker in workers:
            worker.stopping = True
            worker.wake.set()
        await self._wait_workers(workers, self.settings.shutdown_grace)
