"""AI.INFO, AI.CONFIG, INFO MODULES, and redis-cli talking to the runtime."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.runtime.conftest import error_of, raw_call, running_stack
from tests.runtime.models import add_model


@pytest.fixture
def model(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "TAG", "v2", "BLOB", add_model())
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 3, 2, "VALUES", 1, 2, 3, 4, 5, 6)


def test_ai_info_counts_calls_samples_and_errors(r: redis.Redis, model: None) -> None:
    for _ in range(2):
        r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
    r.execute_command("AI.TENSORSET", "bad", "FLOAT", 1, 3)
    with pytest.raises(redis.ResponseError):
        r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "bad", "OUTPUTS", 1, "c")
    info = r.execute_command("AI.INFO", "m")
    assert info[:10] == [b"key", b"m", b"type", b"MODEL", b"backend", b"ONNX", b"device", b"CPU", b"tag", b"v2"]
    assert info[10] == b"duration" and info[11] > 0
    assert info[12:] == [b"samples", 6, b"calls", 3, b"errors", 1]


def test_resetstat_zeroes_the_counters(r: redis.Redis, model: None) -> None:
    r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
    assert r.execute_command("AI.INFO", "m", "RESETSTAT") == b"OK"
    assert r.execute_command("AI.INFO", "m")[10:] == [b"duration", 0, b"samples", 0, b"calls", 0, b"errors", 0]


def test_ai_info_of_an_unknown_key(r: redis.Redis) -> None:
    assert error_of(r, "AI.INFO", "nope") == "ERR cannot find run info for key"


def test_ai_config(r: redis.Redis) -> None:
    assert r.execute_command("AI.CONFIG", "MODEL_CHUNK_SIZE", 4096) == b"OK"
    assert r.execute_command("AI.CONFIG", "GET", "MODEL_CHUNK_SIZE") == 4096
    r.execute_command("AI.CONFIG", "MODEL_CHUNK_SIZE", 511 * 1024 * 1024)
    assert r.execute_command("AI.CONFIG", "BACKENDSPATH", "/usr/lib/redis/modules/backends") == b"OK"
    assert r.execute_command("AI.CONFIG", "GET", "BACKENDSPATH") == b"/usr/lib/redis/modules/backends"
    assert r.execute_command("AI.CONFIG", "GET", "NOPE") is None
    assert r.execute_command("AI.CONFIG", "LOADBACKEND", "ONNX", "redisai_onnxruntime.so") == b"OK"
    assert error_of(r, "AI.CONFIG", "LOADBACKEND", "CAFFE", "x.so") == "ERR unsupported backend"
    assert error_of(r, "AI.CONFIG", "FLY") == "ERR unsupported subcommand"
    assert error_of(r, "AI.CONFIG", "BACKENDSPATH") == "ERR BACKENDSPATH: missing path argument"
    assert error_of(r, "AI.CONFIG", "MODEL_CHUNK_SIZE") == "ERR MODEL_CHUNK_SIZE: missing chunk size"
    assert error_of(r, "AI.CONFIG", "MODEL_CHUNK_SIZE", 0) == "ERR MODEL_CHUNK_SIZE: invalid chunk size"
    arity = "ERR wrong number of arguments for 'AI.CONFIG' command"
    assert error_of(r, "AI.CONFIG") == arity
    assert error_of(r, "AI.CONFIG", "GET") == arity
    assert error_of(r, "AI.CONFIG", "LOADBACKEND") == arity
    assert error_of(r, "AI.CONFIG", "LOADBACKEND", "TORCH") == arity


def _backends_info(client: redis.Redis) -> list[str]:
    text = raw_call(client, "INFO", "MODULES").decode()  # type: ignore[attr-defined]
    section = text.split("# ai_backends_info")[1].split("#")[0]
    return [line for line in section.split() if line]


def test_loadbackend_loads_the_engine_a_redisai_library_path_names(tmp_path: Path) -> None:
    with running_stack(tmp_path, runtime_args=["--backends-path", "/opt/redisai/backends"]) as (_, runtime):
        client = runtime.client()
        # The load-time BACKENDSPATH, as RedisAI reports the folder next to its module.
        assert client.execute_command("AI.CONFIG", "GET", "BACKENDSPATH") == b"/opt/redisai/backends"
        assert _backends_info(client) == []  # nothing loaded before it is asked for
        assert error_of(client, "AI.CONFIG", "LOADBACKEND", "ONNX", ".") == "ERR error loading backend"
        assert error_of(client, "AI.CONFIG", "LOADBACKEND", "ONNX", "redisai_torch.so") == "ERR error loading backend"
        assert _backends_info(client) == []
        path = "backends/redisai_onnxruntime/redisai_onnxruntime.so"
        assert client.execute_command("AI.CONFIG", "LOADBACKEND", "ONNX", path) == b"OK"
        lines = _backends_info(client)
        assert [line.split(":")[0] for line in lines] == ["ai_onnxruntime_version",
                                                          "ai_onnxruntime_maximum_run_sessions_number"]  # fmt: skip
        # as RedisAI counts its ONNX run slots: THREADS_PER_QUEUE (1) for each device queue, CPU's from the start
        assert lines[1] == "ai_onnxruntime_maximum_run_sessions_number:1"
        client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU:1", "BLOB", add_model())
        assert _backends_info(client)[1] == "ai_onnxruntime_maximum_run_sessions_number:2"
    (tmp_path / "default").mkdir()
    with running_stack(tmp_path / "default") as (_, runtime):
        default = runtime.client().execute_command("AI.CONFIG", "GET", "BACKENDSPATH")
        assert Path(default.decode()).name == "engines"  # the runtime's engines stand where RedisAI's backends are


def test_info_modules_lists_ai_and_its_sections(r: redis.Redis, model: None) -> None:
    r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
    text = raw_call(r, "INFO", "MODULES").decode()  # type: ignore[attr-defined]
    assert "module:name=ai,ver=10207" in text
    assert "ai_threads_per_queue:1" in text
    assert "ai_onnxruntime_version:" in text
    assert "ai_queue_CPU_bthread_n1_used_cpu_total:" in text
    default = raw_call(r, "INFO").decode()  # type: ignore[attr-defined]
    assert "module:name=ai" in default and "redis_version:" in default


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli (Debian's redis-tools) is not installed")
def test_redis_cli_talks_to_the_runtime(r: redis.Redis, model: None) -> None:
    port = str(r.connection_pool.connection_kwargs["port"])
    ping = subprocess.run(["redis-cli", "-p", port, "PING"], capture_output=True, text=True, timeout=10)
    assert ping.stdout.strip() == "PONG"
    info = subprocess.run(["redis-cli", "-p", port, "AI.INFO", "m"], capture_output=True, text=True, timeout=10)
    assert info.stdout.splitlines()[:4] == ["key", "m", "type", "MODEL"]
    tensor = subprocess.run(["redis-cli", "-p", port, "AI.TENSORGET", "a", "META"], capture_output=True, text=True,
                            timeout=10)  # fmt: skip
    assert tensor.stdout.split() == ["dtype", "FLOAT", "shape", "3", "2"]
