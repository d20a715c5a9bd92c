"""Auto-batching through the runtime: concurrent clients merged into fewer engine runs, each getting its own slice."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import redis

from tests.runtime.conftest import Backing, Runtime, raw_call, runtime_in_front
from tests.runtime.models import fixed_batch_model, linear_model


@pytest.fixture
def runtime2(backing: Backing) -> Iterator[Runtime]:
    with runtime_in_front(backing) as runtime:
        yield runtime


def _engine_runs(client: redis.Redis) -> int:
    text = raw_call(client, "INFO", "MODULES").decode()  # type: ignore[attr-defined]
    return int(text.split("ai_queue_CPU_engine_runs:")[1].split()[0])


def _concurrent(port: int, key: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    results: list[np.ndarray | None] = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def client(i: int) -> None:
        conn = redis.Redis(port=port, protocol=2)
        conn.execute_command("AI.TENSORSET", f"x{i}", "FLOAT", *inputs[i].shape, "BLOB", inputs[i].tobytes())
        barrier.wait()
        conn.execute_command("AI.MODELEXECUTE", key, "INPUTS", 1, f"x{i}", "OUTPUTS", 1, f"y{i}")
        blob = conn.execute_command("AI.TENSORGET", f"y{i}", "BLOB")
        results[i] = np.frombuffer(blob, np.float32).reshape(inputs[i].shape[0], -1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _expected(x: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = x @ weights + bias
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_concurrent_clients_share_engine_runs_and_get_their_own_rows(runtime2: Runtime) -> None:
    blob, weights, bias = linear_model(features=256, classes=10)
    client = redis.Redis(port=runtime2.port, protocol=2)
    client.flushall()
    # MINBATCHSIZE holds the first request until enough others arrived, so merging is certain.
    client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BATCHSIZE", 8, "MINBATCHSIZE", 8,
                           "MINBATCHTIMEOUT", 2000, "BLOB", blob)  # fmt: skip
    before = _engine_runs(client)
    inputs = [np.random.default_rng(i).random((1, 256), dtype=np.float32) for i in range(8)]
    outputs = _concurrent(runtime2.port, "m", inputs)
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_allclose(y, _expected(x, weights, bias), rtol=1e-4)
    runs = _engine_runs(client) - before
    assert runs < 8
    info = client.execute_command("AI.INFO", "m")
    assert info[12:] == [b"samples", 8, b"calls", 8, b"errors", 0]


def test_requests_with_other_feature_sizes_are_not_merged_but_still_answered(runtime2: Runtime) -> None:
    from tests.runtime.models import add_model

    client = redis.Redis(port=runtime2.port, protocol=2)
    client.execute_command("AI.MODELSTORE", "add", "ONNX", "CPU", "BATCHSIZE", 4, "BLOB", add_model(("N", "W")))
    results: dict[int, bytes] = {}

    def run(width: int) -> None:
        conn = redis.Redis(port=runtime2.port, protocol=2)
        x = np.full((1, width), width, np.float32)
        conn.execute_command("AI.TENSORSET", f"w{width}", "FLOAT", 1, width, "BLOB", x.tobytes())
        conn.execute_command("AI.MODELEXECUTE", "add", "INPUTS", 2, f"w{width}", f"w{width}", "OUTPUTS", 1, f"o{width}")
        results[width] = conn.execute_command("AI.TENSORGET", f"o{width}", "BLOB")

    threads = [threading.Thread(target=run, args=(w,)) for w in (2, 3, 2, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for width in (2, 3, 5):
        np.testing.assert_array_equal(np.frombuffer(results[width], np.float32), np.full(width, 2 * width))


def _inline_runs(client: redis.Redis) -> int:
    return int(client.info("modules")["ai_queue_CPU_inline_runs"])


@contextlib.contextmanager
def _client_of_runtime_inlining_under(backing: Backing, inline_us: int) -> Iterator[redis.Redis]:
    """A client of a fresh runtime whose bound for inline runs is `inline_us`; both closed after."""
    with runtime_in_front(backing, env={"GEARCAM_RUNTIME__INLINE_RUN_US": str(inline_us)}) as runtime:
        with redis.Redis(port=runtime.port, protocol=2) as client:
            yield client


def _store_linear_models(client: redis.Redis) -> Callable[[str], None]:
    """Store `small`, `batched` and `waits` (the same linear model); returns a function running one on `x`."""
    blob, weights, bias = linear_model()
    x = np.ones((1, 4), dtype=np.float32)
    client.execute_command("AI.MODELSTORE", "small", "ONNX", "CPU", "BLOB", blob)
    client.execute_command("AI.MODELSTORE", "batched", "ONNX", "CPU", "BATCHSIZE", 4, "BLOB", blob)
    client.execute_command("AI.MODELSTORE", "waits", "ONNX", "CPU", "BATCHSIZE", 4, "MINBATCHSIZE", 2,
                           "MINBATCHTIMEOUT", 1, "BLOB", blob)  # fmt: skip
    client.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 4, "BLOB", x.tobytes())
    logits = x @ weights + bias
    expected = (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)

    def run(model: str) -> None:
        client.execute_command("AI.MODELEXECUTE", model, "INPUTS", 1, "x", "OUTPUTS", 1, "y")
        out = np.frombuffer(client.execute_command("AI.TENSORGET", "y", "BLOB"), dtype=np.float32)
        np.testing.assert_allclose(out.reshape(1, 3), expected, rtol=1e-5)

    return run


def test_a_small_model_runs_inline_unless_it_waits_for_a_minimum_batch(backing: Backing) -> None:
    # A bound no run reaches, so the test does not hang on this machine's speed: what is checked is
    # which runs may be made inline, not how fast a run is.
    with _client_of_runtime_inlining_under(backing, 10_000_000) as client:
        run = _store_linear_models(client)
        for _ in range(5):
            run("small")  # the first is measured on a queue thread, the next ones are made inline
        assert _inline_runs(client) == 4
        for _ in range(5):
            run("batched")  # alone on an idle queue, as the queue would run it
        assert _inline_runs(client) == 8
        for _ in range(5):
            run("waits")  # MINBATCHSIZE: it waits in the queue for others to merge with
        assert _inline_runs(client) == 8
        info = client.execute_command("AI.INFO", "small")
        assert info[info.index(b"calls") + 1] == 5  # inline runs are charged like the others


def _busy_seconds(client: redis.Redis) -> float:
    return float(client.info("modules")["ai_queue_CPU_busy_seconds"])


def test_the_engines_busy_time_counts_queue_and_inline_runs_within_the_time_elapsed(backing: Backing) -> None:
    with _client_of_runtime_inlining_under(backing, 10_000_000) as client:
        run = _store_linear_models(client)
        began, before = time.perf_counter(), _busy_seconds(client)
        run("small")  # measured on a queue thread
        after_queue = _busy_seconds(client)
        assert after_queue > before
        for _ in range(20):
            run("small")  # inline
        assert _inline_runs(client) == 20
        after_inline = _busy_seconds(client)
        assert after_inline > after_queue
        # One thread per queue here: the engine cannot have been busy longer than the time that passed.
        assert after_inline - before <= time.perf_counter() - began


def test_no_run_is_made_inline_when_the_bound_is_zero(backing: Backing) -> None:
    with _client_of_runtime_inlining_under(backing, 0) as client:
        run = _store_linear_models(client)
        for model in ("small", "batched"):
            for _ in range(3):
                run(model)
        assert _inline_runs(client) == 0
        assert _engine_runs(client) == 6


def test_a_batched_model_whose_outputs_lose_the_batch_fails_inline_as_in_the_queue(backing: Backing) -> None:
    with _client_of_runtime_inlining_under(backing, 10_000_000) as client:
        client.execute_command("AI.MODELSTORE", "sum", "ONNX", "CPU", "BATCHSIZE", 4, "BLOB", fixed_batch_model())
        client.execute_command("AI.TENSORSET", "one", "FLOAT", 1, 2, "VALUES", 1, 2)
        client.execute_command("AI.TENSORSET", "two", "FLOAT", 2, 2, "VALUES", 1, 2, 3, 4)
        for _ in range(3):  # the first run is measured on the queue's thread, the next ones inline
            client.execute_command("AI.MODELEXECUTE", "sum", "INPUTS", 1, "one", "OUTPUTS", 1, "y")
        assert _inline_runs(client) == 2
        with pytest.raises(redis.ResponseError, match="Model did not generate the expected batch size"):
            client.execute_command("AI.MODELEXECUTE", "sum", "INPUTS", 1, "two", "OUTPUTS", 1, "y")
        assert _inline_runs(client) == 2  # refused, not counted as a run


def _queue_figures(client: redis.Redis) -> tuple[int, float]:
    modules = client.info("modules")
    return int(modules["ai_queue_CPU_queued_requests"]), float(modules["ai_queue_CPU_wait_seconds"])


def test_the_queue_counts_each_request_and_the_time_it_waited_for_its_run(runtime2: Runtime) -> None:
    client = redis.Redis(port=runtime2.port, protocol=2)
    blob, _, _ = linear_model()
    # A lone request for a model that waits for a batch of 4 starts only once MINBATCHTIMEOUT has passed.
    client.execute_command("AI.MODELSTORE", "waits", "ONNX", "CPU", "BATCHSIZE", 4, "MINBATCHSIZE", 4,
                           "MINBATCHTIMEOUT", 300, "BLOB", blob)  # fmt: skip
    client.execute_command("AI.TENSORSET", "x", "FLOAT", 1, 4, "BLOB", np.ones((1, 4), np.float32).tobytes())
    requests, waited = _queue_figures(client)
    started = time.monotonic()
    client.execute_command("AI.MODELEXECUTE", "waits", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
    elapsed = time.monotonic() - started
    after_requests, after_waited = _queue_figures(client)
    assert after_requests == requests + 1
    assert 0.3 <= after_waited - waited <= elapsed
