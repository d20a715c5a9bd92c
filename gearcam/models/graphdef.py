"""Just enough of a TensorFlow GraphDef to check what RedisAI's TF backend will ask of it.

RedisAI's TF backend wants the INPUTS to be ``Placeholder`` ops and the OUTPUTS to be
named ops of the graph. Checking that needs each node's name, op and inputs, which sit
in fields 1-3 of every NodeDef (field 1 of the GraphDef). Reading those few fields of
the protobuf wire format here keeps the check free of TensorFlow, so CI and the
loader can run it without the TF engine installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gearcam.models.manifest import ModelFileError
from gearcam.protowire import Buffer
from gearcam.protowire import fields as _fields
from gearcam.protowire import varint as _varint

__all__ = ["AttrValue", "GraphSummary", "Node", "read_graph", "read_node_attrs"]


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class GraphSummary:
    nodes: list[Node]
    producer: int = 0
    min_consumer: int = 0
    ops: list[str] = field(default_factory=list)

    def op_of(self, name: str) -> str | None:
        for node in self.nodes:
            if node.name == name:
                return node.op
        return None


def _text(value: int | Buffer) -> str:
    if not isinstance(value, bytes):
        raise ValueError("expected a string field")
    return value.decode("utf-8")


def read_graph(blob: bytes, where: str = "GraphDef") -> GraphSummary:
    """Nodes (name, op, inputs) and the version stamps of a serialized GraphDef."""
    nodes: list[Node] = []
    producer = min_consumer = 0
    try:
        for number, value in _fields(blob):
            if number == 1 and isinstance(value, bytes):
                name = op = ""
                inputs: list[str] = []
                for node_field, node_value in _fields(value):
                    if node_field == 1:
                        name = _text(node_value)
                    elif node_field == 2:
                        op = _text(node_value)
                    elif node_field == 3:
                        inputs.append(_text(node_value))
                nodes.append(Node(name, op, tuple(inputs)))
            elif number == 4 and isinstance(value, bytes):
                for version_field, version_value in _fields(value):
                    if version_field == 1 and isinstance(version_value, int):
                        producer = version_value
                    elif version_field == 2 and isinstance(version_value, int):
                        min_consumer = version_value
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{where} is not a valid GraphDef ({exc}); rebuild it") from exc
    if not nodes or any(not node.name or not node.op for node in nodes):
        raise ModelFileError(f"{where} is not a valid GraphDef (no named nodes); rebuild it")
    return GraphSummary(nodes, producer, min_consumer, sorted({node.op for node in nodes}))


# AttrValue's oneof fields (tensorflow/core/framework/attr_value.proto), by field number.
_ATTR_KINDS = {
    1: "list",
    2: "s",
    3: "i",
    4: "f",
    5: "b",
    6: "type",
    7: "shape",
    8: "tensor",
    9: "placeholder",
    10: "func",
}


@dataclass(frozen=True)
class AttrValue:
    """One attribute of a node: which kind of value it holds, and the dtypes and strings in it (for checks)."""

    kind: str
    types: tuple[int, ...] = ()  # DataType numbers: the value of a `type` attr, or those of a `list(type)`
    strings: tuple[str, ...] = ()  # the value of an `s` attr, or those of a `list(string)`


def _packed_or_single(value: int | Buffer) -> list[int]:
    if isinstance(value, int):
        return [value]
    numbers, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        numbers.append(number)
    return numbers


def _attr_value(blob: bytes) -> AttrValue:
    for number, value in _fields(blob):
        kind = _ATTR_KINDS.get(number, f"field {number}")
        if kind == "type" and isinstance(value, int):
            return AttrValue(kind, types=(value,))
        if kind == "s" and isinstance(value, bytes):
            return AttrValue(kind, strings=(value.decode("utf-8", "replace"),))
        if kind == "list" and isinstance(value, bytes):
            types: list[int] = []
            strings: list[str] = []
            for list_field, item in _fields(value):
                if list_field == 6:
                    types += _packed_or_single(item)
                elif list_field == 2 and isinstance(item, bytes):
                    strings.append(item.decode("utf-8", "replace"))
            return AttrValue(kind, tuple(types), tuple(strings))
        return AttrValue(kind)
    return AttrValue("list")  # an empty AttrValue is an empty list


def read_node_attrs(blob: bytes, where: str = "GraphDef") -> dict[str, dict[str, AttrValue]]:
    """{node name: {attr name: value}} (NodeDef field 5, a map of name to AttrValue)."""
    nodes: dict[str, dict[str, AttrValue]] = {}
    try:
        for number, value in _fields(blob):
            if number != 1 or not isinstance(value, bytes):
                continue
            name, attrs = "", {}
            for node_field, node_value in _fields(value):
                if node_field == 1:
                    name = _text(node_value)
                elif node_field == 5 and isinstance(node_value, bytes):
                    entry = dict(_fields(node_value))
                    key, attr = entry.get(1, b""), entry.get(2, b"")
                    if isinstance(key, bytes) and isinstance(attr, bytes):
                        attrs[key.decode("utf-8")] = _attr_value(attr)
            nodes[name] = attrs
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{where} is not a valid GraphDef ({exc}); rebuild it") from exc
    return nodes
