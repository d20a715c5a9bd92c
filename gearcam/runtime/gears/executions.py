"""Executions: one run of a plan (a `run()`, or one trigger of a registration) and its results.

The list is bounded like RedisGears' `MaxExecutions`: the oldest finished executions
are dropped first. Ids look like RedisGears' `<shard id>-<counter>`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gearcam.runtime.gears.engine import StepStats
from gearcam.runtime.gears.records import SHARD_ID

__all__ = ["Execution", "Executions", "IdCounter"]


class IdCounter:
    """`<shard id>-<n>` ids shared by sessions' registrations and executions."""

    def __init__(self, start: int = 1) -> None:
        self._counter = itertools.count(start)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return f"{SHARD_ID}-{next(self._counter)}"

    def skip_past(self, used: str) -> None:
        """After a restart: never hand out an id already stored."""
        try:
            n = int(used.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            return
        with self._lock:
            current = next(self._counter)
            self._counter = itertools.count(max(current, n + 1))


@dataclass(eq=False)
class Execution:
    id: str
    registered: bool
    status: str = "created"  # created, running, done, aborted
    results: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    steps: list[StepStats] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    total_ms: int = 0
    read_ms: int = 0
    finished: Future[None] = field(default_factory=Future)
    task: asyncio.Task[Any] | None = None
    worker: Any = None  # the GearsWorker running it
    request: asyncio.Future[Any] | None = None  # its request to that worker
    hook: Any = None  # the HookCall when it runs as a command hook (call_next goes there)
    # How many executions' calls it runs inside: a trigger or hook reached from Gears code is one deeper than the
    # execution that called (RedisGears runs it inline, inside that call).
    depth: int = 0
    backing_lost: bool = False  # a Gears call of its steps lost the backing Redis (see StreamWorker)
    # Called once, as it finishes (its registration's counters: they change together with its status).
    on_finish: Callable[[Execution], None] | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.status in ("done", "aborted")

    def finish(self, status: str = "done") -> None:
        self.status = status
        self.total_ms = int((time.monotonic() - self.started) * 1000)
        counted, self.on_finish = self.on_finish, None
        if counted is not None:
            counted(self)
        if not self.finished.done():
            self.finished.set_result(None)

    def plan_reply(self) -> list[Any]:
        """RG.GETEXECUTION's per-shard entry."""
        steps = [["type", s.kind, "duration", s.duration_ms, "name", s.name, "arg", ""] for s in reversed(self.steps)]
        plan = [
            "status", self.status, "shards_received", 0, "shards_completed", 0,
            "results", len(self.results) if self.done else -1, "errors", list(self.errors),
            "total_duration", self.total_ms, "read_duration", self.read_ms, "steps", steps,
        ]  # fmt: skip
        return ["shard_id", SHARD_ID, "execution_plan", plan]


class Executions:
    def __init__(self, ids: IdCounter, limit: int = 1000) -> None:
        self._ids = ids
        self.limit = limit
        self._items: OrderedDict[str, Execution] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, registered: bool) -> Execution:
        execution = Execution(self._ids.next(), registered)
        with self._lock:
            self._items[execution.id] = execution
        self.trim()
        return execution

    def trim(self) -> None:
        """MaxExecutions: drop the oldest finished executions past the limit (at each start and end)."""
        with self._lock:
            if len(self._items) > self.limit:
                for old_id in [i for i, e in self._items.items() if e.done][: len(self._items) - self.limit]:
                    del self._items[old_id]

    def get(self, execution_id: str) -> Execution | None:
        with self._lock:
            return self._items.get(execution_id)

    def drop(self, execution_id: str) -> None:
        with self._lock:
            self._items.pop(execution_id, None)

    def all(self) -> list[Execution]:
        with self._lock:
            return list(self._items.values())
