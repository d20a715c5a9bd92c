"""`import redisAI` inside Gears scripts: RedisGears 1.2's RedisAI functions over part 1's AI service.

Every call goes to the runtime's AIService on the main event loop, so Gears traffic
shares the device run queues (and auto-batching) with AI.* clients. Blocking calls
(`modelRunnerRun`, `getTensorFromKey`, ...) wait on the calling Gears thread;
`modelRunnerRunAsync` returns an awaitable for `async def` steps, which frees the
Gears loop while the model runs.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable as AwaitableABC
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gearcam.runtime.ai.service import AIService
from gearcam.runtime.ai.tensor import DTYPES, Tensor
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.relay import BackendLink
from gearcam.runtime.resp import ErrorReply

__all__ = ["AIBridge", "PyTensor", "build_module"]


class PyTensor:
    """A tensor handed to Gears code (RedisGears' PyTensor)."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __repr__(self) -> str:
        return f"PyTensor(dtype={self.tensor.dtype}, shape={list(self.tensor.shape)})"


@dataclass
class ModelRunner:
    key: str
    inputs: list[tuple[str, Tensor]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class ScriptRunner:
    key: str
    function: str
    inputs: list[Tensor] = field(default_factory=list)
    outputs: int = 0


class Awaitable:
    """What the *Async functions return: awaitable from any event loop (the Gears loop in practice)."""

    def __init__(self, future: Future[Any]) -> None:
        self._future = future

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self._future).__await__()


@dataclass
class AIBridge:
    ai: AIService
    link: Callable[[], AwaitableABC[BackendLink]]  # the runtime's AI link, reopened after a backing restart
    loop: asyncio.AbstractEventLoop

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(_translated(coro), self.loop)

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.submit(coro).result()


async def _translated(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await coro
    except ErrorReply as exc:
        raise GearsError(exc.message) from None


def _tensor(value: Any) -> Tensor:
    if not isinstance(value, PyTensor):
        raise GearsError("Given argument is not of type PyTensor")
    return value.tensor


def _dtype(name: Any) -> str:
    if not isinstance(name, str) or name.upper() not in DTYPES:
        raise GearsError(f"invalid data type {name!r}; use one of {', '.join(DTYPES)}")
    return name.upper()


def create_tensor_from_values(dtype: str, shape: Any, values: Any) -> PyTensor:
    name = _dtype(dtype)
    try:
        array = np.array(list(values), dtype=DTYPES[name]).reshape(tuple(shape))
    except (TypeError, ValueError) as exc:
        raise GearsError(f"could not create tensor: {exc}") from None
    return PyTensor(Tensor(name, array))


def create_tensor_from_blob(dtype: str, shape: Any, blob: Any) -> PyTensor:
    name = _dtype(dtype)
    try:
        return PyTensor(Tensor.from_blob(name, [int(d) for d in shape], bytes(blob)))
    except ErrorReply as exc:
        raise GearsError(exc.message) from None


def tensor_to_flat_list(t: PyTensor) -> list[Any]:
    tensor = _tensor(t)
    if tensor.dtype == "STRING":
        return [bytes(x) for x in tensor.array.flat]
    return [x.item() for x in tensor.array.flat]


def tensor_get_data_as_blob(t: PyTensor) -> bytearray:
    return bytearray(_tensor(t).blob())


def tensor_get_dims(t: PyTensor) -> tuple[int, ...]:
    return _tensor(t).shape


def model_runner_add_input(runner: ModelRunner, first: Any, second: Any) -> int:
    """Both argument orders: (runner, name, tensor) as the demo, (runner, tensor, name) as docs/redisai.md."""
    name, tensor = (second, first) if isinstance(first, PyTensor) else (first, second)
    if not isinstance(name, str):
        raise GearsError("Input name must be a string")
    runner.inputs.append((name, _tensor(tensor)))
    return 1


def model_runner_add_output(runner: ModelRunner, name: str) -> int:
    if not isinstance(name, str):
        raise GearsError("Output name must be a string")
    runner.outputs.append(name)
    return 1


def _ordered(names: list[str], given: list[tuple[str, Tensor]]) -> list[Tensor]:
    by_name = dict(given)
    if set(by_name) == set(names) and len(given) == len(names):
        return [by_name[n] for n in names]
    return [t for _, t in given]


class _Api:
    def __init__(self, bridge: AIBridge) -> None:
        self.b = bridge

    async def _run_model(self, runner: ModelRunner) -> list[PyTensor]:
        ai, link = self.b.ai, await self.b.link()
        model = await ai.model(link, runner.key.encode())
        outputs = await ai.model_run(model, _ordered(list(model.meta.inputs), runner.inputs))
        if isinstance(outputs, str):
            raise GearsError("Model run timed out")
        names = list(model.meta.outputs)
        if runner.outputs and set(runner.outputs) <= set(names) and len(names) == len(outputs):
            outputs = [outputs[names.index(n)] for n in runner.outputs]
        return [PyTensor(t) for t in outputs]

    async def _run_script(self, runner: ScriptRunner) -> list[PyTensor]:
        ai, link = self.b.ai, await self.b.link()
        script = await ai.script(link, runner.key.encode())
        outputs = await ai.script_run(script, runner.function, runner.inputs, [], [])
        if isinstance(outputs, str):
            raise GearsError("Script run timed out")
        return [PyTensor(t) for t in outputs]

    async def _set(self, items: list[tuple[bytes, Tensor]]) -> None:
        await self.b.ai.tensor_set(await self.b.link(), items)

    async def _get(self, keys: list[bytes]) -> list[Tensor]:
        return await self.b.ai.tensor_get_many(await self.b.link(), keys)

    def set_tensor_in_key(self, key: str, t: PyTensor) -> int:
        self.b.call(self._set([(str(key).encode(), _tensor(t))]))
        return 1

    def mset_tensors_in_keyspace(self, tensors: dict[str, PyTensor]) -> int:
        self.b.call(self._set([(str(k).encode(), _tensor(v)) for k, v in tensors.items()]))
        return 1

    def get_tensor_from_key(self, key: str) -> PyTensor:
        return PyTensor(self.b.call(self._get([str(key).encode()]))[0])

    def mget_tensors_from_keyspace(self, keys: list[str]) -> list[PyTensor]:
        return [PyTensor(t) for t in self.b.call(self._get([str(k).encode() for k in keys]))]

    def model_runner_run(self, runner: ModelRunner) -> list[PyTensor]:
        result: list[PyTensor] = self.b.call(self._run_model(_model_runner(runner)))
        return result

    def model_runner_run_async(self, runner: ModelRunner) -> Awaitable:
        return Awaitable(self.b.submit(self._run_model(_model_runner(runner))))

    def script_runner_run(self, runner: ScriptRunner) -> list[PyTensor]:
        result: list[PyTensor] = self.b.call(self._run_script(_script_runner(runner)))
        return result

    def script_runner_run_async(self, runner: ScriptRunner) -> Awaitable:
        return Awaitable(self.b.submit(self._run_script(_script_runner(runner))))


def _model_runner(value: Any) -> ModelRunner:
    if not isinstance(value, ModelRunner):
        raise GearsError("Given argument is not of type PyGraphRunner")
    return value


def _script_runner(value: Any) -> ScriptRunner:
    if not isinstance(value, ScriptRunner):
        raise GearsError("Given argument is not of type PyScriptRunner")
    return value


def _create_model_runner(key: Any) -> ModelRunner:
    if not isinstance(key, str):
        raise GearsError("Model name argument must be a string")
    return ModelRunner(key)


def _create_script_runner(key: Any, function: Any) -> ScriptRunner:
    if not isinstance(key, str):
        raise GearsError("Script name argument must be a string")
    if not isinstance(function, str):
        raise GearsError("Function name argument must be a string")
    return ScriptRunner(key, function)


def _script_add_input(runner: ScriptRunner, tensor: PyTensor) -> int:
    _script_runner(runner).inputs.append(_tensor(tensor))
    return 1


def _script_add_input_list(runner: ScriptRunner, tensors: list[PyTensor]) -> int:
    _script_runner(runner).inputs.extend(_tensor(t) for t in tensors)
    return 1


def _script_add_output(runner: ScriptRunner) -> int:
    _script_runner(runner).outputs += 1
    return 1


def _no_dag() -> Any:
    raise GearsError(
        "createDAGRunner is not supported by the gearcam runtime yet; use createModelRunner/createScriptRunner "
        "(see docs/gears.md)"
    )


def build_module(bridge: AIBridge) -> types.ModuleType:
    api = _Api(bridge)
    module = types.ModuleType("redisAI")
    functions: dict[str, Callable[..., Any]] = {
        "createTensorFromValues": create_tensor_from_values,
        "createTensorFromBlob": create_tensor_from_blob,
        "setTensorInKey": api.set_tensor_in_key,
        "msetTensorsInKeyspace": api.mset_tensors_in_keyspace,
        "getTensorFromKey": api.get_tensor_from_key,
        "mgetTensorsFromKeyspace": api.mget_tensors_from_keyspace,
        "tensorToFlatList": tensor_to_flat_list,
        "tensorGetDataAsBlob": tensor_get_data_as_blob,
        "tensorGetDims": tensor_get_dims,
        "createModelRunner": _create_model_runner,
        "modelRunnerAddInput": model_runner_add_input,
        "modelRunnerAddOutput": model_runner_add_output,
        "modelRunnerRun": api.model_runner_run,
        "modelRunnerRunAsync": api.model_runner_run_async,
        "createScriptRunner": _create_script_runner,
        "scriptRunnerAddInput": _script_add_input,
        "scriptRunnerAddInputList": _script_add_input_list,
        "scriptRunnerAddOutput": _script_add_output,
        "scriptRunnerRun": api.script_runner_run,
        "scriptRunnerRunAsync": api.script_runner_run_async,
        "createDAGRunner": _no_dag,
    }
    for name, fn in functions.items():
        setattr(module, name, fn)
    module.PyTensor = PyTensor  # type: ignore[attr-defined]
    return module
