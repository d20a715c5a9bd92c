"""Small ONNX models built in the tests with onnx.helper (the real classifier comes from models/)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Models built once by tests/fixtures/make_fixtures.py (add.tflite, add.pt, graph_mul.pb), kept in git.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def model_bytes(graph: onnx.GraphProto, functions: Sequence[onnx.FunctionProto] = (), check: bool = True) -> bytes:
    """The serialized model of `graph` (opset 13, IR 8); `check=False` for models the checker would
    refuse or read files for (external data)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], functions=list(functions))
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def add_model(dims: tuple[int | str, ...] = ("N", 2)) -> bytes:
    """c = a + b, float32, dynamic batch on dim 0."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, list(dims))
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, list(dims))
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, list(dims))
    return model_bytes(helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "add", [a, b], [c]))


def linear_model(features: int = 4, classes: int = 3, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """y = softmax(x @ W + bias), x [N, features]; returns the blob and its weights."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((features, classes)).astype(np.float32)
    bias = rng.standard_normal(classes).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    inits = [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "bias")]
    return model_bytes(helper.make_graph(nodes, "linear", [x], [y], inits)), weights, bias


def fixed_batch_model() -> bytes:
    """Sums over the batch: output dim 0 is always 1, so it cannot be auto-batched."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "axes")
    return model_bytes(helper.make_graph([node], "sum", [x], [y], [axes]))


def slow_model(width: int = 2048, depth: int = 64) -> bytes:
    """y = x @ W applied `depth` times: for timeout tests, a run of many seconds on any CPU.

    ONNX Runtime checks its terminate flag between nodes, so a stopped run ends one node
    (about 0.1-0.6 s for 6000 rows) after the deadline however deep the graph is; the depth only
    has to keep a fast CPU from finishing first (8 nodes finished inside 1 s on a CI machine).
    """
    weights = (np.eye(width, dtype=np.float32) * 0.5).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])
    names = ["x"] + [f"h{i}" for i in range(depth - 1)] + ["y"]
    nodes = [helper.make_node("MatMul", [names[i], "W"], [names[i + 1]]) for i in range(depth)]
    return model_bytes(helper.make_graph(nodes, "slow", [x], [y], [numpy_helper.from_array(weights, "W")]))


def identity_string_model() -> bytes:
    """RedisAI's identity_string.onnx: y = x for a STRING tensor [N, 2]."""
    x = helper.make_tensor_value_info("x", TensorProto.STRING, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, ["N", 2])
    return model_bytes(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity_string", [x], [y]))
