"""What an exported file is, read back from the file: tensor names and shapes, and runtime needs.

Used by the export to fill the manifest, and by the re-export check to compare a
fresh build with the committed one. Engines are imported lazily (this runs in the
export environment, which has them all).
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from gearcam.models.graphdef import read_graph
from gearcam.models.manifest import INPUT_NAME, OUTPUT_NAME
from gearcam.models.tflite_ops import TARGET_RUNTIME, read_requirements, version_key

__all__ = ["ONNX_MAX_IR", "ONNX_MAX_OPSET", "TORCH_MAX_FILE_FORMAT", "requirements", "tensor_specs"]

# RedisAI 1.2.7's engines (shared/reference/redisai-1.2.md §0): onnxruntime 1.11 reads ONNX IR <= 8 and
# default-domain opsets <= 15; libtorch 1.11 reads TorchScript archives of file format version <= 6 and up.
ONNX_MAX_IR = 8
ONNX_MAX_OPSET = 15
TORCH_MAX_FILE_FORMAT = 6

Spec = dict[str, Any]


def _dims(shape: Any) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def tensor_specs(backend: str, blob: bytes) -> tuple[list[Spec], list[Spec]]:
    """(inputs, outputs) as the backend's engine names and shapes them; -1 is the free batch dimension."""
    if backend == "ONNX":
        import onnxruntime as ort

        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        return (
            [{"name": t.name, "shape": _dims(t.shape), "dtype": "float32"} for t in session.get_inputs()],
            [{"name": t.name, "shape": _dims(t.shape), "dtype": "float32"} for t in session.get_outputs()],
        )
    if backend == "TFLITE":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=blob)
        return (
            [
                {"name": d["name"], "shape": _dims(d["shape_signature"].tolist()), "dtype": d["dtype"].__name__}
                for d in interpreter.get_input_details()
            ],
            [
                {"name": d["name"], "shape": _dims(d["shape_signature"].tolist()), "dtype": d["dtype"].__name__}
                for d in interpreter.get_output_details()
            ],
        )
    if backend == "TORCH":
        import torch

        schema = torch.jit.load(io.BytesIO(blob), map_location="cpu").forward.schema  # type: ignore[no-untyped-call]
        args = [a.name for a in list(schema.arguments)[1:]]
        returns = [r.name or f"output{i}" for i, r in enumerate(schema.returns)]
        return (
            [{"name": name, "shape": [-1, 224, 224, 3], "dtype": "float32"} for name in args],
            [{"name": name, "shape": [-1, 1000], "dtype": "float32"} for name in returns],
        )
    # TF: the op names given to AI.MODELSTORE's INPUTS/OUTPUTS.
    return (
        [{"name": INPUT_NAME, "shape": [-1, 224, 224, 3], "dtype": "float32"}],
        [{"name": OUTPUT_NAME, "shape": [-1, 1000], "dtype": "float32"}],
    )


def _torch_file_format(blob: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for name in archive.namelist():
            if name.endswith("/version") and name.count("/") == 1:
                return int(archive.read(name).decode().strip())
    raise ValueError("no version record in the TorchScript archive")


def requirements(backend: str, blob: bytes) -> dict[str, Any]:
    """What a runtime must support to load this file, with a verdict for RedisAI 1.2.7's engines."""
    if backend == "ONNX":
        import onnx

        model = onnx.load_model_from_string(blob)
        opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
        return {
            "onnx_ir_version": int(model.ir_version),
            "onnx_opsets": opsets,
            "onnx_ops": sorted({node.op_type for node in model.graph.node}),
            "loads_in_onnxruntime_1_11": model.ir_version <= ONNX_MAX_IR and opsets["ai.onnx"] <= ONNX_MAX_OPSET,
        }
    if backend == "TFLITE":
        needs = read_requirements(blob)
        fits = needs.min_runtime != "unknown" and version_key(needs.min_runtime) <= version_key(TARGET_RUNTIME)
        return {
            "tflite_ops": needs.ops,
            "tflite_min_runtime": needs.min_runtime,
            "tflite_converter_min_runtime": needs.converter_min_runtime,
            f"loads_in_tflite_{TARGET_RUNTIME.replace('.', '_')}": fits,
        }
    if backend == "TF":
        graph = read_graph(blob)
        return {
            "tf_ops": graph.ops,
            "tf_input_op": graph.op_of(INPUT_NAME),
            "tf_output_op": graph.op_of(OUTPUT_NAME),
            "graphdef_producer": graph.producer,
            "graphdef_min_consumer": graph.min_consumer,
        }
    version = _torch_file_format(blob)
    return {"torchscript_file_format": version, "loads_in_libtorch_1_11": version <= TORCH_MAX_FILE_FORMAT}
