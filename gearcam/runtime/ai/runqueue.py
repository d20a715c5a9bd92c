"""Run queues per device, served by THREADS_PER_QUEUE worker threads, with auto-batching.

Batching follows RedisAI 1.2's background workers (reference §2): requests for the
same model whose inputs agree on every dim but the first are concatenated on dim 0
until the total reaches BATCHSIZE (it may overshoot), a request already >= BATCHSIZE
runs alone, MINBATCHSIZE holds a short batch back until MINBATCHTIMEOUT (measured
from the oldest request's enqueue) passes, and outputs are split back by offset.
One difference: a held-back batch does not block requests for other models queued
behind it; the worker looks further down the queue instead of idling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gearcam.runtime import replies
from gearcam.runtime.ai.engines import EngineModel
from gearcam.runtime.ai.errors import AIError, RunTimedOut

__all__ = ["QueueSet", "RunQueue", "RunRequest", "Runnable"]

logger = logging.getLogger(__name__)

_POLL = 0.001  # RedisAI's workers re-check a pending MINBATCHSIZE every millisecond.


@dataclass(eq=False)
class Runnable:
    """What a queue needs to know about a model: the engine and its batching settings."""

    engine: EngineModel
    batchsize: int = 0
    minbatchsize: int = 0
    minbatchtimeout: int = 0
    backend: str = ""


@dataclass(eq=False)
class RunRequest:
    runnable: Runnable
    inputs: list[np.ndarray[Any, Any]]
    timeout_ms: int = 0
    # A callable run instead of the model (scripts); it bypasses batching.
    call: Callable[[], list[np.ndarray[Any, Any]]] | None = None
    enqueued: float = field(default_factory=time.monotonic)
    future: Future[tuple[Any, int]] = field(default_factory=Future)

    def batch_size(self) -> int:
        """Dim 0 shared by every input, or 0 when they disagree (then it cannot batch)."""
        sizes = {a.shape[0] if a.ndim else 0 for a in self.inputs}
        return sizes.pop() if len(sizes) == 1 else 0

    def batch_key(self) -> tuple[Any, ...]:
        return tuple((a.ndim, a.shape[1:], a.dtype.str) for a in self.inputs)


class RunQueue:
    def __init__(self, device: str, threads: int) -> None:
        self.device = device
        self._items: list[RunRequest] = []
        self._cond = threading.Condition()
        self._stopping = False
        self.batches_run = 0
        self.cpu_seconds: list[float] = [0.0] * threads
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"ai-{device}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: RunRequest) -> Future[tuple[Any, int]]:
        with self._cond:
            self._items.append(request)
            self._cond.notify()
        return request.future

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)

    def _work(self, index: int) -> None:
        while True:
            with self._cond:
                batch = self._take()
                while batch is None:
                    if self._stopping:
                        return
                    self._cond.wait(_POLL if self._items else None)
                    batch = self._take()
            started = time.thread_time()
            self._run(batch)
            self.cpu_seconds[index] += time.thread_time() - started

    def _take(self) -> list[RunRequest] | None:
        """Remove and return the next batch that may run now (called with the lock held)."""
        now = time.monotonic()
        for position, head in enumerate(self._items):
            if head.timeout_ms and (now - head.enqueued) * 1000 > head.timeout_ms:
                del self._items[position]
                head.future.set_exception(RunTimedOut())
                return self._take()
            model = head.runnable
            size = head.batch_size() if head.call is None else 0
            if model.batchsize <= 0 or size == 0 or size >= model.batchsize:
                del self._items[position]
                return [head]
            batch, total, key = [head], size, head.batch_key()
            for other in self._items[position + 1 :]:
                if total >= model.batchsize:
                    break
                if other.runnable is not model or other.call is not None or other.batch_key() != key:
                    continue
                other_size = other.batch_size()
                if other_size == 0:
                    continue
                batch.append(other)
                total += other_size
            waited_ms = (now - head.enqueued) * 1000
            if model.minbatchsize > 0 and total < model.minbatchsize:
                if not (model.minbatchtimeout > 0 and waited_ms > model.minbatchtimeout):
                    continue
            for request in batch:
                self._items.remove(request)
            return batch
        return None

    def _run(self, batch: list[RunRequest]) -> None:
        head = batch[0]
        started = time.perf_counter()
        try:
            if head.call is not None:
                outputs = head.call()
            elif len(batch) == 1:
                outputs = head.runnable.engine.run(head.inputs)
            else:
                merged = [np.concatenate(parts, axis=0) for parts in zip(*(r.inputs for r in batch), strict=True)]
                outputs = head.runnable.engine.run(merged)
        except AIError as exc:
            self._fail(batch, exc)
            return
        except Exception as exc:  # an engine bug must not kill the worker thread
            logger.exception("engine failed on device %s", self.device)
            self._fail(batch, AIError(f"ERR {type(exc).__name__}: {exc}"))
            return
        self.batches_run += 1
        duration_us = int((time.perf_counter() - started) * 1_000_000)
        if len(batch) == 1 and head.runnable.batchsize <= 0:
            head.future.set_result((outputs, duration_us))
            return
        expected = sum(r.batch_size() for r in batch)
        if any(o.ndim == 0 or o.shape[0] != expected for o in outputs):
            message = replies.TF_BATCH_SIZE_MISMATCH if head.runnable.backend == "TF" else replies.BATCH_SIZE_MISMATCH
            self._fail(batch, AIError(message))
            return
        offset = 0
        for request in batch:
            size = request.batch_size()
            request.future.set_result(([o[offset : offset + size] for o in outputs], duration_us))
            offset += size

    @staticmethod
    def _fail(batch: list[RunRequest], error: AIError) -> None:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(error)


class QueueSet:
    """One RunQueue per upper-cased device string, created on first use (as RedisAI's GPU queues)."""

    def __init__(self, threads_per_queue: int) -> None:
        self._threads = threads_per_queue
        self._queues: dict[str, RunQueue] = {}
        self._lock = threading.Lock()
        self.get("CPU")

    def get(self, device: str) -> RunQueue:
        name = device.upper()
        with self._lock:
            if name not in self._queues:
                self._queues[name] = RunQueue(name, self._threads)
            return self._queues[name]

    def all(self) -> list[RunQueue]:
        with self._lock:
            return list(self._queues.values())

    def stop(self) -> None:
        for queue in self.all():
            queue.stop()
