"""gearcam.runtime.ai.runqueue: RedisAI's auto-batching rules, on a real ONNX Runtime session."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from gearcam.runtime.ai.engines import EngineOptions, load_model
from gearcam.runtime.ai.errors import AIError, RunTimedOut
from gearcam.runtime.ai.runqueue import Runnable, RunQueue, RunRequest
from tests.runtime.models import add_model, fixed_batch_model


class CountingEngine:
    """The ONNX add model, counting the engine runs and the batch each one saw."""

    def __init__(self, blob: bytes) -> None:
        self._model = load_model("ONNX", "CPU", blob, [], [], EngineOptions())
        self.input_names = self._model.input_names
        self.output_names = self._model.output_names
        self.batches: list[int] = []

    def run(self, inputs):  # type: ignore[no-untyped-def]
        self.batches.append(int(inputs[0].shape[0]))
        return self._model.run(inputs)


@pytest.fixture
def queue() -> Iterator[RunQueue]:
    q = RunQueue("CPU", 1)
    yield q
    q.stop()


def _pair(n: int, seed: int, width: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((n, width), dtype=np.float32), rng.random((n, width), dtype=np.float32)]


def _hold(queue: RunQueue, seconds: float) -> None:
    """Keep the single worker busy so requests pile up behind it."""
    engine = CountingEngine(add_model())
    sleeper = Runnable(engine)
    queue.submit(RunRequest(sleeper, [], call=lambda: (time.sleep(seconds), [])[1]))


def test_requests_for_the_same_model_are_merged_and_split_back(queue: RunQueue) -> None:
    engine = CountingEngine(add_model())
    model = Runnable(engine, batchsize=4)
    _hold(queue, 0.2)
    requests = [RunRequest(model, _pair(1, seed)) for seed in range(4)]
    futures = [queue.submit(r) for r in requests]
    for request, future in zip(requests, futures, strict=True):
        outputs, _ = future.result(10)
        np.testing.assert_allclose(outputs[0], request.inputs[0] + request.inputs[1])
    assert engine.batches == [4]


def test_a_batch_may_overshoot_batchsize_as_in_redisai(queue: RunQueue) -> None:
    engine = CountingEngine(add_model())
    model = Runnable(engine, batchsize=4)
    _hold(queue, 0.2)
    futures = [queue.submit(RunRequest(model, _pair(3, seed))) for seed in range(2)]
    for future in futures:
        future.result(10)
    assert engine.batches == [6]


def test_a_request_at_least_batchsize_runs_alone(queue: RunQueue) -> None:
    engine = CountingEngine(add_model())
    model = Runnable(engine, batchsize=4)
    _hold(queue, 0.2)
    futures = [queue.submit(RunRequest(model, _pair(n, n))) for n in (5, 1)]
    for future in futures:
        future.result(10)
    assert engine.batches == [5, 1]


def test_requests_whose_other_dims_differ_are_not_merged(queue: RunQueue) -> None:
    engine = CountingEngine(add_model(("N", "W")))
    model = Runnable(engine, batchsize=8)
    _hold(queue, 0.2)
    futures = [queue.submit(RunRequest(model, _pair(1, seed, width))) for seed, width in ((0, 2), (1, 3), (2, 2))]
    for future in futures:
        future.result(10)
    assert sorted(engine.batches) == [1, 2]


def test_minbatchsize_holds_a_short_batch_until_minbatchtimeout(queue: RunQueue) -> None:
    engine = CountingEngine(add_model())
    model = Runnable(engine, batchsize=8, minbatchsize=4, minbatchtimeout=150)
    started = time.monotonic()
    outputs, _ = queue.submit(RunRequest(model, _pair(1, 0))).result(10)
    assert time.monotonic() - started >= 0.14
    assert engine.batches == [1] and outputs[0].shape == (1, 2)


def test_a_request_queued_past_its_timeout_answers_timedout(queue: RunQueue) -> None:
    engine = CountingEngine(add_model())
    _hold(queue, 0.3)
    future = queue.submit(RunRequest(Runnable(engine), _pair(1, 0), timeout_ms=50))
    with pytest.raises(RunTimedOut):
        future.result(10)
    assert engine.batches == []


def test_a_model_that_breaks_the_batch_dimension_fails_every_request_of_the_batch(queue: RunQueue) -> None:
    engine = CountingEngine(fixed_batch_model())
    model = Runnable(engine, batchsize=4)
    _hold(queue, 0.2)
    futures = [queue.submit(RunRequest(model, [np.ones((1, 2), np.float32)])) for _ in range(2)]
    for future in futures:
        with pytest.raises(AIError, match="Model did not generate the expected batch size"):
            future.result(10)


def test_an_engine_error_reaches_the_request_and_the_worker_survives(queue: RunQueue) -> None:
    engine = CountingEngine(add_model())
    model = Runnable(engine)
    bad = queue.submit(RunRequest(model, [np.ones((1, 3), np.float32), np.ones((1, 3), np.float32)]))
    with pytest.raises(AIError):
        bad.result(10)
    good, _ = queue.submit(RunRequest(model, _pair(2, 0))).result(10)
    assert good[0].shape == (2, 2)


def test_a_request_is_answered_once_its_thread_is_free_so_the_next_run_can_be_inline() -> None:
    # The caller sends its next request as soon as the answer comes; if the answer came before the
    # worker let go of its slot, that next run of a small model would find the queue busy.
    queue = RunQueue("CPU", 1, inline_us=10_000_000)
    try:
        model = Runnable(CountingEngine(add_model()), backend="ONNX")
        first = RunRequest(model, _pair(1, 0))
        seen: list[tuple[Any, int] | AIError | None] = []
        answered = threading.Event()

        def next_call(_: object) -> None:
            seen.append(queue.run_inline(RunRequest(model, _pair(1, 1))))
            answered.set()

        queue.submit(first).add_done_callback(next_call)
        assert answered.wait(10)  # callbacks run after result() returns: wait for this one
        assert len(seen) == 1 and isinstance(seen[0], tuple)  # run inline, from inside the answer
        assert queue.inline_runs == 1
    finally:
        queue.stop()


def test_an_idle_worker_holds_nothing_of_the_last_batch(queue: RunQueue) -> None:
    model = Runnable(CountingEngine(add_model()), batchsize=4)
    inputs = _pair(2, 7)
    watched = weakref.ref(inputs[0])
    outputs, _ = queue.submit(RunRequest(model, inputs)).result(10)
    np.testing.assert_allclose(outputs[0], inputs[0] + inputs[1])
    del inputs, outputs
    deadline = time.monotonic() + 5
    while watched() is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker lets go once it has answered
    assert watched() is None
