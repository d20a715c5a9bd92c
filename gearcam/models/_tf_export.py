"""The TensorFlow side of the export: the network rebuilt from the PyTorch weights.

RedisAI's TF backend wants a frozen GraphDef whose input is a ``Placeholder`` op and
whose outputs are named ops, and old TFLite runtimes want plain builtin ops. Neither
is what a PyTorch-to-TF bridge produces, so the network is written out here in plain
TF ops (Conv2D/DepthwiseConv2dNative with "SAME" padding, which equals the package's
static same-padding, BiasAdd, Relu6, Mean, MatMul) with every batch norm folded into
the convolution before it. Constants only: the graph is frozen by construction.

Imported only by ``gearcam.models.export`` once the export dependencies are present.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2  # noqa: E402

from gearcam.models.manifest import INPUT_NAME, OUTPUT_NAME  # noqa: E402
from gearcam.models.preprocess import CROP  # noqa: E402

logger = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]
BN_EPS = 1e-3


@dataclass(frozen=True)
class Conv:
    """One convolution with its batch norm folded in: TF filter layout, a bias, a stride."""

    weight: Array  # HWIO for a full conv, HWC1 for a depthwise one
    bias: Array
    stride: int
    depthwise: bool = False
    relu6: bool = True


@dataclass(frozen=True)
class Block:
    expand: Conv | None
    depthwise: Conv
    project: Conv
    skip: bool


def _fold(weights: dict[str, Array], conv: str, bn: str, *, depthwise: bool, stride: int, relu6: bool) -> Conv:
    w = weights[f"{conv}.weight"].astype(np.float64)  # PyTorch OIHW (depthwise: C,1,H,W)
    gamma, beta = weights[f"{bn}.weight"].astype(np.float64), weights[f"{bn}.bias"].astype(np.float64)
    mean, var = weights[f"{bn}.running_mean"].astype(np.float64), weights[f"{bn}.running_var"].astype(np.float64)
    factor = gamma / np.sqrt(var + BN_EPS)
    w = w * factor[:, None, None, None]
    bias = beta - mean * factor
    tf_weight = w.transpose(2, 3, 0, 1) if depthwise else w.transpose(2, 3, 1, 0)
    return Conv(tf_weight.astype(np.float32), bias.astype(np.float32), stride, depthwise, relu6)


def layers(weights: dict[str, Array], strides: list[int]) -> tuple[Conv, list[Block], Conv, Array, Array]:
    """Stem, blocks, head and the classifier from the state dict; ``strides`` per block (from the package)."""
    stem = _fold(weights, "_conv_stem", "_bn0", depthwise=False, stride=2, relu6=True)
    blocks = []
    for index, stride in enumerate(strides):
        p = f"_blocks.{index}"
        expand = None
        if f"{p}._expand_conv.weight" in weights:
            expand = _fold(weights, f"{p}._expand_conv", f"{p}._bn0", depthwise=False, stride=1, relu6=True)
        depthwise = _fold(weights, f"{p}._depthwise_conv", f"{p}._bn1", depthwise=True, stride=stride, relu6=True)
        project = _fold(weights, f"{p}._project_conv", f"{p}._bn2", depthwise=False, stride=1, relu6=False)
        in_channels = expand.weight.shape[2] if expand else depthwise.weight.shape[2]
        skip = stride == 1 and in_channels == project.weight.shape[3]
        blocks.append(Block(expand, depthwise, project, skip))
    head = _fold(weights, "_conv_head", "_bn1", depthwise=False, stride=1, relu6=True)
    return stem, blocks, head, weights["_fc.weight"].T.copy(), weights["_fc.bias"].copy()


def _apply(conv: Conv, x: Any) -> Any:
    strides = [1, conv.stride, conv.stride, 1]
    if conv.depthwise:
        y = tf.nn.depthwise_conv2d(x, tf.constant(conv.weight), strides, "SAME")
    else:
        y = tf.nn.conv2d(x, tf.constant(conv.weight), strides, "SAME")
    y = tf.nn.bias_add(y, tf.constant(conv.bias))
    return tf.nn.relu6(y) if conv.relu6 else y


def build(weights: dict[str, Array], strides: list[int]) -> Any:
    """The network as a concrete function: NHWC float32 ``[N, 224, 224, 3]`` in, logits out."""
    stem, blocks, head, fc_weight, fc_bias = layers(weights, strides)
    spec = tf.TensorSpec([None, CROP, CROP, 3], tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])  # type: ignore[untyped-decorator]
    def classify(images: Any) -> Any:
        x = _apply(stem, images)
        for block in blocks:
            y = _apply(block.expand, x) if block.expand else x
            y = _apply(block.project, _apply(block.depthwise, y))
            x = x + y if block.skip else y
        x = tf.reduce_mean(_apply(head, x), axis=[1, 2])
        logits = tf.nn.bias_add(tf.matmul(x, tf.constant(fc_weight)), tf.constant(fc_bias))
        return tf.identity(logits, name=OUTPUT_NAME)

    return classify.get_concrete_function()


def frozen_graph_def(concrete: Any) -> Any:
    """The GraphDef RedisAI's TF backend loads: Placeholder ``input`` ... Identity ``logits``, nothing else."""
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [OUTPUT_NAME])
    for node in graph_def.node:
        for attr in [name for name in node.attr if name.startswith("_")]:
            del node.attr[attr]  # `_user_specified_name` and friends: noise for older consumers
    return strip_default_attrs(graph_def)


def strip_default_attrs(graph_def: Any) -> Any:
    """Drop every attr whose value is its op's default, in place; return the GraphDef.

    Newer TensorFlow adds attrs with defaults (MatMul's `grad_a`/`grad_b`), and an older one
    refuses a NodeDef naming an attr its op lacks ("NodeDef mentions attr ... not in Op"). The
    Jetson's libtensorflow is 2.4 (docs/deploy.md); a graph without default-valued attrs loads there,
    and each TensorFlow fills in its own defaults. Checked by tests/deploy/test_tf_compat.py.
    """
    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        for attr_def in op_def.attr if op_def is not None else ():
            if attr_def.HasField("default_value") and node.attr.get(attr_def.name) == attr_def.default_value:
                del node.attr[attr_def.name]
    return graph_def


def write_graph_def(graph_def: Any, path: Path) -> None:
    path.write_bytes(graph_def.SerializeToString(deterministic=True))
    logger.info("wrote %s", path)


def run_graph_def(blob: bytes, batch: Array) -> Array:
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(blob)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return np.asarray(session.run(f"{OUTPUT_NAME}:0", {f"{INPUT_NAME}:0": batch}))


def tflite_fp32(concrete: Any, path: Path) -> None:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    path.write_bytes(converter.convert())
    logger.info("wrote %s", path)


def tflite_int8(concrete: Any, path: Path, calibration: Callable[[], Iterable[Array]]) -> None:
    """Full-integer TFLite: int8 weights and activations, float32 input and output kept for one input contract."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([frame] for frame in calibration())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    path.write_bytes(converter.convert())
    logger.info("wrote %s", path)


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__}
