"""Each artifact run by the runtime's own engine for its backend, for the checks and the export.

Serving goes through Redis (RedisAI, or ``gearcam.runtime``); the checks load the file
into the very engine module the runtime serves ``AI.MODELEXECUTE`` with
(``gearcam.runtime.ai.engines``), without a server, so a file that would not load or
classify on the runtime is found before it is uploaded. A missing engine raises
``EngineMissing`` naming the package to install; ``engine_missing`` tells the checks
whether to skip.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from gearcam.errors import EngineMissing
from gearcam.models.manifest import Artifact, ModelFileError
from gearcam.runtime.ai.engines import BACKENDS, EngineOptions, load_model
from gearcam.runtime.resp import ErrorReply

__all__ = ["ENGINE_PACKAGES", "Runner", "engine_missing", "load_runner"]

Array = np.ndarray[Any, Any]
Runner = Callable[[Array], Array]

# Backend -> what to pip install: the pins of requirements*.txt.
ENGINE_PACKAGES: dict[str, str] = {
    "ONNX": "onnxruntime==1.31.1",
    "TFLITE": "ai-edge-litert==2.3.0",
    "TF": "tensorflow-cpu==2.21.0",
    "TORCH": "torch==2.13.0",
}


def engine_missing(backend: str) -> str | None:
    """Why ``backend``'s engine cannot run here (the package to install), or None when it can."""
    try:
        importlib.import_module(BACKENDS[backend].package)
    except ImportError:
        return str(EngineMissing(backend, ENGINE_PACKAGES[backend]))
    return None


def load_runner(artifact: Artifact, blob: bytes) -> Runner:
    """A function from an NHWC float32 batch to logits, for a verified artifact's bytes."""
    missing = engine_missing(artifact.backend)
    if missing:  # first, so a missing engine is not mistaken for a bad file
        raise EngineMissing(artifact.backend, ENGINE_PACKAGES[artifact.backend])
    try:
        model = load_model(artifact.backend, "CPU", blob, artifact.input_names, artifact.output_names, EngineOptions())
    except ErrorReply as exc:
        raise ModelFileError(
            f"the {artifact.backend} engine cannot load {artifact.file} ({exc}); rebuild it with `invoke models`"
        ) from exc

    def run(batch: Array) -> Array:
        return np.asarray(model.run([batch])[0])

    return run
