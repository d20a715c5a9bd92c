"""A small tabular classifier (30 float features -> 2 classes) built at run time, with RANDOM weights.

AIBench's fraud benchmark serves a model over the 30 PCA features of the Kaggle
credit-card data set; what it measures is per-call overhead, because the model itself
costs microseconds. Nothing can be downloaded here, so this is a two-layer perceptron of
the same shape with seeded random weights: it classifies nothing meaningfully, and every
output labels it as such (``TABULAR_NOTE``). Built with ``onnx.helper`` (requirements-dev.txt).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURES", "HIDDEN", "TABULAR_INPUT", "TABULAR_NOTE", "TABULAR_OUTPUT", "build_tabular_onnx"]

FEATURES = 30
HIDDEN = 64
TABULAR_INPUT = "features"
TABULAR_OUTPUT = "probabilities"
TABULAR_NOTE = "random weights (not a trained model): 30 float features -> 64 ReLU -> 2-class softmax"


def build_tabular_onnx(seed: int = 30) -> bytes:
    """The serialised ONNX model, batch dimension free: [N, 30] float32 -> [N, 2] float32."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(0, 0.2, (FEATURES, HIDDEN)).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": rng.normal(0, 0.2, (HIDDEN, 2)).astype(np.float32),
        "b2": np.zeros(2, np.float32),
    }
    nodes = [
        helper.make_node("Gemm", [TABULAR_INPUT, "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["z"]),
        helper.make_node("Softmax", ["z"], [TABULAR_OUTPUT], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "gearcam_bench_tabular_random_weights",
        [helper.make_tensor_value_info(TABULAR_INPUT, TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info(TABULAR_OUTPUT, TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="gearcam.bench")
    model.ir_version = 7
    return bytes(model.SerializeToString())
