"""Run queues per device, served by THREADS_PER_QUEUE worker threads, with auto-batching.

Batching follows RedisAI 1.2's background workers (reference §2): requests for the
same model whose inputs agree on every dim but the first are concatenated on dim 0
until the total reaches BATCHSIZE (it may overshoot), a request already >= BATCHSIZE
runs alone, MINBATCHSIZE holds a short batch back until MINBATCHTIMEOUT (measured
from the oldest request's enqueue) passes, and outputs are split back by offset.
Two differences: a held-back batch does not block requests for other models queued
behind it (the worker looks further down the queue instead of idling), and a run that
outlasts its deadline (the command's TIMEOUT; for TorchScript also MODEL_EXECUTION_TIMEOUT)
is abandoned: its callers get TIMEDOUT at once and a fresh worker thread takes its place,
so one stuck run (a script's endless loop) does not stall the device. The abandoned thread
cannot be killed; it ends when the engine returns and its result is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gearcam.runtime import replies
from gearcam.runtime.ai.engines import EngineModel
from gearcam.runtime.ai.engines.watchdog import watchdog
from gearcam.runtime.ai.errors import AIError, RunTimedOut

__all__ = ["QueueSet", "RunQueue", "RunRequest", "Runnable"]

logger = logging.getLogger(__name__)

_POLL = 0.001  # RedisAI's workers re-check a pending MINBATCHSIZE every millisecond.
_INLINE_BACKENDS = {"ONNX", "TFLITE"}  # ONNX Runtime's runs are ended at MODEL_EXECUTION_TIMEOUT


@dataclass(eq=False)
class Runnable:
    """What a queue needs to know about a model: the engine and its batching settings."""

    engine: EngineModel
    batchsize: int = 0
    minbatchsize: int = 0
    minbatchtimeout: int = 0
    backend: str = ""
    # The engine's time for its last run, alone or merged (µs; -1 before the first): decides whether a
    # run may be made inline (RunQueue.run_inline).
    last_run_us: int = -1


@dataclass(eq=False)
class RunRequest:
    runnable: Runnable
    inputs: list[np.ndarray[Any, Any]]
    timeout_ms: int = 0
    # A callable run instead of the model (scripts); it bypasses batching.
    call: Callable[[], list[np.ndarray[Any, Any]]] | None = None
    enqueued: float = field(default_factory=time.monotonic)
    # Made by `submit`: a request run inline never needs one (a Future makes a Condition and a lock).
    future: Future[tuple[Any, int]] = field(init=False, repr=False)

    def batch_size(self) -> int:
        """Dim 0 shared by every input, or 0 when they disagree (then it cannot batch)."""
        sizes = {a.shape[0] if a.ndim else 0 for a in self.inputs}
        return sizes.pop() if len(sizes) == 1 else 0

    def batch_key(self) -> tuple[Any, ...]:
        return tuple((a.ndim, a.shape[1:], a.dtype.str) for a in self.inputs)


# A request and what to answer it: the result (outputs, µs) or the exception.
_Answer = tuple[RunRequest, tuple[Any, int] | None, BaseException | None]


class RunQueue:
    def __init__(self, device: str, threads: int, script_timeout_ms: int = 0, inline_us: int = 0) -> None:
        self.device = device
        self._inline_us = inline_us
        self._items: list[RunRequest] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._script_timeout_ms = script_timeout_ms
        self.batches_run = 0
        self.abandoned = 0  # runs given up past their deadline (their threads replaced)
        self.inline_runs = 0  # small models' runs made on the caller's thread (run_inline)
        self.cpu_seconds: list[float] = [0.0] * threads
        # Wall seconds the engine spent in runs (every thread and inline run together): against the time
        # elapsed, how busy the device was, so an idle engine under load shows the gaps its feeders leave.
        self.busy_seconds = 0.0
        # Requests that went through the queue (not inline) and the seconds they waited there in all, from
        # their hand-over to the start of their run: the wake-up of an idle thread, a busy engine, a batch
        # held for MINBATCHSIZE. Their mean is what a client pays for the queue on top of the run.
        self.queued_requests = 0
        self.wait_seconds = 0.0
        # Per worker slot: the generation of the thread serving it (bumped when a stuck one is replaced)
        # and the batch it runs now.
        self._generation = [0] * threads
        self._running: dict[int, list[RunRequest]] = {}
        self._threads = [self._thread(i) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _thread(self, index: int) -> threading.Thread:
        generation = self._generation[index]
        name = f"ai-{self.device}-{index}" + (f"-{generation}" if generation else "")
        return threading.Thread(target=self._work, args=(index, generation), name=name, daemon=True)

    def run_inline(self, request: RunRequest) -> tuple[Any, int] | AIError | None:
        """Run a small model's request now, on the calling thread, if nothing is queued or running; else None.

        Only for ONNX and TFLite models whose last run was shorter than `inline_us`
        (runtime.inline_run_us), so the caller (the event loop) is held for microseconds, never
        for a real model. A model with BATCHSIZE runs inline too (alone, as the queue would run
        a request it finds alone), unless it has a MINBATCHSIZE to wait for: merging runs of
        tens of microseconds saves less than handing them to a thread costs (measured:
        auto-batching made the tabular model 10-23 % slower).
        """
        model = request.runnable
        if request.call is not None or model.minbatchsize > 0 or not 0 <= model.last_run_us < self._inline_us:
            return None
        if model.backend not in _INLINE_BACKENDS:
            return None  # TorchScript and TF graphs may loop on some input: never on the event loop
        with self._cond:
            if self._items or self._running or self._stopping:
                return None
        started = time.perf_counter()
        outputs = self._guarded(lambda: model.engine.run(request.inputs))
        if isinstance(outputs, AIError):
            return outputs
        if model.batchsize > 0 and (mismatch := _batch_mismatch(outputs, request.batch_size(), model.backend)):
            return mismatch
        duration_us = int((time.perf_counter() - started) * 1_000_000)
        model.last_run_us = duration_us
        with self._cond:
            self.batches_run += 1
            self.inline_runs += 1
            self.busy_seconds += duration_us / 1_000_000
        return outputs, duration_us

    def submit(self, request: RunRequest) -> Future[tuple[Any, int]]:
        request.future = Future()
        with self._cond:
            self._items.append(request)
            self._cond.notify()
        return request.future

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + 5  # in all: an abandoned thread may never end
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _work(self, index: int, generation: int) -> None:
        while True:
            with self._cond:
                if self._generation[index] != generation:
                    return  # abandoned while it ran: a replacement serves this slot
                batch = self._take()
                while batch is None:
                    if self._stopping:
                        return
                    self._cond.wait(_POLL if self._items else None)
                    batch = self._take()
                self._running[index] = batch
                now = time.monotonic()
                self.queued_requests += len(batch)
                self.wait_seconds += sum(now - request.enqueued for request in batch)
            token = self._watch(index, generation, batch)
            started, began = time.thread_time(), time.perf_counter()
            answers: list[_Answer] = []
            try:
                answers = self._run(batch)
            finally:
                if token is not None:
                    watchdog.cancel(token)
                with self._cond:
                    if self._generation[index] == generation:
                        self._running.pop(index, None)
                        self.cpu_seconds[index] += time.thread_time() - started
                        self.busy_seconds += time.perf_counter() - began
            # Answered once the slot is free: a caller sent its next request when this one's reply
            # came, and finds the queue idle, so a small model's next run is made inline.
            _settle_all(answers)
            # An idle worker must not hold the last batch's inputs and outputs (a batch-32 image
            # tensor is 18 MiB) while it waits for the next one.
            del batch, answers

    def _watch(self, index: int, generation: int, batch: list[RunRequest]) -> int | None:
        """Arm the batch's deadline: the head's TIMEOUT left, or MODEL_EXECUTION_TIMEOUT for a script."""
        head = batch[0]
        if head.timeout_ms:
            left_ms = head.timeout_ms - (time.monotonic() - head.enqueued) * 1000
        elif head.call is not None and self._script_timeout_ms:
            left_ms = self._script_timeout_ms
        else:
            return None  # ONNX Runtime ends its own runs (engines/onnx.py); other models run to the end
        return watchdog.watch(max(left_ms, 1) / 1000, lambda: self._abandon(index, generation, batch))

    def _abandon(self, index: int, generation: int, batch: list[RunRequest]) -> None:
        """Watchdog thread: the batch outlived its deadline; answer TIMEDOUT and put a fresh thread in its slot."""
        with self._cond:
            if self._generation[index] != generation or self._running.get(index) is not batch or self._stopping:
                return  # it finished meanwhile
            self._generation[index] += 1
            self._running.pop(index, None)
            self.abandoned += 1
            replacement = self._thread(index)
            self._threads.append(replacement)
        logger.warning(
            "a run on device %s outlived its deadline and was abandoned (TIMEDOUT); its thread is replaced and "
            "will end when the engine returns (a TorchScript loop that never ends keeps a core busy: fix the script)",
            self.device,
        )
        for request in batch:
            _settle(request, exception=RunTimedOut())
        replacement.start()

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

    def _run(self, batch: list[RunRequest]) -> list[_Answer]:
        """Run the batch; returns each request's answer, given by the caller once the slot is free."""
        head = batch[0]
        started = time.perf_counter()
        if head.call is not None:
            outputs = self._guarded(head.call)
        elif len(batch) == 1:
            outputs = self._guarded(lambda: head.runnable.engine.run(head.inputs))
        else:
            outputs = self._guarded(lambda: head.runnable.engine.run(_merged(batch)))
        if isinstance(outputs, AIError):
            return _failed(batch, outputs)
        self.batches_run += 1
        duration_us = int((time.perf_counter() - started) * 1_000_000)
        if head.call is None:  # a merged batch's time bounds a lone request's from above
            head.runnable.last_run_us = duration_us
        if len(batch) == 1 and head.runnable.batchsize <= 0:
            return [(head, (outputs, duration_us), None)]
        mismatch = _batch_mismatch(outputs, sum(r.batch_size() for r in batch), head.runnable.backend)
        if mismatch is not None:
            return _failed(batch, mismatch)
        answers: list[_Answer] = []
        offset = 0
        for request in batch:
            size = request.batch_size()
            answers.append((request, ([o[offset : offset + size] for o in outputs], duration_us), None))
            offset += size
        return answers

    def _guarded(self, run: Callable[[], list[np.ndarray[Any, Any]]]) -> list[np.ndarray[Any, Any]] | AIError:
        """The engine's outputs, or the error to answer: an engine bug costs its requests, never the thread."""
        try:
            return run()
        except AIError as exc:
            return exc
        except Exception as exc:
            logger.exception("engine failed on device %s", self.device)
            return AIError(f"ERR {type(exc).__name__}: {exc}")


def _failed(batch: list[RunRequest], error: AIError) -> list[_Answer]:
    return [(request, None, error) for request in batch]


def _batch_mismatch(outputs: list[np.ndarray[Any, Any]], expected: int, backend: str) -> AIError | None:
    """RedisAI's error when a batched model's outputs do not have the batch's size as their first dimension."""
    if any(o.ndim == 0 or o.shape[0] != expected for o in outputs):
        return AIError(replies.TF_BATCH_SIZE_MISMATCH if backend == "TF" else replies.BATCH_SIZE_MISMATCH)
    return None


def _merged(batch: list[RunRequest]) -> list[np.ndarray[Any, Any]]:
    """The batch's inputs concatenated on dim 0, one array per model input."""
    return [np.concatenate(parts, axis=0) for parts in zip(*(r.inputs for r in batch), strict=True)]


def _settle_all(answers: list[_Answer]) -> None:
    for request, result, exception in answers:
        _settle(request, result, exception)


def _settle(request: RunRequest, result: tuple[Any, int] | None = None, exception: BaseException | None = None) -> None:
    """Answer a request once: an abandoned run's late result (or the deadline racing the result) is dropped."""
    try:
        if exception is not None:
            request.future.set_exception(exception)
        else:
            request.future.set_result(result)  # type: ignore[arg-type]
    except InvalidStateError:
        pass


class QueueSet:
    """One RunQueue per upper-cased device string, created on first use (as RedisAI's GPU queues)."""

    def __init__(self, threads_per_queue: int, script_timeout_ms: int = 0, inline_us: int = 0) -> None:
        self._threads = threads_per_queue
        self._script_timeout_ms = script_timeout_ms
        self._inline_us = inline_us
        self._queues: dict[str, RunQueue] = {}
        self._lock = threading.Lock()
        self.get("CPU")

    def get(self, device: str) -> RunQueue:
        name = device.upper()
        with self._lock:
            if name not in self._queues:
                self._queues[name] = RunQueue(name, self._threads, self._script_timeout_ms, self._inline_us)
            return self._queues[name]

    def all(self) -> list[RunQueue]:
        with self._lock:
            return list(self._queues.values())

    def stop(self) -> None:
        for queue in self.all():
            queue.stop()
