"""The TORCH backend: TorchScript models (torch.jit.save) and TorchScript scripts."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gearcam.runtime import replies
from gearcam.runtime.ai.engines import EngineOptions, parse_device
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
    if isinstance(value, torch.Tensor):
        return [value.detach().cpu().numpy()]
    if isinstance(value, list | tuple):
        return [a for item in value for a in _to_numpy(item)]
    raise AIError(f"ERR unsupported TorchScript output of type {type(value).__name__}")


def _configure(options: EngineOptions) -> None:
    if options.intra_op_parallelism:
        torch.set_num_threads(options.intra_op_parallelism)


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
            raise AIError(" ".join(str(exc).split())) from exc
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
    module.eval()
    return TorchModel(module, where)


class TorchScript:
    """A TorchScript source compiled into functions called as (tensors, keys, args), or RedisAI's older way."""

    def __init__(self, source: str, entry_points: Sequence[str], device: str) -> None:
        self._device = _device(device)
        try:
            self._unit = torch.jit.CompilationUnit(source)
        except Exception as exc:
            raise AIError(" ".join(str(exc).split())) from exc
        for name in entry_points:
            _check_entry_point(self._unit, name)
        self.entry_points = list(entry_points)

    def run(
        self, function: str, inputs: Sequence[np.ndarray[Any, Any]], keys: list[str], args: list[str]
    ) -> list[np.ndarray[Any, Any]]:
        if not hasattr(self._unit, function):
            raise AIError(replies.script_function_missing(function))
        tensors = [torch.from_numpy(np.array(a)).to(self._device) for a in inputs]
        fn = getattr(self._unit, function)
        try:
            with torch.no_grad():
                result = fn(*_arguments(fn, tensors, keys, args))
        except Exception as exc:
            raise AIError(" ".join(str(exc).split())) from exc
        return _to_numpy(result)


_CONVENTION = ["List[Tensor]", "List[str]", "List[str]"]


def _check_entry_point(unit: Any, name: str) -> None:
    """AI.SCRIPTSTORE's entry points take RedisAI 1.2's (tensors, keys, args); AI.SCRIPTSET's older scripts name none."""
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
