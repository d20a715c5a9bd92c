"""Restarts: the runtime's (state lives in Redis) and the backing Redis' (clients reconnect)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.runtime.conftest import Backing, Runtime
from tests.runtime.models import add_model


def _stored_then_restarted(runtime: Runtime) -> None:
    """Model `m` (tag v1, c = a + b) and tensor `a` stored, then the runtime restarted: nothing of them loaded."""
    client = runtime.client()
    client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "TAG", "v1", "BLOB", add_model())
    client.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    client.close()
    runtime.stop()
    runtime.start()


def test_models_and_tensors_survive_a_runtime_restart(stack: tuple[Backing, Runtime]) -> None:
    _, runtime = stack
    _stored_then_restarted(runtime)
    client = runtime.client()
    assert client.execute_command("AI.TENSORGET", "a", "VALUES") == [b"1", b"2"]
    assert client.execute_command("AI._MODELSCAN") == [[b"m", b"v1"]]
    assert client.execute_command("AI.INFO", "m")[14:] == [b"calls", 0, b"errors", 0]
    assert client.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c") == b"OK"
    assert client.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]


def test_clients_reconnect_after_the_backing_redis_restarts(stack: tuple[Backing, Runtime]) -> None:
    backing, runtime = stack
    client = runtime.client()
    client.execute_command("AI.TENSORSET", "kept", "INT8", 1, "VALUES", 9)
    client.set("plain", "yes")
    backing.save()
    backing.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=runtime.port, protocol=2, retry=None).get("plain")
    backing.start()
    fresh = runtime.client()
    assert fresh.get("plain") == b"yes"
    assert fresh.execute_command("AI.TENSORGET", "kept", "VALUES") == [9]
    assert "gearcam runtime stopped" not in runtime.output()


def test_runs_after_a_restart_load_the_stored_model_once(stack: tuple[Backing, Runtime]) -> None:
    # Every client's first run after a restart finds the model unloaded: one session is loaded for them all.
    _, runtime = stack
    _stored_then_restarted(runtime)
    clients = [runtime.client() for _ in range(8)]
    for each in clients:
        each.ping()
    start = threading.Barrier(len(clients))

    def run(each: redis.Redis) -> bytes:
        start.wait()
        return each.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")

    with ThreadPoolExecutor(len(clients)) as pool:
        assert list(pool.map(run, clients)) == [b"OK"] * len(clients)
    assert clients[0].execute_command("AI.INFO", "m")[15] == len(clients)  # calls
    for each in clients:
        each.close()
    assert runtime.output().count("loaded model b'm' from the backing Redis") == 1
