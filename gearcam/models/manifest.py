"""``models/manifest.yaml``: what each committed artifact is, and proof that a file is it.

The manifest is written by ``python -m gearcam.models`` (``invoke models``) and read by
the loader, the checks and the tests. Every artifact shares one input contract (NHWC
float32 ``[N, 224, 224, 3]``, ARCHITECTURE.md §4) and returns logits ``[N, 1000]``;
the entries record what differs: backend, file, precision, the names the engine
gives the tensors, what a runtime must support to load it, and what it measured.

A file is trusted only after ``verify_artifact`` matched its sha256, so a truncated
checkout or a stray regeneration is caught before anything reaches Redis.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gearcam.config import PROJECT_ROOT
from gearcam.errors import CallerError, OperatorError

__all__ = [
    "BACKENDS",
    "INPUT_NAME",
    "MANIFEST_PATH",
    "MODELS_DIR",
    "OUTPUT_NAME",
    "Artifact",
    "Manifest",
    "ModelFileError",
    "check_backend",
    "load_manifest",
    "read_labels",
    "sha256_bytes",
    "verify_artifact",
]

MODELS_DIR = PROJECT_ROOT / "models"
MANIFEST_PATH = MODELS_DIR / "manifest.yaml"
# RedisAI 1.2's backend names, in the order AI.MODELSTORE's documentation lists them.
BACKENDS = ("TF", "TFLITE", "TORCH", "ONNX")
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
REGENERATE = "restore it with `git checkout -- models/` or rebuild on purpose with `invoke models`"


class ModelFileError(OperatorError):
    """A model file (or the manifest) is missing, unreadable or not the file the manifest describes."""


def check_backend(backend: str, where: str = "") -> str:
    """The RedisAI backend name, upper-cased; an unknown one lists the choices."""
    name = backend.upper()
    if name not in BACKENDS:
        at = f" in {where}" if where else ""
        raise CallerError(f"unknown backend {backend!r}{at}; choose one of {', '.join(BACKENDS)}")
    return name


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Entry):
    name: str = Field(description="tensor (TFLITE/ONNX/TORCH) or op (TF) name the engine reports")
    shape: list[int] = Field(description="-1 marks the free batch dimension")
    dtype: str
    layout: str | None = None


class Preprocessing(_Entry):
    color: str = "RGB"
    resize_shorter: int = Field(256, description="shorter side resized to this, bilinear with antialiasing")
    center_crop: int = 224
    mean: float = 127.0
    scale: float = 128.0
    formula: str = "(x - mean) / scale"
    layout: str = "NHWC"
    dtype: str = "float32"


class Artifact(_Entry):
    """One file in ``models/`` and everything a loader or a check needs to know about it."""

    name: str
    backend: str
    file: str
    precision: str = Field(pattern="^(fp32|int8)$")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing
    postprocessing: str = "softmax over the last axis gives class probabilities"
    labels: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    size: int = Field(gt=0)
    source_sha256: str = Field(pattern="^[0-9a-f]{64}$")
    exporters: dict[str, str]
    requires: dict[str, Any] = Field(default_factory=dict, description="what a runtime needs to load this file")
    measured: dict[str, Any] = Field(default_factory=dict, description="numbers the export measured")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value.upper() not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; choose one of {', '.join(BACKENDS)}")
        return value.upper()

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


class Manifest(_Entry):
    schema_version: int = 1
    model: str
    source: dict[str, str]
    labels: dict[str, str]
    calibration: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact]

    def get(self, name: str) -> Artifact:
        """The entry called ``name``; an unknown name lists the ones there are."""
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise CallerError(f"no model {name!r} in the manifest; choose one of {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [a.name for a in self.artifacts]


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    """Read and validate the manifest; errors name the file and the key."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ModelFileError(f"model manifest {path} is missing; {REGENERATE}") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ModelFileError(f"cannot read model manifest {path}: {exc}; {REGENERATE}") from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        )
        raise ModelFileError(f"model manifest {path} is invalid: {problems}; {REGENERATE}") from exc


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_artifact(artifact: Artifact, models_dir: Path = MODELS_DIR) -> bytes:
    """The artifact's bytes, once their sha256 matches the manifest; otherwise a ModelFileError naming the file."""
    path = models_dir / artifact.file
    try:
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelFileError(f"model file {path} for {artifact.name!r} is missing; {REGENERATE}") from exc
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path} for {artifact.name!r}: {exc}") from exc
    digest = sha256_bytes(blob)
    if digest != artifact.sha256:
        raise ModelFileError(
            f"model file {path} does not match the manifest (sha256 {digest[:12]}…, expected "
            f"{artifact.sha256[:12]}…, {len(blob)} bytes, expected {artifact.size}); "
            "it is corrupt or was rebuilt without updating models/manifest.yaml: " + REGENERATE
        )
    return blob


def read_labels(manifest: Manifest, models_dir: Path = MODELS_DIR) -> list[str]:
    """The 1000 ImageNet class names, index = class id, after checking the file's sha256."""
    path = models_dir / manifest.labels["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"labels file {path} is unreadable ({exc}); {REGENERATE}") from exc
    if sha256_bytes(data) != manifest.labels["sha256"]:
        raise ModelFileError(f"labels file {path} does not match the manifest's sha256; {REGENERATE}")
    labels = data.decode("utf-8").splitlines()
    if len(labels) != 1000:
        raise ModelFileError(f"labels file {path} has {len(labels)} lines, expected 1000; {REGENERATE}")
    return labels
