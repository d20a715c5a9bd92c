"""`import redisAI` in Gears scripts: tensors, blocking and async model runs through part 1's AI service."""

from __future__ import annotations

import numpy as np
import redis

from tests.runtime.conftest import raw_call
from tests.runtime.gears_helpers import pyexecute, rg, wait_for
from tests.runtime.models import FIXTURES, linear_model

__all__ = ["rg"]


RUN_ASYNC = """
import redisAI

async def classify(r):
    values = [float(v) for v in r['value']['x'].split(',')]
    t = redisAI.createTensorFromValues('FLOAT', [1, 4], values)
    runner = redisAI.createModelRunner('m')
    redisAI.modelRunnerAddInput(runner, {first}, {second})
    redisAI.modelRunnerAddOutput(runner, 'y')
    out = await redisAI.modelRunnerRunAsync(runner)
    probs = redisAI.tensorToFlatList(out[0])
    execute('HSET', 'probs', r['key'] + '/' + r['id'], ','.join('%.6f' % p for p in probs))

GB('StreamReader').foreach(classify).register(prefix='feat:*')
"""


def _expected(weights: np.ndarray, bias: np.ndarray, x: list[float]) -> list[float]:
    logits = np.array(x, dtype=np.float32) @ weights + bias
    e = np.exp(logits - logits.max())
    return list(e / e.sum())


def test_an_async_step_runs_an_onnx_model_through_redisai(rg: redis.Redis) -> None:
    blob, weights, bias = linear_model()
    rg.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BATCHSIZE", 4, "BLOB", blob)
    pyexecute(rg, RUN_ASYNC.format(first="'x'", second="t"), "ID", "name-first")
    inputs = {
        b"feat:0/" + rg.xadd("feat:0", {"x": "1,2,3,4"}): [1, 2, 3, 4],
        b"feat:1/" + rg.xadd("feat:1", {"x": "0,-1,0.5,2"}): [0, -1, 0.5, 2],
    }
    wait_for(lambda: rg.hlen("probs") == 2, what="two model runs")
    for field, x in inputs.items():
        got = [float(p) for p in rg.hget("probs", field).split(b",")]
        assert np.allclose(got, _expected(weights, bias, x), atol=1e-5)
    info = dict(zip(*[iter(rg.execute_command("AI.INFO", "m"))] * 2, strict=True))
    assert info[b"calls"] == 2


def test_model_runner_add_input_accepts_the_documented_argument_order(rg: redis.Redis) -> None:
    blob, weights, bias = linear_model()
    rg.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", blob)
    pyexecute(rg, RUN_ASYNC.format(first="t", second="'x'"), "ID", "tensor-first")
    field = b"feat:0/" + rg.xadd("feat:0", {"x": "1,1,1,1"})
    wait_for(lambda: rg.hget("probs", field), what="one model run")
    got = [float(p) for p in rg.hget("probs", field).split(b",")]
    assert np.allclose(got, _expected(weights, bias, [1, 1, 1, 1]), atol=1e-5)


def test_blocking_runner_and_tensor_keys(rg: redis.Redis) -> None:
    # A TFLite model: RedisAI refuses the blocking runner for ONNX models (test_rg_redisai_llapi.py).
    rg.execute_command("AI.MODELSTORE", "m", "TFLITE", "CPU", "BLOB", (FIXTURES / "add.tflite").read_bytes())
    rg.execute_command("AI.TENSORSET", "in", "FLOAT", 2, 2, "VALUES", *range(4))
    code = """
import redisAI
def run(_):
    t = redisAI.getTensorFromKey('in')
    runner = redisAI.createModelRunner('m')
    redisAI.modelRunnerAddInput(runner, 'a', t)
    redisAI.modelRunnerAddInput(runner, 'b', t)
    redisAI.modelRunnerAddOutput(runner, 'c')
    (y,) = redisAI.modelRunnerRun(runner)
    redisAI.setTensorInKey('out', y)
    blob = redisAI.tensorGetDataAsBlob(redisAI.createTensorFromBlob('INT8', [2], bytearray(b'\\x01\\x02')))
    return [list(redisAI.tensorGetDims(y)), type(blob).__name__, list(blob)]
GB('ShardsIDReader').map(run).run()
"""
    assert pyexecute(rg, code) == [[b"[[2, 2], 'bytearray', [1, 2]]"], []]
    meta = rg.execute_command("AI.TENSORGET", "out", "META", "BLOB")
    y = np.frombuffer(meta[5], dtype=np.float32).reshape(2, 2)
    np.testing.assert_array_equal(y, 2 * np.arange(4, dtype=np.float32).reshape(2, 2))


def test_a_tensor_from_a_buffer_is_a_copy_taken_in_any_layout(rg: redis.Redis) -> None:
    code = """
import numpy as np
import redisAI
def run(_):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    views = [a, a.T, a[:, ::2], memoryview(a)]
    tensors = [redisAI.createTensorFromBlob('FLOAT', list(v.shape if hasattr(v, 'shape') else (2, 3)), v)
               for v in views]
    a[:] = -1  # after the tensors were made: they keep what they copied
    blobs = [list(np.frombuffer(redisAI.tensorGetDataAsBlob(t), dtype=np.float32)) for t in tensors]
    try:
        redisAI.createTensorFromBlob('FLOAT', [2], 12)
    except Exception as e:
        blobs.append(str(e))
    return blobs
GB('ShardsIDReader').map(run).run()
"""
    (result,), errors = pyexecute(rg, code)
    assert errors == []
    # C order, Fortran order ('A', as RedisGears' PyBuffer_ToContiguous), a strided view, a memoryview
    assert result == (
        b"[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 2.0, 3.0, 5.0], "
        b"[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 'blob argument must be bytes, byte array or a buffer']"
    )


def test_model_errors_reach_the_step_as_gears_errors(rg: redis.Redis) -> None:
    code = """
import redisAI
def run(_):
    runner = redisAI.createModelRunner('no-such-model')
    redisAI.modelRunnerAddInput(runner, 'x', redisAI.createTensorFromValues('FLOAT', [1], [1.0]))
    return redisAI.modelRunnerRun(runner)
GB('ShardsIDReader').map(run).run()
"""
    results, errors = pyexecute(rg, code)
    assert results == [] and errors == [b"ERR model key is empty"]


def test_an_awaiting_step_does_not_block_other_registrations(rg: redis.Redis) -> None:
    waiting = """
import asyncio
async def wait_for_release(r):
    while execute('GET', 'release') is None:
        await asyncio.sleep(0.01)
    execute('SET', 'released', r['value']['v'])
GB('StreamReader').foreach(wait_for_release).register(prefix='slow:*')
"""
    pyexecute(rg, waiting, "ID", "slow")
    pyexecute(rg, "GB('CommandReader').register(trigger='ping')", "ID", "fast")
    rg.xadd("slow:0", {"v": "1"})
    wait_for(lambda: any(e[3] == b"running" for e in rg.execute_command("RG.DUMPEXECUTIONS")), what="a waiting step")
    for _ in range(20):
        assert rg.execute_command("RG.TRIGGER", "ping") == [b"['ping']"]
    assert rg.get("released") is None
    rg.set("release", "1")
    wait_for(lambda: rg.get("released") == b"1", what="the waiting step to finish")


def _engine_runs(client: redis.Redis) -> int:
    reply = raw_call(client, "INFO", "MODULES")
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    for line in text.splitlines():
        if line.startswith("ai_queue_CPU_engine_runs:"):
            return int(line.split(":")[1])
    return 0


def test_gears_model_runs_from_several_streams_are_auto_batched(rg: redis.Redis) -> None:
    blob, weights, bias = linear_model()
    rg.execute_command(
        "AI.MODELSTORE", "m", "ONNX", "CPU", "BATCHSIZE", 4, "MINBATCHSIZE", 4, "MINBATCHTIMEOUT", 20000, "BLOB", blob
    )
    pyexecute(rg, RUN_ASYNC.format(first="'x'", second="t"), "ID", "batched")
    before = _engine_runs(rg)
    rows = {f"feat:{i}": [float(i), 1.0, -1.0, 0.5] for i in range(4)}
    fields = [k.encode() + b"/" + rg.xadd(k, {"x": ",".join(map(str, x))}) for k, x in rows.items()]
    wait_for(lambda: rg.hlen("probs") == 4, what="four model runs")
    assert _engine_runs(rg) - before == 1  # MINBATCHSIZE 4: the four frames ran as one batch
    for field, x in zip(fields, rows.values(), strict=True):
        got = [float(p) for p in rg.hget("probs", field).split(b",")]
        assert np.allclose(got, _expected(weights, bias, x), atol=1e-5)
