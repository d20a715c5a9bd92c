"""RedisAI's load-time options as runtime flags: threads per queue, execution timeout, unix socket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.runtime.conftest import Backing, Runtime, error_of, raw_call, runtime_in_front
from tests.runtime.models import FIXTURES, add_model, slow_model

ADD_TFLITE = FIXTURES / "add.tflite"


@pytest.fixture
def configured(backing: Backing, tmp_path: Path) -> Iterator[Runtime]:
    sock = tmp_path / "gearcam.sock"
    flags = ["--threads-per-queue", "2", "--model-execution-timeout", "1000", "--unixsocket", str(sock)]
    with runtime_in_front(backing, flags) as runtime:
        yield runtime


def test_threads_per_queue_and_the_timeout_show_in_info_modules(configured: Runtime) -> None:
    text = raw_call(redis.Redis(port=configured.port), "INFO", "MODULES").decode()  # type: ignore[attr-defined]
    assert "ai_threads_per_queue:2" in text and "ai_model_execution_timeout:1000" in text
    assert "ai_queue_CPU_bthread_n2_used_cpu_total:" in text


def test_info_modules_shows_the_threads_a_tflite_run_gets_once_the_engine_is_loaded(configured: Runtime) -> None:
    """INTRA_OP_PARALLELISM is 0 (the engine's default), so the runtime gave each run a share of the cores."""
    client = redis.Redis(port=configured.port)
    assert "ai_tflite_threads_per_run" not in client.info("modules")  # RedisAI lists loaded backends only
    client.execute_command("AI.MODELSTORE", "m", "TFLITE", "CPU", "BLOB", ADD_TFLITE.read_bytes())
    info = client.info("modules")
    assert info["ai_intra_op_parallelism"] == 0
    assert info["ai_tflite_threads_per_run"] == max(1, len(os.sched_getaffinity(0)) // 2)  # 2 threads per queue


def test_the_unix_socket_serves_the_same_commands(configured: Runtime, tmp_path: Path) -> None:
    client = redis.Redis(unix_socket_path=str(tmp_path / "gearcam.sock"), protocol=2)
    assert client.ping()
    assert client.execute_command("AI.TENSORSET", "u", "INT16", 1, "VALUES", -3) == b"OK"
    assert redis.Redis(port=configured.port, protocol=2).execute_command("AI.TENSORGET", "u", "VALUES") == [-3]


def test_an_onnx_run_past_model_execution_timeout_is_stopped(configured: Runtime) -> None:
    client = redis.Redis(port=configured.port, protocol=2)
    client.execute_command("AI.MODELSTORE", "slow", "ONNX", "CPU", "BLOB", slow_model())
    x = np.ones((6000, 2048), np.float32)
    client.execute_command("AI.TENSORSET", "x", "FLOAT", 6000, 2048, "BLOB", x.tobytes())
    assert error_of(client, "AI.MODELEXECUTE", "slow", "INPUTS", 1, "x", "OUTPUTS", 1, "y") == (
        "Exiting due to terminate flag being set to true."
    )
    small = np.ones((2, 2048), np.float32)
    client.execute_command("AI.TENSORSET", "s", "FLOAT", 2, 2048, "BLOB", small.tobytes())
    assert client.execute_command("AI.MODELEXECUTE", "slow", "INPUTS", 1, "s", "OUTPUTS", 1, "y") == b"OK"


@pytest.fixture
def memory_limited(backing: Backing) -> Iterator[Runtime]:
    with runtime_in_front(backing, ["--backend-memory-limit", "4"]) as runtime:
        yield runtime


def test_backend_memory_limit_bounds_what_onnx_runs_allocate(memory_limited: Runtime, runtime: Runtime) -> None:
    """RedisAI's BACKEND_MEMORY_LIMIT (MB) for ONNX Runtime: a run that needs more fails in RedisAI's words,
    and the next one that fits runs; the same run on a runtime without the limit succeeds."""
    big = np.ones((1_000_000, 2), np.float32)  # 8 MB in, 8 MB out: past a 4 MB arena
    small = np.ones((1_000, 2), np.float32)
    for server, limited in ((memory_limited, True), (runtime, False)):
        client = server.client()
        client.execute_command("AI.MODELSTORE", "add", "ONNX", "CPU", "BLOB", add_model())
        client.execute_command("AI.TENSORSET", "big", "FLOAT", *big.shape, "BLOB", big.tobytes())
        client.execute_command("AI.TENSORSET", "small", "FLOAT", *small.shape, "BLOB", small.tobytes())
        run_big = ("AI.MODELEXECUTE", "add", "INPUTS", 2, "big", "big", "OUTPUTS", 1, "out")
        if limited:
            assert "Onnxruntime memory limit exceeded, memory allocation failed." in error_of(client, *run_big)
            assert client.exists("out") == 0
        else:
            assert client.execute_command(*run_big) == b"OK"
        client.execute_command("AI.MODELEXECUTE", "add", "INPUTS", 2, "small", "small", "OUTPUTS", 1, "out")
        assert client.execute_command("AI.TENSORGET", "out", "META") == [b"dtype", b"FLOAT", b"shape", [1000, 2]]
        client.delete("add", "big", "small", "out")
        client.close()
