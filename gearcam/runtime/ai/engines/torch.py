"""The TORCH backend: TorchScript models (torch.jit.save) and TorchScript scripts.

Scripts may call `redis.execute(...)`, `redis.asList(...)` and `redisAI.model_execute(...)`:
RedisAI 1.2 registers them as TorchScript operators in C++; here they are registered with
`torch.library` and Python kernels, on first use, and scripts are compiled with a resolver that
names `torch`, `redis` and `redisAI` only, as RedisAI's does. A kernel reaches Redis through the
ScriptHost of the run it is part of (set per thread for the run; commands/ai_script_host.py).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from gearcam.runtime import replies
from gearcam.runtime.ai.engines import EngineOptions, parse_device, run_threads
from gearcam.runtime.ai.engines.file_access import refusal, torch_file_ops
from gearcam.runtime.ai.errors import AIError

VERSION = torch.__version__


def _device(device: str) -> torch.device:
    kind, index = parse_device(device)
    if kind == "GPU":
        if not torch.cuda.is_available():
            raise AIError(replies.gpu_missing("Torch"))
        return torch.device("cuda", index)
    return torch.device("cpu")


def _to_numpy(value: Any) -> list[np.ndarray[Any, Any]]:
    if value is None:  # a script that returns nothing (it only wrote with redis.execute)
        return []
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    if isinstance(value, list | tuple):
        return [a for item in value for a in _to_numpy(item)]
    raise AIError(f"ERR unsupported TorchScript output of type {type(value).__name__}")


# Torch's own choice (cores, or OMP_NUM_THREADS), read before anything here changes it.
_DEFAULT_THREADS = torch.get_num_threads()


def threads_per_run(options: EngineOptions) -> int:
    return run_threads(options, _DEFAULT_THREADS)


def _configure(options: EngineOptions) -> None:
    """Torch's threads for every run, from whichever thread: the setting is process-wide.

    Torch parallelises with OpenMP, which gives every thread that runs a model a team of its
    own. Once the teams together outnumber the cores, GNU OpenMP stops letting idle team threads
    spin and each of a model's many small parallel steps waits on a wake-up: measured here (2
    cores, EfficientNet-Lite0, one client), THREADS_PER_QUEUE 2 made every run 2.2x slower (30 ms
    against 14) though only one ran at a time. Hence `run_threads`' share per queue thread.
    """
    threads = threads_per_run(options)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _tensor_count(returned: Any) -> int:
    """How many output tensors one return value of `forward` stands for, counted as RedisAI's torch backend does.

    A Tensor is one, a Tuple is its Tensor elements, a List its fixed length (RedisAI refuses a
    List of unknown length at load; the runtime counts it as one, as it did before).
    """
    kind = returned.type.kind()
    if kind == "TensorType":
        return 1
    if kind == "TupleType":
        return sum(1 for t in returned.type.containedTypes() if t.kind() == "TensorType")
    if kind == "ListType":
        return int(returned.N) if returned.N is not None else 1
    return 0


class TorchModel:
    def __init__(self, module: Any, device: torch.device) -> None:
        self._module = module
        self._device = device
        args = list(module.forward.schema.arguments)[1:] if hasattr(module, "forward") else []
        self.input_names = [a.name for a in args]
        returns = module.forward.schema.returns if hasattr(module, "forward") else []
        # RedisAI names every TorchScript output '' (MODELGET META shows one '' per output tensor).
        self.output_names = [""] * sum(_tensor_count(r) for r in returns)

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        try:
            with torch.no_grad():
                result = self._module(*[torch.from_numpy(np.array(a)).to(self._device) for a in inputs])
        except Exception as exc:
            raise AIError(_script_error(exc)) from exc
        outputs = _to_numpy(result)
        if len(outputs) != len(self.output_names):
            raise AIError(replies.TORCH_OUTPUT_COUNT)
        return outputs


def load(device: str, blob: bytes, inputs: list[str], outputs: list[str], options: EngineOptions) -> TorchModel:
    where = _device(device)
    _configure(options)
    try:
        jit_load = getattr(torch.jit, "load")  # untyped in torch's stubs  # noqa: B009
        module = jit_load(io.BytesIO(blob), map_location=where)
    except Exception as exc:
        raise AIError(" ".join(str(exc).split()[:40])) from exc
    # A run calls the module's methods; their inlined graphs hold the submodules' and functions' code.
    # Read through the C++ module: an exported __getstate__ is a plain Python method on the wrapper.
    methods = module._c
    touching = torch_file_ops(methods._get_method(name).inlined_graph for name in methods._method_names())
    if touching:
        raise AIError(refusal(touching))
    module.eval()
    return TorchModel(module, where)


class ScriptHost(Protocol):
    """The calling client's Redis, for a script's `redis.execute` and `redisAI.model_execute` (blocking calls)."""

    def execute(self, args: Sequence[str]) -> Any: ...

    def model_execute(self, key: str, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]: ...


_run = threading.local()  # .host: the ScriptHost of the script running on this thread
_libraries: list[Any] = []  # the torch.library registrations, kept alive for the process
_libraries_lock = threading.Lock()


def _host() -> ScriptHost:
    host: ScriptHost | None = getattr(_run, "host", None)
    if host is None:
        raise RuntimeError(
            "redis.execute and redisAI.model_execute are served in AI.SCRIPTEXECUTE, AI.SCRIPTRUN and DAG runs; "
            "the gearcam runtime does not serve them to scripts run from Gears"
        )
    return host


def _value(reply: Any) -> Any:
    """A Redis reply as RedisAI hands it to TorchScript: str, int, a list of those, or None."""
    if isinstance(reply, bytes | bytearray | memoryview):
        return bytes(reply).decode("utf-8", "replace")
    if isinstance(reply, bool):
        return int(reply)
    if isinstance(reply, str | int | float) or reply is None:
        return reply
    if isinstance(reply, dict):
        return [_value(v) for pair in reply.items() for v in pair]
    if isinstance(reply, list | tuple | set):
        return [_value(v) for v in reply]
    return str(reply)


def _redis_execute(fn_name: str, args: list[str]) -> Any:
    try:
        reply = _host().execute([fn_name, *args])
    except AIError as exc:
        raise RuntimeError(f"Redis command returned an error: {exc.message}") from None
    return _value(reply)


def _as_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise RuntimeError(f"redis.asList expects a list reply, got {type(value).__name__}")
    return value


def _model_execute(model_key: str, inputs: list[torch.Tensor], num_outputs: int) -> list[torch.Tensor]:
    arrays = [t.detach().cpu().numpy() for t in inputs]
    try:
        outputs = _host().model_execute(model_key, arrays)
    except AIError as exc:
        raise RuntimeError(exc.message) from None
    return [torch.from_numpy(np.array(o)) for o in outputs]


def _register_ops() -> None:
    """RedisAI's operators, once per process; CONSERVATIVE so the compiler keeps calls whose result is unused."""
    with _libraries_lock:
        if _libraries:
            return
        library: Any = torch.library.Library  # untyped in torch's stubs
        redis_ops = library("redis", "DEF")
        redis_ops.define("execute(str fn_name, str[] args) -> Any", alias_analysis="CONSERVATIVE")
        redis_ops.impl("execute", _redis_execute, "CompositeExplicitAutograd")
        redis_ops.define("asList(Any v) -> Any[]", alias_analysis="CONSERVATIVE")
        redis_ops.impl("asList", _as_list, "CompositeExplicitAutograd")
        ai_ops = library("redisAI", "DEF")
        ai_ops.define(
            "model_execute(str model_key, Tensor[] inputs, int num_outputs) -> Tensor[]", alias_analysis="CONSERVATIVE"
        )
        ai_ops.impl("model_execute", _model_execute, "CompositeExplicitAutograd")
        _libraries.extend([redis_ops, ai_ops])


def _resolve(name: str) -> Any:
    """The names a script may use besides TorchScript's builtins, matched without case as RedisAI does."""
    lowered = name.lower()
    if lowered == "torch":
        return torch
    if lowered == "redis":
        return torch.ops.redis
    if lowered == "redisai":
        return torch.ops.redisAI
    return None


class TorchScript:
    """A TorchScript source compiled into functions called as (tensors, keys, args), or RedisAI's older way."""

    def __init__(self, source: str, entry_points: Sequence[str], device: str, options: EngineOptions) -> None:
        self._device = _device(device)
        _configure(options)
        _register_ops()
        try:
            self._unit = torch.jit.CompilationUnit()
            self._unit.define(source, _resolve)
        except Exception as exc:
            raise AIError(str(exc)) from exc  # its lines joined by the reply, as RedisAI's RAI_Chomp does
        touching = torch_file_ops(function.inlined_graph for function in self._unit.get_functions())
        if touching:
            raise AIError(refusal(touching))
        for name in entry_points:
            _check_entry_point(self._unit, name)
        self.entry_points = list(entry_points)

    def run(
        self,
        function: str,
        inputs: Sequence[np.ndarray[Any, Any]],
        keys: list[str],
        args: list[str],
        host: ScriptHost | None = None,
    ) -> list[np.ndarray[Any, Any]]:
        if not hasattr(self._unit, function):
            raise AIError(replies.script_function_missing(function))
        tensors = [torch.from_numpy(np.array(a)).to(self._device) for a in inputs]
        fn = getattr(self._unit, function)
        _run.host = host
        try:
            with torch.no_grad():
                result = fn(*_arguments(fn, tensors, keys, args))
        except Exception as exc:
            raise AIError(_script_error(exc)) from exc
        finally:
            _run.host = None
        return _to_numpy(result)


_CONVENTION = ["List[Tensor]", "List[str]", "List[str]"]


def _script_error(exc: Exception) -> str:
    """TorchScript's error without the runtime's Python frames a kernel's error carries ("At: ...").

    Its line breaks stay: the reply turns each into a space (resp.encode), as RedisAI's RAI_Chomp does,
    so the text is RedisAI's, spaces and all."""
    return str(exc).split("\nAt:\n", 1)[0]


def _check_entry_point(unit: Any, name: str) -> None:
    """AI.SCRIPTSTORE's entry points take RedisAI 1.2's (tensors, keys, args); AI.SCRIPTSET's scripts name none."""
    if not hasattr(unit, name):
        raise AIError(replies.script_no_function(name))
    types = [str(a.type) for a in getattr(unit, name).schema.arguments]
    if len(types) != len(_CONVENTION):
        raise AIError(replies.script_entry_point_arity(name, len(types)))
    if types != _CONVENTION:
        raise AIError(replies.script_entry_point_types(name))


def _arguments(fn: Any, tensors: list[Any], keys: list[str], args: list[str]) -> list[Any]:
    """RedisAI 1.2's two calling conventions, told apart by the function's signature.

    `fn(tensors, keys, args)` since 1.2 (AI.SCRIPTEXECUTE); before that (AI.SCRIPTSET scripts,
    and values restored from RedisAI's older encodings, run with AI.SCRIPTRUN) the inputs are
    the function's arguments in order, and one `List[Tensor]` argument takes the variadic rest.
    """
    types = [str(a.type) for a in fn.schema.arguments]
    if types == _CONVENTION:
        return [tensors, keys, args]
    if "List[Tensor]" not in types:
        return list(tensors)
    at = types.index("List[Tensor]")
    after = len(types) - at - 1
    end = len(tensors) - after
    return [*tensors[:at], tensors[at:end], *tensors[end:]]
