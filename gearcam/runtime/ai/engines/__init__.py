"""Inference engines behind RedisAI's backend names, imported on first use.

Each backend module exposes ``load(device, blob, inputs, outputs, options) -> EngineModel``,
and one whose threads are set per run (TFLite, Torch) also ``threads_per_run(options) -> int``.
A backend whose Python package is missing answers RedisAI's "Could not load backend"
error followed by the package to install, so the fix is in the message.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from gearcam.runtime import replies
from gearcam.runtime.ai.errors import AIError

__all__ = [
    "BACKENDS", "EngineModel", "EngineOptions", "engine_versions", "load_model", "parse_device", "run_threads",
    "threads_per_run", "usable_cores",
]  # fmt: skip


@dataclass(frozen=True)
class EngineOptions:
    """RedisAI's load-time options that reach the engines."""

    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    threads_per_queue: int = 1  # the runs that may be under way at once, each on a thread of its own
    model_execution_timeout_ms: int = 5000
    backend_memory_limit_mb: int = 0


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def run_threads(options: EngineOptions, default: int) -> int:
    """The threads one run of an engine whose threads are set per run (TFLite, Torch) gets.

    INTRA_OP_PARALLELISM when set; else the engine's `default` shared out among the
    THREADS_PER_QUEUE runs that may be under way at once, so together they never ask for more
    threads than there are (oversubscribed, each parallel step waits for its slowest thread).
    """
    if options.intra_op_parallelism:
        return options.intra_op_parallelism
    return max(1, default // max(1, options.threads_per_queue))


class EngineModel(Protocol):
    """A model loaded into an engine; `run` is called from run-queue worker threads."""

    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]: ...


@dataclass(frozen=True)
class _Backend:
    module: str
    package: str
    install: str
    library: str  # RedisAI's shared library for the backend, which AI.CONFIG LOADBACKEND names


BACKENDS: dict[str, _Backend] = {
    "TF": _Backend("gearcam.runtime.ai.engines.tf", "tensorflow", "pip install -r requirements-tf.txt",
                   "redisai_tensorflow.so"),
    "TFLITE": _Backend("gearcam.runtime.ai.engines.tflite", "ai_edge_litert", "pip install ai-edge-litert==2.3.0",
                       "redisai_tflite.so"),
    "TORCH": _Backend("gearcam.runtime.ai.engines.torch", "torch", "pip install -r requirements-torch.txt",
                      "redisai_torch.so"),
    "ONNX": _Backend("gearcam.runtime.ai.engines.onnx", "onnxruntime", "pip install onnxruntime==1.31.1",
                     "redisai_onnxruntime.so"),
}  # fmt: skip
_loaded: dict[str, ModuleType] = {}
_lock = threading.Lock()


def backend_module(backend: str) -> ModuleType:
    """The engine module for a backend name; RedisAI's error plus the fix if it cannot import."""
    spec = BACKENDS[backend]
    with _lock:
        if backend not in _loaded:
            try:
                importlib.import_module(spec.package)
            except ImportError as exc:
                raise AIError(
                    f"{replies.COULD_NOT_LOAD_BACKEND}: {backend} needs the Python package "
                    f"'{spec.package}' ({exc}); {spec.install}"
                ) from exc
            _loaded[backend] = importlib.import_module(spec.module)
        return _loaded[backend]


def parse_device(device: str) -> tuple[str, int]:
    """('CPU'|'GPU', index) from a RedisAI device string such as 'gpu:1'."""
    kind, _, index = device.upper().partition(":")
    return kind, int(index) if index else 0


def load_model(
    backend: str, device: str, blob: bytes, inputs: Sequence[str], outputs: Sequence[str], options: EngineOptions
) -> EngineModel:
    module = backend_module(backend)
    model: EngineModel = module.load(device, blob, list(inputs), list(outputs), options)
    return model


def threads_per_run(options: EngineOptions) -> dict[str, int]:
    """The threads one run gets, per loaded engine that is told per run (TFLite, Torch), for INFO MODULES.

    RedisAI shows only its INTRA_OP_PARALLELISM setting (0: the engine's default); the runtime
    picks a share of the cores itself (`run_threads`), and an operator sizing THREADS_PER_QUEUE
    needs to see which.
    """
    out: dict[str, int] = {}
    for backend, module in sorted(_loaded.items()):
        threads = getattr(module, "threads_per_run", None)
        if threads is not None:
            out[backend] = int(threads(options))
    return out


def engine_versions() -> dict[str, str]:
    """Versions of the engines imported so far, for INFO MODULES (RedisAI lists loaded backends only)."""
    out: dict[str, str] = {}
    for backend, module in sorted(_loaded.items()):
        out[backend] = str(getattr(module, "VERSION", "NA"))
    return out
