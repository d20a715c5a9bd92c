from __future__ import annotations

import numpy as np
import redis

from tests.runtime.models import add_model, linear_model


def test_an_onnx_model_runs_through_the_runtime(r: redis.Redis) -> None:
    assert r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model()) == b"OK"
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, 2, "VALUES", 1, 2, 3, 4)
    r.execute_command("AI.TENSORSET", "b", "FLOAT", 2, 2, "VALUES", 10, 20, 30, 40)
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"11", b"22", b"33", b"44"]
    info = r.execute_command("AI.INFO", "m")
    assert info[:10] == [b"key", b"m", b"type", b"MODEL", b"backend", b"ONNX", b"device", b"CPU", b"tag", b""]
    assert info[12:] == [b"samples", 2, b"calls", 1, b"errors", 0]


def test_a_pipeline_mixing_ai_and_plain_commands_answers_in_order(r: redis.Redis) -> None:
    blob, weights, bias = linear_model()
    r.execute_command("AI.MODELSTORE", "lin", "ONNX", "CPU", "BLOB", blob)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    pipe = r.pipeline(transaction=False)
    pipe.set("before", 1)
    pipe.execute_command("AI.TENSORSET", "x", "FLOAT", 2, 4, "BLOB", x.tobytes())
    pipe.incr("before")
    pipe.execute_command("AI.MODELEXECUTE", "lin", "INPUTS", 1, "x", "OUTPUTS", 1, "y")
    pipe.execute_command("AI.TENSORGET", "y", "BLOB")
    pipe.get("before")
    out = pipe.execute()
    assert out[0] is True and out[2] == 2 and out[5] == b"2"
    logits = x @ weights + bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(np.frombuffer(out[4], dtype=np.float32).reshape(2, 3), expected, rtol=1e-5)
