"""redisAI.createDAGRunner from Gears code: RedisGears 1.2's PyDAGRunner, run as one AI.DAGEXECUTE in the runtime."""

from __future__ import annotations

import importlib.util

import pytest
import redis

from tests.runtime.gears_helpers import pyexecute, rg
from tests.runtime.models import add_model

__all__ = ["rg"]

DAGS = """
import redisAI

def tensors():
    return redisAI.mgetTensorsFromKeyspace(['a', 'b'])

async def set_get(record):
    dag = redisAI.createDAGRunner()
    dag.TensorSet('x', tensors()[0])
    dag.TensorGet('x')
    res = await dag.Run()
    redisAI.setTensorInKey('set_get_res', res[0])
    return 'set_get_OK %d' % len(res)

async def model_run(record):
    a, b = tensors()
    dag = redisAI.createDAGRunner().Input('ta', a).Input('tb', b)
    dag.ModelRun(name='m', inputs=['ta', 'tb'], outputs=['tc'])
    dag.TensorGet('tc').TensorGet('ta')
    res = await dag.Run()
    redisAI.setTensorInKey('model_res', res[0])
    return 'model_OK %d %s' % (len(res), redisAI.tensorToFlatList(res[1]))

async def from_string(record):
    a, b = tensors()
    dag = redisAI.createDAGRunner().Input('ta', a).Input('tb', b)
    dag.OpsFromString('|> AI.MODELEXECUTE m INPUTS 2 ta tb OUTPUTS 1 tc |> AI.TENSORGET tc VALUES')
    res = await dag.Run()
    redisAI.setTensorInKey('string_res', res[0])
    return 'string_OK'

async def failing(record):
    a, b = tensors()
    dag = redisAI.createDAGRunner().Input('ta', a)
    try:
        dag.ModelRun(name='m', inputs=['ta'], outputs=['tc'])
        return 'no error'
    except Exception as e:
        added = str(e)
    dag.Input('tb', redisAI.createTensorFromValues('FLOAT', [3], [1, 2, 3]))
    dag.ModelRun(name='m', inputs=['ta', 'tb'], outputs=['tc']).TensorGet('tc')
    try:
        await dag.Run()
        return 'no error'
    except Exception as e:
        return 'added: %s | run: %s' % (added, e)

def misuse(record):
    dag = redisAI.createDAGRunner()
    out = []
    for call in (lambda: dag.ModelRun(name='missing', inputs=[], outputs=[]),
                 lambda: dag.ModelRun(inputs=[], outputs=[]),
                 lambda: dag.Input('only a name'),
                 lambda: dag.TensorGet(3)):
        try:
            call()
        except Exception as e:
            out.append(str(e))
    dag.Run()
    try:
        dag.TensorGet('x')
    except Exception as e:
        out.append(str(e))
    return ' | '.join(out)

GB('CommandReader').map(set_get).register(trigger='dag_set_get')
GB('CommandReader').map(model_run).register(trigger='dag_model')
GB('CommandReader').map(from_string).register(trigger='dag_string')
GB('CommandReader').map(failing).register(trigger='dag_failing')
GB('CommandReader').map(misuse).register(trigger='dag_misuse')
"""


@pytest.fixture
def dags(rg: redis.Redis) -> redis.Redis:
    pyexecute(rg, DAGS)
    rg.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    rg.execute_command("AI.TENSORSET", "a", "FLOAT", 2, 2, "VALUES", 2, 3, 2, 3)
    rg.execute_command("AI.TENSORSET", "b", "FLOAT", 2, 2, "VALUES", 1, 1, 1, 1)
    return rg


def test_a_dag_sets_and_gets_a_tensor(dags: redis.Redis) -> None:
    assert dags.execute_command("RG.TRIGGER", "dag_set_get") == [b"set_get_OK 1"]
    assert dags.execute_command("AI.TENSORGET", "set_get_res", "VALUES") == [b"2", b"3", b"2", b"3"]


def test_a_dag_runs_a_model_on_its_inputs_and_returns_every_tensor_get_in_order(dags: redis.Redis) -> None:
    assert dags.execute_command("RG.TRIGGER", "dag_model") == [b"model_OK 2 [2.0, 3.0, 2.0, 3.0]"]
    assert dags.execute_command("AI.TENSORGET", "model_res", "VALUES") == [b"3", b"4", b"3", b"4"]
    assert dags.exists("ta", "tb", "tc") == 0  # a DAG's tensors stay local


def test_ops_from_string_use_the_dag_command_syntax(dags: redis.Redis) -> None:
    assert dags.execute_command("RG.TRIGGER", "dag_string") == [b"string_OK"]
    assert dags.execute_command("AI.TENSORGET", "string_res", "VALUES") == [b"3", b"4", b"3", b"4"]


def test_an_op_that_does_not_fit_its_model_is_refused_when_added_and_an_engine_error_at_run(
    dags: redis.Redis,
) -> None:
    (reply,) = dags.execute_command("RG.TRIGGER", "dag_failing")
    added, run = reply.decode().split(" | ")
    assert added == "added: Number of keys given as INPUTS here does not match model definition"
    assert run.startswith("run: ") and len(run) > len("run: "), run  # ONNX Runtime's shape error, as RedisAI relays it


def test_misuse_gets_redisgears_words(dags: redis.Redis) -> None:
    (reply,) = dags.execute_command("RG.TRIGGER", "dag_misuse")
    missing, no_name, one_arg, not_text, used = reply.decode().split(" | ")
    assert missing == "ERR model key is empty"  # RedisAI's words for a model key that holds nothing
    assert no_name == "Model key name was not given"
    assert one_arg == "Wrong number of args to DAG load input"
    assert not_text == "Tensor name argument must be a string"
    assert used == "PyDAGRunner is invalid"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
def test_a_script_run_names_a_missing_function_at_run(dags: redis.Redis) -> None:
    script = "def bar(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0] + tensors[1]\n"
    dags.execute_command("AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", script)
    code = (
        "import redisAI\n"
        "async def run(record):\n"
        "    a, b = redisAI.mgetTensorsFromKeyspace(['a', 'b'])\n"
        "    dag = redisAI.createDAGRunner().Input('ta', a).Input('tb', b)\n"
        "    dag.ScriptRun(name='s', func=record[1], inputs=['ta', 'tb'], outputs=['tc']).TensorGet('tc')\n"
        "    try:\n"
        "        res = await dag.Run()\n"
        "    except Exception as e:\n"
        "        return e\n"
        "    return redisAI.tensorToFlatList(res[0])\n"
        "GB('CommandReader').map(run).register(trigger='dag_script')\n"
    )
    pyexecute(dags, code)
    assert dags.execute_command("RG.TRIGGER", "dag_script", "bar") == [b"[3.0, 4.0, 3.0, 4.0]"]
    assert dags.execute_command("RG.TRIGGER", "dag_script", "no_func")[0].startswith(b"Function does not exist:")
