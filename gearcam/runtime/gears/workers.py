"""Gears worker processes, seen from the runtime: start, talk, watch, replace.

One worker per ACL user that owns Gears sessions. The runtime starts it with the Gears
virtualenv's Python and a clean environment, hands it the address and credentials of
its owner (never the runtime's own), and then only exchanges plain data with it over
a socket pair (ipc.py). A worker whose resident memory passes
`runtime.gears_max_memory_mb`, that does not stop an execution it was told to abort,
or that exits, is replaced by the service; what was running in it is marked aborted
with the reason, and what it held that had not started runs in the replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from gearcam.cancel import wait_for
from gearcam.errors import NetworkError
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.gears import ipc
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.resp import ErrorReply, is_loading
from gearcam.runtime.writes import socket_fd, write_chunks

__all__ = ["GearsWorker", "WorkerDied", "worker_environment"]

logger = logging.getLogger(__name__)

_MONITOR_INTERVAL = 0.2
_START_TIMEOUT = 60.0
_LAST_WORDS_S = 1.0  # how long the messages a dead worker left in its channel may take to be read
_PAGE = os.sysconf("SC_PAGE_SIZE")

HandleCall = Callable[[str, Any], Awaitable[Any]]


class WorkerDied(GearsError):
    """The worker went away while a request was in flight; the text says why."""


def worker_environment(python: str) -> dict[str, str]:
    """A clean environment: nothing of the runtime's (REDIS_URL, passwords, GEARCAM_*) reaches scripts."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE",
                                                          "OPENBLAS_L2_SIZE", "GLIBC_TUNABLES")}  # fmt: skip
    env["HOME"] = "/tmp"
    env["PYTHONUNBUFFERED"] = "1"
    # From a source tree the worker imports gearcam's Gears modules from that tree. An installed
    # gearcam sits among the runtime's packages (numpy 2, ...): the Gears virtualenv then has its own copy.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if os.path.basename(package_root) not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = package_root
    return env


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class GearsWorker:
    def __init__(
        self,
        owner: str,
        python: str,
        hello: dict[str, Any],
        handle_call: HandleCall,
        memory_mb: int,
        on_notice: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.owner = owner
        self.python = python
        self._hello = hello
        self._handle_call = handle_call
        self._on_notice = on_notice
        self.memory_mb = memory_mb
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._fd = -1  # the socket under _writer (gearcam.runtime.writes)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.death: str | None = None  # why it ended, once it did
        self.exited = asyncio.Event()
        self._kill_reason: str | None = None
        self._reading: asyncio.Future[Any] | None = None
        # The service's: the executions sent to it and not answered yet, in the order they were sent.
        self.sent: dict[str, asyncio.Future[None]] = {}

    @property
    def alive(self) -> bool:
        return self.death is None and self.proc is not None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> None:
        mine, theirs = socket.socketpair()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "gearcam.runtime.gears.worker", "--fd", str(theirs.fileno()),
                pass_fds=(theirs.fileno(),), env=worker_environment(self.python), stdin=asyncio.subprocess.DEVNULL,
                cwd="/",
            )  # fmt: skip
        except OSError as exc:
            mine.close()
            raise GearsError(
                f"cannot start a Gears worker with {self.python}: {exc}; run scripts/bootstrap to create the Gears "
                "virtualenv, or set runtime.gears_python"
            ) from None
        finally:
            theirs.close()
        reader, self._writer = await asyncio.open_unix_connection(sock=mine, limit=2**20)
        self._fd = socket_fd(self._writer)
        self._send((ipc.NOTICE, 0, "hello", self._hello))
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._reading = self._spawn(self._read_loop(reader, ready))
        self._spawn(self._watch())
        try:
            self.info = await wait_for(asyncio.shield(ready), _START_TIMEOUT)
        except (TimeoutError, WorkerDied) as exc:
            self.kill("did not start")
            raise GearsError(f"the Gears worker ({self.python}) did not start: {exc or 'timed out'}") from None
        logger.info(
            "Gears worker for user %r started: pid %s, Python %s (%s), uid %s",
            self.owner, self.info.get("pid"), self.info.get("python"), self.info.get("prefix"), self.info.get("uid"),
        )  # fmt: skip

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _send(self, message: Any) -> None:
        if self._writer is None or self.death is not None:
            raise WorkerDied(self.death or "the Gears worker is not running")
        write_chunks(self._writer, self._fd, [ipc.dumps(message)])  # a large frame's record leaves the GIL free

    async def request(self, op: str, payload: Any) -> Any:
        """Send a request and wait for its answer; a worker error is raised as GearsError with its text."""
        return await self.asked(op, payload)

    def asked(self, op: str, payload: Any) -> Awaitable[Any]:
        """Send a request now, before whatever is sent after this call returns; await what it returns for the
        answer (as request())."""
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            self._send((ipc.REQUEST, call_id, op, payload))
        except (ConnectionError, OSError) as exc:
            self._pending.pop(call_id, None)
            raise WorkerDied(self.death or f"the Gears worker's channel broke: {exc}") from None
        except BaseException:
            self._pending.pop(call_id, None)
            raise
        return self._answer(call_id, future)

    async def _answer(self, call_id: int, future: asyncio.Future[Any]) -> Any:
        try:
            assert self._writer is not None
            await self._writer.drain()
            return await future
        except (ConnectionError, OSError) as exc:
            raise WorkerDied(self.death or f"the Gears worker's channel broke: {exc}") from None
        finally:
            self._pending.pop(call_id, None)

    def notify(self, op: str, payload: Any) -> None:
        """A request whose answer nobody waits for (configuration changes)."""
        with contextlib.suppress(WorkerDied, ConnectionError, OSError):
            self._send((ipc.REQUEST, next(self._ids), op, payload))

    async def _read_loop(self, reader: asyncio.StreamReader, ready: asyncio.Future[Any]) -> None:
        try:
            while True:
                header = await reader.readexactly(ipc.HEADER.size)
                body = await reader.readexactly(ipc.frame_length(header))
                kind, msg_id, op, payload = ipc.loads(body)
                if kind == ipc.REPLY or kind == ipc.FAILURE:
                    future = self._pending.get(msg_id)
                    if future is not None and not future.done():
                        if kind == ipc.REPLY:
                            future.set_result(payload)
                        else:
                            future.set_exception(GearsError(str(payload)))
                elif kind == ipc.REQUEST:
                    self._spawn(self._serve_call(msg_id, str(op), payload))
                elif kind == ipc.NOTICE and op == "ready":
                    if not ready.done():
                        ready.set_result(payload if isinstance(payload, dict) else {})
                elif kind == ipc.NOTICE and self._on_notice is not None:
                    self._on_notice(str(op), payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except (ipc.WireError, ValueError, TypeError) as exc:
            self.kill(f"it sent something that is not a Gears message ({exc})")
        finally:
            if not ready.done():
                ready.set_exception(WorkerDied("its channel closed before it was ready"))
                ready.exception()  # retrieved: start() reports it

    async def _serve_call(self, msg_id: int, op: str, payload: Any) -> None:
        try:
            value = await self._handle_call(op, payload)
            message: Any = (ipc.REPLY, msg_id, None, value)
        except (ErrorReply, AIError) as exc:  # LOADING: Redis restarted and is not back yet, as below
            message = (ipc.LOST if is_loading(exc.message) else ipc.FAILURE, msg_id, None, exc.message)
        except GearsError as exc:
            message = (ipc.FAILURE, msg_id, None, str(exc))
        except (NetworkError, ConnectionError) as exc:  # the backing Redis restarted under the call: run it again
            logger.warning("a Gears worker's %s call lost the backing Redis: %s", op, exc)
            message = (ipc.LOST, msg_id, None, str(exc))
        except Exception as exc:
            logger.exception("a Gears worker's %s call failed", op)
            message = (ipc.FAILURE, msg_id, None, f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(WorkerDied, ConnectionError, OSError):
            self._send(message)

    async def _watch(self) -> None:
        """Watch the resident size; when the process ends, fail what waits on it."""
        assert self.proc is not None
        proc = self.proc
        limit = self.memory_mb * 1024 * 1024
        wait = asyncio.ensure_future(proc.wait())
        try:
            while not wait.done():
                await asyncio.wait([wait], timeout=_MONITOR_INTERVAL)
                if limit and not wait.done():
                    used = rss_bytes(proc.pid)
                    if used > limit:
                        self.kill(
                            f"it used {used // (1024 * 1024)} MiB, over runtime.gears_max_memory_mb "
                            f"({self.memory_mb} MiB)"
                        )
            code = wait.result()
        finally:
            wait.cancel()
        if self._reading is not None:
            # What it sent before it ended is handled first: an execution that told it started is not
            # taken for one that never did (the service runs those again in the replacement).
            with contextlib.suppress(TimeoutError):
                await wait_for(asyncio.shield(self._reading), _LAST_WORDS_S)
        if self._kill_reason is not None:
            reason = f"Gears worker replaced: {self._kill_reason}"
        elif code < 0:
            reason = f"Gears worker died: killed by signal {signal.Signals(-code).name}"
        else:
            reason = f"Gears worker exited with code {code}"
        self.death = reason
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(WorkerDied(reason))
        if self._writer is not None:
            self._writer.close()
        self.exited.set()
        if self._kill_reason != "stopping":
            logger.warning("Gears worker for user %r (pid %s): %s", self.owner, proc.pid, reason)

    def kill(self, reason: str) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        if self._kill_reason is None:
            self._kill_reason = reason
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def stop(self) -> None:
        self.kill("stopping")
        if self.proc is not None:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.exited.wait(), 5)
        for task in list(self._tasks):
            task.cancel()
