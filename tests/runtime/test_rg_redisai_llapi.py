"""RedisAI's tests_gears_llapi.py on the runtime: AI.INFO counts, run-time errors and their texts from Gears."""

from __future__ import annotations

import importlib.util

import pytest
import redis

from tests.runtime.gears_helpers import pyexecute, rg
from tests.runtime.models import FIXTURES, add_model

__all__ = ["rg"]


MODEL_RUNS = """
import redisAI

def inputs(runner):
    tensors = redisAI.mgetTensorsFromKeyspace(['a', 'b'])
    redisAI.modelRunnerAddInput(runner, 'a', tensors[0])
    redisAI.modelRunnerAddInput(runner, 'b', tensors[1])
    redisAI.modelRunnerAddOutput(runner, 'c')

def old_api(record):
    runner = redisAI.createModelRunner('m')
    inputs(runner)
    redisAI.setTensorInKey('c', redisAI.modelRunnerRun(runner)[0])
    return 'old_api_OK'

async def run_async(record):
    runner = redisAI.createModelRunner('m')
    inputs(runner)
    res = await redisAI.modelRunnerRunAsync(runner)
    redisAI.setTensorInKey('c_1', res[0])
    return 'async_OK'

async def run_error(record):
    try:
        await redisAI.modelRunnerRunAsync(redisAI.createModelRunner('m'))
        return 'Error - Exception was not raised'
    except Exception as e:
        return str(e)

GB('CommandReader').map(old_api).register(trigger='old_api')
GB('CommandReader').map(run_async).register(trigger='run_async')
GB('CommandReader').map(run_error).register(trigger='run_error')
"""

SCRIPT_RUNS = """
import redisAI

def runner(function):
    tensors = redisAI.mgetTensorsFromKeyspace(['a', 'b'])
    script_runner = redisAI.createScriptRunner('myscript', function)
    redisAI.scriptRunnerAddInput(script_runner, tensors[0])
    redisAI.scriptRunnerAddInput(script_runner, tensors[1])
    redisAI.scriptRunnerAddOutput(script_runner)
    return script_runner

def old_api(record):
    redisAI.setTensorInKey('c', redisAI.scriptRunnerRun(runner('bar'))[0])
    return 'old_api_OK'

async def run_async(record):
    res = await redisAI.scriptRunnerRunAsync(runner('bar'))
    redisAI.setTensorInKey('c_1', res[0])
    return 'async_OK'

async def run_error(record):
    try:
        await redisAI.scriptRunnerRunAsync(runner('bad_func'))
        return 'Error - Exception was not raised'
    except Exception as e:
        return str(e)

GB('CommandReader').map(old_api).register(trigger='script_old_api')
GB('CommandReader').map(run_async).register(trigger='script_run_async')
GB('CommandReader').map(run_error).register(trigger='script_run_error')
"""

SCRIPT = "def bar(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0] + tensors[1]\n"


def _info(client: redis.Redis, key: str) -> dict[str, object]:
    flat = client.execute_command("AI.INFO", key)
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def _tensors(client: redis.Redis) -> None:
    client.execute_command("AI.TENSORSET", "a", "FLOAT", 2, 2, "VALUES", 2, 3, 2, 3)
    client.execute_command("AI.TENSORSET", "b", "FLOAT", 2, 2, "VALUES", 2, 3, 2, 3)


def test_only_async_model_runs_count_in_ai_info_and_errors_keep_the_engine_text(rg: redis.Redis) -> None:
    pyexecute(rg, MODEL_RUNS)
    rg.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    _tensors(rg)
    # RedisAI's ONNX backend runs only on its worker threads: the blocking runner is refused, uncounted.
    with pytest.raises(redis.ResponseError, match="^Cannot execute onnxruntime model synchronously, use async exec"):
        rg.execute_command("RG.TRIGGER", "old_api")
    assert rg.exists("c") == 0
    assert (_info(rg, "m")["calls"], _info(rg, "m")["errors"]) == (0, 0)
    assert rg.execute_command("RG.TRIGGER", "run_async") == [b"async_OK"]
    assert rg.execute_command("AI.TENSORGET", "c_1", "VALUES") == [b"4", b"6", b"4", b"6"]
    info = _info(rg, "m")
    assert (info["samples"], info["calls"], info["errors"]) == (2, 1, 0)
    assert rg.execute_command("RG.TRIGGER", "run_error") == [b"ERR Expected 2 inputs but got 0"]
    info = _info(rg, "m")
    assert (info["calls"], info["errors"]) == (2, 1)


def test_a_blocking_model_run_is_not_counted_in_ai_info(rg: redis.Redis) -> None:
    pyexecute(rg, MODEL_RUNS)
    rg.execute_command("AI.MODELSTORE", "m", "TFLITE", "CPU", "BLOB", (FIXTURES / "add.tflite").read_bytes())
    _tensors(rg)
    assert rg.execute_command("RG.TRIGGER", "old_api") == [b"old_api_OK"]
    assert rg.execute_command("AI.TENSORGET", "c", "VALUES") == [b"4", b"6", b"4", b"6"]
    assert _info(rg, "m")["calls"] == 0  # RedisAI: the blocking API does not save statistics
    assert rg.execute_command("RG.TRIGGER", "run_async") == [b"async_OK"]
    assert _info(rg, "m")["calls"] == 1


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed")
def test_a_tf_runner_without_outputs_answers_tensorflow_text(rg: redis.Redis) -> None:
    """RedisAI's test4_runtime_error on its graph.pb (a * b)."""
    pyexecute(rg, MODEL_RUNS)
    blob = (FIXTURES / "graph_mul.pb").read_bytes()
    rg.execute_command("AI.MODELSTORE", "m", "TF", "CPU", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "mul", "BLOB", blob)
    rg.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 2, 3)  # this graph takes vectors
    rg.execute_command("AI.TENSORSET", "b", "FLOAT", 2, "VALUES", 2, 3)
    assert rg.execute_command("RG.TRIGGER", "run_async") == [b"async_OK"]
    assert rg.execute_command("AI.TENSORGET", "c_1", "VALUES") == [b"4", b"9"]
    assert rg.execute_command("RG.TRIGGER", "run_error") == [b"Must specify at least one target to fetch or execute."]
    info = _info(rg, "m")
    assert (info["calls"], info["errors"]) == (2, 1)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
def test_script_runs_from_gears_count_and_fail_as_redisai(rg: redis.Redis) -> None:
    pyexecute(rg, SCRIPT_RUNS)
    rg.execute_command("AI.SCRIPTSTORE", "myscript", "CPU", "TAG", "version1", "ENTRY_POINTS", 1, "bar",
                       "SOURCE", SCRIPT)  # fmt: skip
    _tensors(rg)
    assert rg.execute_command("RG.TRIGGER", "script_old_api") == [b"old_api_OK"]
    assert _info(rg, "myscript")["calls"] == 0
    assert rg.execute_command("RG.TRIGGER", "script_run_async") == [b"async_OK"]
    assert rg.execute_command("AI.TENSORGET", "c_1", "VALUES") == [b"4", b"6", b"4", b"6"]
    duration = _info(rg, "myscript")["duration"]
    assert rg.execute_command("RG.TRIGGER", "script_run_error") == [b"Function does not exist: bad_func"]
    info = _info(rg, "myscript")
    assert (info["calls"], info["errors"], info["duration"]) == (2, 1, duration)
