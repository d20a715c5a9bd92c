"""The TFLITE backend on LiteRT (`ai-edge-litert`), as RedisAI's tflite backend behaves.

A TFLite interpreter is not thread-safe, so each run takes an interpreter of its own from
the model's pool, made when runs overlap, up to THREADS_PER_QUEUE (the runs that may be
under way at once); RedisAI 1.2 runs one interpreter from every queue thread, unguarded.
Inputs whose shape differs from an interpreter's last run resize it, which is how
auto-batching works for TFLite.

LiteRT runs a model on one thread unless told otherwise: INTRA_OP_PARALLELISM when set,
else the process's cores shared out among THREADS_PER_QUEUE (`run_threads`). Measured
here (2 cores, EfficientNet-Lite0), two threads ran a frame 1.5x (fp32) to 1.9x (int8)
faster than LiteRT's one, with the same outputs bit for bit.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ai_edge_litert import interpreter as litert

from gearcam.runtime import replies
from gearcam.runtime.ai.engines import EngineOptions, parse_device, run_threads, usable_cores
from gearcam.runtime.ai.errors import AIError

VERSION = getattr(litert, "__version__", None) or "NA"


@dataclass(eq=False)
class _Pooled:
    """An interpreter and the input shapes it is allocated for (None: unknown, ask it), so a run
    at the same shapes as its last one skips `get_input_details()` (a list of dicts a call)."""

    interpreter: Any
    shapes: list[tuple[int, ...]] | None = None


def _interpreter(blob: bytes, threads: int) -> Any:
    try:
        interpreter = litert.Interpreter(model_content=blob, num_threads=threads)
    except ValueError as exc:
        raise AIError("Failed to load model from buffer") from exc
    except Exception as exc:
        raise AIError("Failed to construct interpreter") from exc
    try:
        interpreter.allocate_tensors()
    except Exception as exc:
        raise AIError("Failed to allocate tensors") from exc
    return interpreter


class TfliteModel:
    def __init__(self, blob: bytes, threads: int, most: int) -> None:
        first = _interpreter(blob, threads)  # made now: a blob that does not load fails AI.MODELSTORE
        self._blob = blob
        self._threads = threads
        self._most = max(1, most)
        self._idle = [_Pooled(first)]
        self._made = 1
        self._cond = threading.Condition()
        self._inputs = first.get_input_details()
        self._outputs = first.get_output_details()
        self.input_names = [str(d["name"]) for d in self._inputs]
        self.output_names = [str(d["name"]) for d in self._outputs]

    @property
    def interpreters(self) -> int:
        """How many interpreters runs have needed at once so far (at most THREADS_PER_QUEUE)."""
        return self._made

    def _take(self) -> _Pooled:
        """An idle interpreter; a new one while fewer than the most runs at once exist; else wait for one."""
        with self._cond:
            while not self._idle and self._made >= self._most:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._made += 1
        try:
            return _Pooled(_interpreter(self._blob, self._threads))
        except AIError:
            with self._cond:
                self._made -= 1
                self._cond.notify()
            raise

    def _give_back(self, pooled: _Pooled) -> None:
        with self._cond:
            self._idle.append(pooled)
            self._cond.notify()

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        if len(inputs) != len(self._inputs):
            raise AIError(f"ERR Expected {len(self._inputs)} inputs but got {len(inputs)}")
        for detail, array in zip(self._inputs, inputs, strict=True):
            if np.dtype(detail["dtype"]) != array.dtype:
                if array.dtype == np.float16:
                    raise AIError("Float16 not currently supported as input tensor data type")
                raise AIError("Input tensor type doesn't match the type expected by the model definition")
        pooled = self._take()
        try:
            return self._invoke(pooled, inputs)
        finally:
            self._give_back(pooled)

    def _invoke(self, pooled: _Pooled, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        interp, shapes = pooled.interpreter, [array.shape for array in inputs]
        if pooled.shapes != shapes:
            current = pooled.shapes or [tuple(d["shape"]) for d in interp.get_input_details()]
            pooled.shapes = None  # until it is allocated for the new shapes
            resized = False
            for position, (detail, array) in enumerate(zip(self._inputs, inputs, strict=True)):
                if tuple(current[position]) != array.shape:
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
            pooled.shapes = shapes
        try:
            for detail, array in zip(self._inputs, inputs, strict=True):
                interp.set_tensor(detail["index"], array)
            interp.invoke()
        except Exception as exc:
            raise AIError(f"Failed to invoke TfLite: {exc}") from exc
        return [np.array(interp.get_tensor(d["index"])) for d in self._outputs]


def threads_per_run(options: EngineOptions) -> int:
    return run_threads(options, usable_cores())


def load(device: str, blob: bytes, inputs: list[str], outputs: list[str], options: EngineOptions) -> TfliteModel:
    kind, _ = parse_device(device)
    if kind == "GPU":
        # LiteRT's Python package has no GPU delegate on Linux; RedisAI's GPU build fails alike without one.
        raise AIError(replies.gpu_missing("TFLITE"))
    return TfliteModel(blob, threads_per_run(options), options.threads_per_queue)
