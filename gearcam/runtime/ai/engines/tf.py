"""The TF backend: a frozen GraphDef with named Placeholder inputs, as RedisAI's TF backend.

Inputs and outputs are operation names given at AI.MODELSTORE time; output port 0 of
each named op is fetched, as RedisAI does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

from gearcam.runtime import replies  # noqa: E402
from gearcam.runtime.ai.engines import EngineOptions, parse_device  # noqa: E402
from gearcam.runtime.ai.engines.file_access import refusal, tf_file_ops  # noqa: E402
from gearcam.runtime.ai.errors import AIError

VERSION = tf.__version__
_v1 = tf.compat.v1


class TfModel:
    def __init__(self, graph: Any, session: Any, inputs: list[str], outputs: list[str]) -> None:
        self._session = session
        self.input_names = inputs
        self.output_names = outputs
        self._feeds = [graph.get_tensor_by_name(f"{n}:0") for n in inputs]
        self._fetches = [graph.get_tensor_by_name(f"{n}:0") for n in outputs]

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        if len(inputs) < len(self._feeds):  # only from Gears runners; TensorFlow's words, without dtype and shape
            raise AIError(f"You must feed a value for placeholder tensor '{self.input_names[len(inputs)]}'")
        try:
            results = self._session.run(self._fetches, feed_dict=dict(zip(self._feeds, inputs, strict=False)))
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
    return TfModel(graph, session, inputs, outputs)
