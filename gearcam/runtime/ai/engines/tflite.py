"""The TFLITE backend on LiteRT (`ai-edge-litert`), as RedisAI's tflite backend behaves.

A TFLite interpreter is not thread-safe, so runs of one model are serialised by a
lock (RedisAI 1.2 has none and can race with THREADS_PER_QUEUE > 1). Inputs whose
shape differs from the last run resize the interpreter, which is how auto-batching
works for TFLite.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from ai_edge_litert import interpreter as litert

from gearcam.runtime import replies
from gearcam.runtime.ai.engines import EngineOptions, parse_device
from gearcam.runtime.ai.errors import AIError

VERSION = getattr(litert, "__version__", None) or "NA"


class TfliteModel:
    def __init__(self, interpreter: litert.Interpreter) -> None:
        self._interpreter = interpreter
        self._lock = threading.Lock()
        self._inputs = interpreter.get_input_details()
        self._outputs = interpreter.get_output_details()
        self.input_names = [str(d["name"]) for d in self._inputs]
        self.output_names = [str(d["name"]) for d in self._outputs]

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        if len(inputs) != len(self._inputs):
            raise AIError(f"ERR Expected {len(self._inputs)} inputs but got {len(inputs)}")
        with self._lock:
            interp = self._interpreter
            resized = False
            for detail, array in zip(self._inputs, inputs, strict=True):
                if np.dtype(detail["dtype"]) != array.dtype:
                    if array.dtype == np.float16:
                        raise AIError("Float16 not currently supported as input tensor data type")
                    raise AIError("Input tensor type doesn't match the type expected by the model definition")
                current = interp.get_input_details()[self._inputs.index(detail)]["shape"]
                if tuple(current) != array.shape:
                    try:
                        interp.resize_tensor_input(detail["index"], list(array.shape), strict=False)
                    except Exception as exc:
                        raise AIError("Failed to resize input tensors") from exc
                    resized = True
            if resized:
                try:
                    interp.allocate_tensors()
                except Exception as exc:
                    raise AIError("Failed to allocate tensors") from exc
            try:
                for detail, array in zip(self._inputs, inputs, strict=True):
                    interp.set_tensor(detail["index"], array)
                interp.invoke()
            except Exception as exc:
                raise AIError(f"Failed to invoke TfLite: {exc}") from exc
            return [np.array(interp.get_tensor(d["index"])) for d in self._outputs]


def load(device: str, blob: bytes, inputs: list[str], outputs: list[str], options: EngineOptions) -> TfliteModel:
    kind, _ = parse_device(device)
    if kind == "GPU":
        # LiteRT's Python package has no GPU delegate on Linux; RedisAI's GPU build fails alike without one.
        raise AIError(replies.gpu_missing("TFLITE"))
    try:
        interpreter = litert.Interpreter(model_content=blob, num_threads=options.intra_op_parallelism or None)
    except ValueError as exc:
        raise AIError("Failed to load model from buffer") from exc
    except Exception as exc:
        raise AIError("Failed to construct interpreter") from exc
    try:
        interpreter.allocate_tensors()
    except Exception as exc:
        raise AIError("Failed to allocate tensors") from exc
    return TfliteModel(interpreter)
