"""What is served: a manifest artifact (EfficientNet-Lite0 per backend and precision) or the tabular model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gearcam.bench.plan import IMAGE_ITEM, TABULAR, TABULAR_ITEM
from gearcam.models.engines import engine_missing
from gearcam.models.manifest import Artifact, load_manifest, verify_artifact

__all__ = ["Subject", "load_subject", "random_batch"]


@dataclass(frozen=True)
class Subject:
    """A model with what the runtime, the direct engine and the HTTP server need to serve it."""

    name: str
    backend: str
    precision: str
    blob: bytes
    inputs: list[str]
    outputs: list[str]
    item: tuple[int, ...]
    note: str

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "precision": self.precision, "bytes": len(self.blob),
                "item_shape": list(self.item), "note": self.note}  # fmt: skip


def _from_artifact(artifact: Artifact) -> Subject:
    return Subject(
        artifact.name, artifact.backend, artifact.precision, verify_artifact(artifact), artifact.input_names,
        artifact.output_names, IMAGE_ITEM, f"EfficientNet-Lite0 ({artifact.file}, ImageNet weights)",
    )  # fmt: skip


def load_subject(name: str) -> Subject | str:
    """The subject called ``name``, or why it cannot be measured here ("not measured: pip install ...")."""
    if name == TABULAR:
        try:
            from gearcam.bench.tabular import TABULAR_INPUT, TABULAR_NOTE, TABULAR_OUTPUT, build_tabular_onnx

            blob = build_tabular_onnx()
        except ImportError:
            return "not measured: the tabular model is built with onnx; pip install onnx==1.23.2"
        if engine_missing("ONNX"):
            return f"not measured: {engine_missing('ONNX')}"
        return Subject(TABULAR, "ONNX", "fp32", blob, [TABULAR_INPUT], [TABULAR_OUTPUT], TABULAR_ITEM, TABULAR_NOTE)
    artifact = load_manifest().get(name)
    missing = engine_missing(artifact.backend)
    if missing:
        return f"not measured: {missing}"
    return _from_artifact(artifact)


def random_batch(subject: Subject, batch: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Seeded input in the range the models see after preprocessing ([-1, 1])."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (batch, *subject.item)).astype(np.float32)
