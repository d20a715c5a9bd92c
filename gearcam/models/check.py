"""The checks behind ``invoke models --check`` and the tests: is each committed file the model?

For every artifact in the manifest: the sha256 matches; the engine for its backend
loads it and classifies the test pictures (a cat as cats 281-285 together >= 0.8,
coffee as espresso 967, and every picture's top class inside its expected group);
fp32 artifacts agree on logits within ``FP32_TOLERANCE``; and what the manifest says
a runtime needs (TFLite op versions, the TF graph's Placeholder and output op) is
re-read from the file and compared. An engine that is not installed is a skip with
the package to install, never a silent pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gearcam.config import PROJECT_ROOT
from gearcam.errors import GearcamError
from gearcam.models.engines import engine_missing, load_runner
from gearcam.models.graphdef import read_graph
from gearcam.models.manifest import MODELS_DIR, Artifact, Manifest, verify_artifact
from gearcam.models.preprocess import preprocess
from gearcam.models.tflite_ops import read_requirements

__all__ = [
    "CAT_CLASSES",
    "DATA_DIR",
    "FP32_TOLERANCE",
    "TEST_IMAGES",
    "Finding",
    "check_manifest",
    "load_test_batch",
    "softmax",
    "summarize",
    "verdict",
]

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
CAT_CLASSES = tuple(range(281, 286))
CAT_MIN_SCORE = 0.8
FP32_TOLERANCE = 1e-3
# Picture -> the classes its top-1 must fall in (shared/data/README.md).
TEST_IMAGES: dict[str, tuple[int, ...]] = {
    "chelsea.jpg": CAT_CLASSES,
    "coffee.jpg": (967,),
    "astronaut.jpg": (450, 560),  # bobsled, football helmet
    "rocket.jpg": (657, 744),  # missile, projectile
}


@dataclass(frozen=True)
class Finding:
    artifact: str
    check: str
    status: str  # "ok", "skip" or "fail"
    detail: str = ""


def softmax(logits: Array) -> Array:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    probs: Array = exp / exp.sum(axis=-1, keepdims=True)
    return probs


def load_test_batch(data_dir: Path = DATA_DIR) -> tuple[list[str], Array]:
    """The test pictures, preprocessed and stacked ``[4, 224, 224, 3]``; FileNotFoundError if a picture is absent."""
    names = list(TEST_IMAGES)
    frames = [preprocess((data_dir / name).read_bytes()) for name in names]
    return names, np.concatenate(frames)


def summarize(logits: Array, image: str) -> dict[str, Any]:
    """Top-5 (class, probability) and the probability of the picture's expected group."""
    probs = softmax(logits)
    top = np.argsort(-probs)[:5]
    group = TEST_IMAGES[image]
    return {
        "top5": [[int(i), round(float(probs[i]), 4)] for i in top],
        "group": [group[0], group[-1]] if len(group) > 1 else [group[0]],
        "group_score": round(float(probs[list(group)].sum()), 4),
    }


def classification_problems(artifact: str, names: list[str], logits: Array) -> list[str]:
    """What is wrong with these logits for these pictures; empty when all is well."""
    problems = []
    probs = softmax(logits)
    for row, name in zip(probs, names, strict=True):
        top = int(np.argmax(row))
        if top not in TEST_IMAGES[name]:
            problems.append(f"{name}: top class {top} ({row[top]:.3f}) is not in {TEST_IMAGES[name]}")
        if name == "chelsea.jpg" and row[list(CAT_CLASSES)].sum() < CAT_MIN_SCORE:
            problems.append(f"{name}: cats 281-285 sum to {row[list(CAT_CLASSES)].sum():.3f} < {CAT_MIN_SCORE}")
    return problems


def _requirement_findings(artifact: Artifact, blob: bytes) -> Iterable[Finding]:
    """Re-read what the file asks of a runtime and compare it with what the manifest recorded."""
    if artifact.backend == "TFLITE":
        needs = read_requirements(blob, artifact.file)
        recorded = artifact.requires.get("tflite_ops")
        ok = needs.ops == recorded and needs.min_runtime == artifact.requires.get("tflite_min_runtime")
        detail = f"ops {needs.ops}, first runtime {needs.min_runtime}"
        yield Finding(
            artifact.name,
            "tflite op versions",
            "ok" if ok else "fail",
            detail
            if ok
            else f"file has {detail}; manifest has {recorded}, {artifact.requires.get('tflite_min_runtime')}",
        )
    elif artifact.backend == "TF":
        graph = read_graph(blob, artifact.file)
        problems = [
            f"input {n!r} is {graph.op_of(n)!r}, not a Placeholder"
            for n in artifact.input_names
            if graph.op_of(n) != "Placeholder"
        ]
        problems += [f"output op {n!r} is missing" for n in artifact.output_names if graph.op_of(n) is None]
        if graph.ops != artifact.requires.get("tf_ops"):
            problems.append(f"ops {graph.ops} differ from the manifest's {artifact.requires.get('tf_ops')}")
        yield Finding(
            artifact.name,
            "TF graph",
            "fail" if problems else "ok",
            "; ".join(problems) or f"Placeholder {artifact.input_names}, outputs {artifact.output_names}",
        )


@dataclass
class _Run:
    findings: list[Finding] = field(default_factory=list)
    logits: dict[str, Array] = field(default_factory=dict)


def _check_one(artifact: Artifact, models_dir: Path, batch: tuple[list[str], Array] | None, strict: bool) -> _Run:
    run = _Run()
    try:
        blob = verify_artifact(artifact, models_dir)
    except GearcamError as exc:
        run.findings.append(Finding(artifact.name, "sha256", "fail", str(exc)))
        return run
    run.findings.append(Finding(artifact.name, "sha256", "ok", artifact.sha256[:12]))
    run.findings.extend(_requirement_findings(artifact, blob))
    missing = engine_missing(artifact.backend)
    if missing:
        run.findings.append(Finding(artifact.name, "classify", "fail" if strict else "skip", missing))
        return run
    if batch is None:
        run.findings.append(Finding(artifact.name, "classify", "skip", f"test pictures not found in {DATA_DIR}"))
        return run
    names, frames = batch
    logits = load_runner(artifact, blob)(frames)
    run.logits[artifact.name] = logits
    problems = classification_problems(artifact.name, names, logits)
    cats = float(softmax(logits[0])[list(CAT_CLASSES)].sum())
    coffee_top = int(np.argmax(logits[1]))
    run.findings.append(
        Finding(
            artifact.name,
            "classify",
            "fail" if problems else "ok",
            "; ".join(problems) or f"cats {cats:.3f}, coffee top {coffee_top}",
        )
    )
    return run


def check_manifest(
    manifest: Manifest, models_dir: Path = MODELS_DIR, data_dir: Path = DATA_DIR, only: str | None = None
) -> list[Finding]:
    """Every check for every artifact (or just ``only``); a missing engine fails only when asked for by name."""
    artifacts = [manifest.get(only)] if only else manifest.artifacts
    try:
        batch: tuple[list[str], Array] | None = load_test_batch(data_dir)
    except FileNotFoundError:
        batch = None
    findings: list[Finding] = []
    fp32: dict[str, Array] = {}
    for artifact in artifacts:
        run = _check_one(artifact, models_dir, batch, strict=only is not None)
        findings.extend(run.findings)
        for name, logits in run.logits.items():
            if artifact.precision == "fp32":
                fp32[name] = logits
    if len(fp32) > 1:
        reference = next(iter(fp32))
        for name, logits in list(fp32.items())[1:]:
            diff = float(np.abs(logits - fp32[reference]).max())
            status = "ok" if diff <= FP32_TOLERANCE else "fail"
            findings.append(Finding(name, f"logits vs {reference}", status, f"max abs diff {diff:.2e}"))
    return findings


def verdict(findings: list[Finding]) -> bool:
    """True when nothing failed (skips are reported, not failures)."""
    return all(f.status != "fail" for f in findings)
