"""Will an older libtensorflow load this GraphDef? Checked against op definitions derived from that release.

The Jetson image's RedisAI (1.2.4, docs/deploy.md) links libtensorflow 2.4.0, while the committed
graph is exported with a current TensorFlow. libtensorflow refuses a graph whose op it does not
register, whose NodeDef names an attr the op lacks ("NodeDef mentions attr ... not in Op"), or whose
type or string attr holds a value outside the op's allowed list, and it refuses a GraphDef whose
`min_consumer` is above its own GraphDef version. `docker/compat/tf-<version>-opdefs.json` holds
those facts for one release, derived from its PyPI wheel by `scripts/derive-tf-opdefs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gearcam.config import PROJECT_ROOT
from gearcam.models.graphdef import AttrValue, read_graph, read_node_attrs

__all__ = ["JETSON_TF_VERSION", "OpDefs", "graph_problems", "load_opdefs", "opdefs_path"]

# libtensorflow in RedisAI 1.2.4's Jetson dependencies (libtensorflow-gpu-jetson-linux-arm64-2.4.0).
JETSON_TF_VERSION = "2.4.0"


def opdefs_path(version: str, root: Path = PROJECT_ROOT) -> Path:
    return root / "docker" / "compat" / f"tf-{version}-opdefs.json"


@dataclass(frozen=True)
class OpDefs:
    """One TensorFlow release's ops: attrs, defaults, allowed dtypes and strings; GraphDef version range."""

    source: str
    graph_def_version: int
    min_producer: int
    dtype_names: dict[int, str]
    ops: dict[str, dict[str, Any]]


def load_opdefs(version: str = JETSON_TF_VERSION, root: Path = PROJECT_ROOT) -> OpDefs:
    data = json.loads(opdefs_path(version, root).read_text())
    return OpDefs(
        source=data["source"],
        graph_def_version=int(data["graph_def_version"]),
        min_producer=int(data["graph_def_version_min_producer"]),
        dtype_names={int(number): name for name, number in data["dtypes"].items()},
        ops=data["ops"],
    )


def _value_problems(op: str, attr: str, value: AttrValue, facts: dict[str, Any], defs: OpDefs) -> list[str]:
    problems = []
    allowed_types = facts.get("types", {}).get(attr)
    if allowed_types:
        for number in value.types:
            name = defs.dtype_names.get(number, f"DataType {number}")
            if name not in allowed_types:
                problems.append(f"{op}.{attr} = {name}, not one of {', '.join(allowed_types)}")
    allowed_strings = facts.get("strings", {}).get(attr)
    if allowed_strings:
        problems += [
            f"{op}.{attr} = {text!r}, not one of {allowed_strings}"
            for text in value.strings
            if text not in allowed_strings
        ]
    unknown = [n for n in value.types if n not in defs.dtype_names]
    problems += [f"{op}.{attr} uses DataType {n}, unknown to this release" for n in unknown if not allowed_types]
    return problems


def graph_problems(blob: bytes, defs: OpDefs, where: str = "GraphDef") -> list[str]:
    """What in a serialized GraphDef this TensorFlow release would refuse; empty when it loads."""
    graph = read_graph(blob, where)
    attrs = read_node_attrs(blob, where)
    problems = []
    if graph.min_consumer > defs.graph_def_version:
        problems.append(f"min_consumer {graph.min_consumer} is above this release's GraphDef version")
    if graph.producer < defs.min_producer:
        problems.append(f"producer {graph.producer} is below this release's minimum {defs.min_producer}")
    seen: set[str] = set()
    for node in graph.nodes:
        facts = defs.ops.get(node.op)
        if facts is None:
            problems.append(f"op {node.op} (node {node.name!r}) does not exist")
            continue
        node_attrs = attrs.get(node.name, {})
        found = [f"{node.op}: attr {a!r} is not in the op" for a in node_attrs if a not in facts["attrs"]]
        found += [
            f"{node.op}: required attr {a!r} is missing"
            for a in facts["attrs"]
            if a not in node_attrs and a not in facts["defaults"]
        ]
        for attr, value in node_attrs.items():
            found += _value_problems(node.op, attr, value, facts, defs)
        for problem in found:  # one line per distinct problem, not one per node
            if problem not in seen:
                seen.add(problem)
                problems.append(problem)
    return problems
