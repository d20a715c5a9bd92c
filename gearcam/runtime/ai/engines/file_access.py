"""Find what in a model or script would read or write files on the runtime's machine, before it is loaded.

A client allowed `AI.MODELSTORE` or `AI.SCRIPTSTORE` (on its own keys, by ACL) must not get the
runtime's access to the machine's files. Each engine has a way in, all measured here:
- an ONNX tensor may keep its values "in file F" (external data); given a model as bytes, ONNX
  Runtime reads F relative to the working directory, and `AI.TENSORGET` returns its bytes.
  RedisAI refuses such models ("Initializer tensors with external data is not allowed."), and
  so does the runtime, by walking the few message types that can hold a tensor;
- TorchScript has `torch.from_file` and `torch.save` (any path, absolute too);
- TensorFlow graphs have `ReadFile`, `WriteFile`, `Save`/`Restore`, readers, datasets, summary
  writers and debug ops with file URLs.
RedisAI loads the last two; the runtime refuses them by the operations they contain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from gearcam.protowire import Buffer, fields

__all__ = ["external_data_location", "refusal", "tf_file_ops", "torch_file_ops"]

# Where a TensorProto can sit (onnx/onnx.proto field numbers): message kind -> {field: kind}.
_HOLDS: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},  # TrainingInfoProto: initialization, algorithm
    "graph": {1: "node", 5: "tensor", 15: "sparse"},  # node, initializer, sparse_initializer
    "function": {7: "node", 11: "attribute"},  # node, attribute_proto (defaults)
    "node": {5: "attribute"},
    # t, g (a Loop's or If's body), tensors, graphs, sparse_tensor, sparse_tensors
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},  # values, indices
}
_DATA_LOCATION, _EXTERNAL_DATA, _EXTERNAL = 14, 13, 1
_LOCATION_KEY = b"location"


def _location(tensor: Buffer) -> str | None:
    """The file an external tensor names ('' where it names none), or None for a tensor that holds its values."""
    external = False
    location = ""
    for number, value in fields(tensor):
        if number == _DATA_LOCATION and value == _EXTERNAL:
            external = True
        elif number == _EXTERNAL_DATA and not isinstance(value, int):
            entry = dict(fields(value))
            key, text = entry.get(1), entry.get(2)
            if not isinstance(key, int) and bytes(key or b"") == _LOCATION_KEY and not isinstance(text, int):
                location = bytes(text or b"").decode("utf-8", "replace")
    return location if external else None


def external_data_location(blob: bytes) -> str | None:
    """The file the first external tensor of the model names, or None when every tensor holds its values.

    Raises ValueError where the bytes are not a protobuf message (ONNX Runtime would not parse them either).
    """
    pending: list[tuple[str, Buffer]] = [("model", memoryview(blob))]
    while pending:
        kind, message = pending.pop()
        if kind == "tensor":
            location = _location(message)
            if location is not None:
                return location
            continue
        holds = _HOLDS[kind]
        for number, value in fields(message):
            child = holds.get(number)
            if child is not None and not isinstance(value, int):
                pending.append((child, value))
    return None


# TorchScript operators that open a path (from torch's whole operator registry, 2.13).
_TORCH_FILE_OPS = frozenset({"aten::from_file", "aten::save", "debugprims::load_tensor"})


def torch_file_ops(graphs: Iterable[Any]) -> list[str]:
    """The file operators in TorchScript graphs (inlined ones, so calls to other functions are inside).

    Walks every node, the blocks of `if` and loops, and the subgraphs of `fork`.
    """
    found: set[str] = set()
    pending = list(graphs)
    while pending:
        graph = pending.pop()
        nodes = list(graph.nodes())
        while nodes:
            node = nodes.pop()
            if node.kind() in _TORCH_FILE_OPS:
                found.add(node.kind())
            for block in node.blocks():
                nodes.extend(block.nodes())
            for name in node.attributeNames():
                if node.kindOf(name) == "g":
                    pending.append(node.g(name))
    return sorted(found)


# TensorFlow ops that read or write files or reach the network: paths and URLs are their inputs
# or attributes (ReadFile, Save, readers, datasets, summary writers, debug ops' file:// URLs,
# PrintV2's output_stream). A frozen inference graph has no use for them.
_TF_FILE_OPS = re.compile(
    r"File|Reader|Dataset|Save|Restore|Checkpoint|Summary.*Writer|SummaryDbWriter|^Debug|"
    r"^DumpTensor$|^ImmutableConst$|^RecordInput$|^LoadAndRemapMatrix$|^LoadTPU|^PrintV2$"
)


def tf_file_ops(graph_def: Any, outputs: Iterable[str]) -> list[str]:
    """The ops that touch files or the network among those a run of `outputs` can reach.

    A session runs only what the fetched outputs depend on, so the main graph is walked from the
    outputs back through data and control inputs (a TF1 graph frozen without pruning keeps its
    `save/` nodes, which no run reaches); every function of the library is checked whole.
    """
    nodes = {node.name: node for node in graph_def.node}
    ops: set[str] = set()
    seen: set[str] = set()
    pending = [name for name in outputs if name in nodes]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        node = nodes[name]
        ops.add(node.op)
        for source in node.input:
            source = source.lstrip("^").split(":", 1)[0]
            if source in nodes:
                pending.append(source)
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return sorted(op for op in ops if _TF_FILE_OPS.search(op))


def refusal(ops: list[str]) -> str:
    """The reply to a model or script that contains file operations, naming them and the fix."""
    return (
        "ERR the gearcam runtime does not load a model or script that reads or writes files or reaches the "
        f"network ({', '.join(ops)}); RedisAI would. Feed the data in as input tensors instead"
    )
