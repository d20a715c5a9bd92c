"""`import redisAI` inside Gears scripts: RedisGears 1.2's RedisAI functions, in the Gears worker.

Tensors are built and read in the worker; every call that needs the AI service (a
model or script run, a tensor read or written at a key) crosses to the runtime over
the Gears channel (`AICalls` there), so Gears traffic shares the device run queues,
and auto-batching, with AI.* clients. Blocking calls wait on the calling step's
thread; `modelRunnerRunAsync` returns an awaitable for `async def` steps, which frees
the worker's loop while the model runs.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from gearcam.runtime import replies
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.ai.tensor import DTYPES, Tensor
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.gears.engine import current_execution
from gearcam.runtime.resp import ErrorReply

__all__ = ["Calls", "DAGRunner", "PyTensor", "build_module", "from_wire", "wire_tensor"]


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
    """What the *Async functions return: awaitable from any event loop (the worker's loop in practice)."""

    def __init__(self, future: Future[Any], convert: Callable[[Any], Any]) -> None:
        self._future = future
        self._convert = convert

    def __await__(self) -> Generator[Any, None, Any]:
        return self._wait().__await__()

    async def _wait(self) -> Any:
        try:
            value = await asyncio.wrap_future(self._future)
        except ErrorReply as exc:
            raise GearsError(exc.message) from None
        return self._convert(value)


class Calls(Protocol):
    """The worker's way to the runtime: `submit` returns a future of the runtime's reply."""

    def submit(self, op: str, payload: Any) -> Future[Any]: ...


def wire_tensor(tensor: Tensor) -> tuple[str, list[int], bytes]:
    return tensor.dtype, list(tensor.shape), bytes(tensor.blob())


def from_wire(value: Any) -> Tensor:
    dtype, shape, blob = value
    return Tensor.from_blob(dtype, shape, blob)


def _result(future: Future[Any]) -> Any:
    try:
        return future.result()
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
    """bytes, a bytearray or any buffer (a numpy array, even a strided one), copied as RedisGears copies it."""
    name = _dtype(dtype)
    if isinstance(blob, bytes):
        data = blob
    else:
        try:
            data = memoryview(blob).tobytes(order="A")  # RedisGears: PyBuffer_ToContiguous(..., 'A')
        except TypeError:
            raise GearsError("blob argument must be bytes, byte array or a buffer") from None
    try:
        return PyTensor(Tensor.from_blob(name, [int(d) for d in shape], data))
    except AIError as exc:
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


def _tensors(values: list[Any]) -> list[PyTensor]:
    return [PyTensor(from_wire(v)) for v in values]


class _Api:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def _model(self, runner: ModelRunner, asynchronous: bool) -> Future[Any]:
        """`asynchronous`: a *Async call, which RedisAI counts in AI.INFO and runs on its own worker threads."""
        runner = _model_runner(runner)
        inputs = [(name, *wire_tensor(t)) for name, t in runner.inputs]
        return self.calls.submit("ai.model_run", (runner.key, inputs, list(runner.outputs), asynchronous))

    def _script(self, runner: ScriptRunner, asynchronous: bool) -> Future[Any]:
        runner = _script_runner(runner)
        inputs = [wire_tensor(t) for t in runner.inputs]
        return self.calls.submit("ai.script_run", (runner.key, runner.function, inputs, asynchronous))

    def set_tensor_in_key(self, key: str, t: PyTensor) -> int:
        _result(self.calls.submit("ai.tensor_set", [(str(key), *wire_tensor(_tensor(t)))]))
        return 1

    def mset_tensors_in_keyspace(self, tensors: dict[str, PyTensor]) -> int:
        items = [(str(k), *wire_tensor(_tensor(v))) for k, v in tensors.items()]
        _result(self.calls.submit("ai.tensor_set", items))
        return 1

    def get_tensor_from_key(self, key: str) -> PyTensor:
        return _tensors(_result(self.calls.submit("ai.tensor_get", [str(key)])))[0]

    def mget_tensors_from_keyspace(self, keys: list[str]) -> list[PyTensor]:
        return _tensors(_result(self.calls.submit("ai.tensor_get", [str(k) for k in keys])))

    def submit_command(self, args: list[Any]) -> Future[Any]:
        """An AI.* command served by the runtime (as execute('AI.…')), its reply as plain data."""
        wire = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        return self.calls.submit("gears.command", (current_execution(), wire))

    def command(self, args: list[Any]) -> Any:
        """The same, waited for; an error reply raised as GearsError in RedisAI's words."""
        return _result(self.submit_command(args))

    def model_runner_run(self, runner: ModelRunner) -> list[PyTensor]:
        return _tensors(_result(self._model(runner, asynchronous=False)))

    def model_runner_run_async(self, runner: ModelRunner) -> Awaitable:
        return Awaitable(self._model(runner, asynchronous=True), _tensors)

    def script_runner_run(self, runner: ScriptRunner) -> list[PyTensor]:
        return _tensors(_result(self._script(runner, asynchronous=False)))

    def script_runner_run_async(self, runner: ScriptRunner) -> Awaitable:
        return Awaitable(self._script(runner, asynchronous=True), _tensors)


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


_SEPARATOR = "|>"


class DAGRunner:
    """RedisGears' PyDAGRunner: ops collected in the worker, run in the runtime as one AI.DAGEXECUTE.

    `Input` and `TensorSet` put a tensor into the DAG's context, `ModelRun` and `ScriptRun` (keyword
    arguments, the model or script looked up as they are added) and `OpsFromString` (AI.DAGEXECUTE's
    own syntax) add runs, `TensorGet` names a result; `Run()` is awaited for the results, in order.
    Each method returns the runner, for chaining; a runner runs once.
    """

    def __init__(self, api: _Api) -> None:
        self._api = api
        self._ops: list[list[Any]] = []
        self._ran = False

    def _valid(self) -> None:
        if self._ran:
            raise GearsError("PyDAGRunner is invalid")

    def _load(self, args: tuple[Any, ...]) -> DAGRunner:
        self._valid()
        if len(args) != 2:
            raise GearsError("Wrong number of args to DAG load input")
        name, tensor = args
        if not isinstance(name, str):
            raise GearsError("Tensor name argument must be a string")
        if not isinstance(tensor, PyTensor):
            raise GearsError("Given argument is not of type PyTensorType")
        t = tensor.tensor
        self._ops.append(["AI.TENSORSET", name, t.dtype, *t.shape, "BLOB", bytes(t.blob())])
        return self

    def Input(self, *args: Any) -> DAGRunner:  # noqa: N802 - RedisGears' names
        return self._load(args)

    def TensorSet(self, *args: Any) -> DAGRunner:  # noqa: N802
        return self._load(args)

    def _text_arg(self, args: tuple[Any, ...], wrong_count: str, not_text: str) -> str:
        """The one string argument of TensorGet and OpsFromString, refused in RedisGears' words."""
        self._valid()
        if len(args) != 1:
            raise GearsError(wrong_count)
        if not isinstance(args[0], str):
            raise GearsError(not_text)
        return args[0]

    def TensorGet(self, *args: Any) -> DAGRunner:  # noqa: N802
        name = self._text_arg(args, "Wrong number of args to TensorSet op", "Tensor name argument must be a string")
        self._ops.append(["AI.TENSORGET", name, "META", "BLOB"])
        return self

    def ModelRun(self, **kwargs: Any) -> DAGRunner:  # noqa: N802
        self._valid()
        name = _named(kwargs, "name", "Model key name was not given", "Model name argument must be a string")
        # RedisAI looks the model up, and checks the op against it, as the op is added.
        meta = self._api.command(["AI.MODELGET", name, "META"])
        declared = dict(zip(meta[::2], meta[1::2], strict=True))
        inputs = _names(kwargs.get("inputs"), "Must specify model inputs", "Model inputs must be iterable", "Input")
        outputs = _names(kwargs.get("outputs"), "Must specify model outputs", "Model outputs must be iterable",
                         "Output")  # fmt: skip
        if declared.get(b"inputs") and len(inputs) != len(declared[b"inputs"]):
            raise GearsError(replies.INPUTS_MISMATCH)
        if declared.get(b"outputs") and len(outputs) != len(declared[b"outputs"]):
            raise GearsError(replies.OUTPUTS_MISMATCH)
        self._ops.append(["AI.MODELEXECUTE", name, "INPUTS", len(inputs), *inputs, "OUTPUTS", len(outputs), *outputs])
        return self

    def ScriptRun(self, **kwargs: Any) -> DAGRunner:  # noqa: N802
        self._valid()
        name = _named(kwargs, "name", "Script key name was not given", "Script name argument must be a string")
        func = _named(kwargs, "func", "Function name was not given", "Function name argument must be a string")
        self._api.command(["AI.SCRIPTGET", name, "META"])
        op: list[Any] = ["AI.SCRIPTEXECUTE", name, func]
        if kwargs.get("inputs") is not None:
            inputs = _names(kwargs["inputs"], "", "Script inputs must be iterable", "Input")
            op += ["INPUTS", len(inputs), *inputs]
        if kwargs.get("outputs") is not None:
            outputs = _names(kwargs["outputs"], "", "Script outputs must be iterable", "Output")
            op += ["OUTPUTS", len(outputs), *outputs]
        self._ops.append(op)
        return self

    def OpsFromString(self, *args: Any) -> DAGRunner:  # noqa: N802
        words = self._text_arg(args, "Wrong number of args", "ops argument must be a string").split()
        if not words or words[0] != _SEPARATOR:
            raise GearsError(f"Invalid DAG command. Unexpected argument:  {words[0] if words else ''}")
        op: list[Any] = []
        for word in [*words[1:], _SEPARATOR]:
            if word != _SEPARATOR:
                op.append(word)
                continue
            if op and op[0].upper() == "AI.TENSORGET":
                op = op[:2] + ["META", "BLOB"]  # the runner hands back tensors, whatever format was asked
            if op:
                self._ops.append(op)
            op = []
        return self

    def Run(self, *args: Any) -> Awaitable:  # noqa: N802
        self._valid()
        self._ran = True
        command: list[Any] = ["AI.DAGEXECUTE", "ROUTING", "gears"]
        for op in self._ops:
            command += [_SEPARATOR, *op]
        return Awaitable(self._api.submit_command(command), _dag_results)


def _named(kwargs: dict[str, Any], key: str, missing: str, not_text: str) -> str:
    value = kwargs.get(key)
    if value is None:
        raise GearsError(missing)
    if not isinstance(value, str):
        raise GearsError(not_text)
    return value


def _names(value: Any, missing: str, not_iterable: str, kind: str) -> list[str]:
    if value is None:
        raise GearsError(missing)
    try:
        names = list(value)
    except TypeError:
        raise GearsError(not_iterable) from None
    if not all(isinstance(n, str) for n in names):
        raise GearsError(f"{kind} name must be a string")
    return names


def _dag_results(reply: Any) -> list[PyTensor]:
    """The DAG's TensorGet results as tensors; the first failed op's error raised, in RedisAI's words."""
    out: list[PyTensor] = []
    for item in reply:
        if isinstance(item, str):  # an op's error reply, as text (resp.plain_reply)
            raise GearsError(item)
        if isinstance(item, list):
            fields = dict(zip(item[::2], item[1::2], strict=True))
            out.append(PyTensor(Tensor.from_blob(fields[b"dtype"].decode(), list(fields[b"shape"]), fields[b"blob"])))
    return out


def build_module(calls: Calls) -> types.ModuleType:
    api = _Api(calls)
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
        "createDAGRunner": lambda *_: DAGRunner(api),
    }
    for name, fn in functions.items():
        setattr(module, name, fn)
    module.PyTensor = PyTensor  # type: ignore[attr-defined]
    return module
