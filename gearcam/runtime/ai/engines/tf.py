"""The TF backend: a frozen GraphDef with named Placeholder inputs, as RedisAI's TF backend.

Inputs and outputs are operation names given at AI.MODELSTORE time; output port 0 of
each named op is fetched, as RedisAI does.

A run goes through a session callable made once per model (TensorFlow's C API callable, as
RedisAI calls `TF_SessionRun`), not `Session.run`: Python's feed handling there checks each
tensor's shape against the placeholder's declared one, which RedisAI's C call does not
(RedisAI's `graph_v2.pb` test feeds a [1, 1, 28, 28] image to a (None, 28, 28) placeholder,
which the graph's own reshape accepts), converts mismatched dtypes silently where TensorFlow
refuses them, and costs time (EfficientNet-Lite0 at batch 1, the two alternated in one process:
median 8.51 ms a call with Session.run, 8.02 ms with the callable).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import config_pb2  # noqa: E402

from gearcam.runtime import replies  # noqa: E402
from gearcam.runtime.ai.engines import EngineOptions, parse_device  # noqa: E402
from gearcam.runtime.ai.engines.file_access import refusal, tf_file_ops  # noqa: E402
from gearcam.runtime.ai.errors import AIError  # noqa: E402

VERSION = tf.__version__
_v1 = tf.compat.v1


class TfModel:
    def __init__(self, session: Any, inputs: list[str], outputs: list[str]) -> None:
        self.input_names = inputs
        self.output_names = outputs
        options = config_pb2.CallableOptions(feed=[f"{n}:0" for n in inputs], fetch=[f"{n}:0" for n in outputs])
        # Session's own factory for TF_SessionMakeCallable (the callable keeps the session alive); the public
        # make_callable adds the Python feed checks.
        # A model without OUTPUTS (RedisAI's v0 RDB test has one) runs nothing, as Session.run([]) did.
        self._call = session._make_callable_from_options(options) if outputs else None

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        if len(inputs) < len(self.input_names):  # only from Gears runners; TensorFlow's words, without dtype and shape
            raise AIError(f"You must feed a value for placeholder tensor '{self.input_names[len(inputs)]}'")
        if self._call is None:
            return []
        try:
            results = self._call(*inputs[: len(self.input_names)])
        except Exception as exc:
            # TensorFlow's own lines; the reply turns each line break into a space, as Redis does for
            # RedisAI's (so "...[2,2,3]\n\t [[{{node mul}}]]" reads "...[2,2,3] \t [[{{node mul}}]]").
            message = getattr(exc, "message", str(exc))
            raise AIError(str(message).strip()) from exc
        return [np.asarray(r) for r in results]


def load(device: str, blob: bytes, inputs: list[str], outputs: list[str], options: EngineOptions) -> TfModel:
    kind, index = parse_device(device)
    if kind == "GPU" and not tf.config.list_physical_devices("GPU"):
        raise AIError(replies.gpu_missing("TF"))
    graph_def = _v1.GraphDef()
    try:
        graph_def.ParseFromString(blob)
    except Exception as exc:
        raise AIError("Invalid GraphDef") from exc  # RedisAI's words, without protobuf's detail
    ops = {node.name: node.op for node in graph_def.node}
    for name in inputs:
        if ops.get(name) != "Placeholder":
            raise AIError(f'ERR Input node named "{name}" not found in TF graph.')
    for name in outputs:
        if name not in ops:
            raise AIError(f'ERR Output node named "{name}" not found in TF graph')
    touching = tf_file_ops(graph_def, outputs)
    if touching:
        raise AIError(refusal(touching))
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except Exception as exc:
        raise AIError(f"Invalid GraphDef: {exc}") from exc
    config = _v1.ConfigProto(
        intra_op_parallelism_threads=options.intra_op_parallelism,
        inter_op_parallelism_threads=options.inter_op_parallelism,
        device_count={"GPU": 0} if kind == "CPU" else {},
    )
    if kind == "GPU":
        config.gpu_options.allow_growth = True
        config.gpu_options.visible_device_list = str(index)
    session = _v1.Session(graph=graph, config=config)
    return TfModel(session, inputs, outputs)
