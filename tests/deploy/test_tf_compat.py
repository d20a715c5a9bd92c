"""The committed TF graph loads in the Jetson's libtensorflow 2.4: every op, attr and value exists there.

The op definitions come from TensorFlow 2.4.0's PyPI wheel (docker/compat/tf-2.4.0-opdefs.json,
derived by scripts/derive-tf-opdefs). The graphs that must fail are built here as protobuf wire
bytes, so the checker is shown to catch each kind of problem libtensorflow would refuse.
"""

from __future__ import annotations

import json

import pytest

from gearcam.config import PROJECT_ROOT
from gearcam.models.manifest import load_manifest
from gearcam.ship.tf_compat import JETSON_TF_VERSION, graph_problems, load_opdefs, opdefs_path

DT_FLOAT, DT_INT32, DT_STRING = 1, 3, 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _attr(name: str, value: bytes) -> bytes:
    return _field(5, _field(1, name) + _field(2, value))


def type_attr(name: str, dtype: int) -> bytes:
    return _attr(name, _field(6, dtype))


def string_attr(name: str, text: str) -> bytes:
    return _attr(name, _field(2, text))


def bool_attr(name: str, flag: bool) -> bytes:
    return _attr(name, _field(5, int(flag)))


def ints_attr(name: str, values: list[int]) -> bytes:
    return _attr(name, _field(1, b"".join(_field(3, v) for v in values)))


def node(name: str, op: str, *attrs: bytes, inputs: tuple[str, ...] = ()) -> bytes:
    return _field(1, _field(1, name) + _field(2, op) + b"".join(_field(3, i) for i in inputs) + b"".join(attrs))


def graph(*nodes: bytes, producer: int = 2474, min_consumer: int = 0) -> bytes:
    return b"".join(nodes) + _field(4, _field(1, producer) + _field(2, min_consumer))


PLACEHOLDER = node("x", "Placeholder", type_attr("dtype", DT_FLOAT))
CONST = node("w", "Const", type_attr("dtype", DT_FLOAT), _attr("value", _field(8, b"")))


def matmul(*extra: bytes) -> bytes:
    return node("y", "MatMul", type_attr("T", DT_FLOAT), *extra, inputs=("x", "w"))


@pytest.fixture(scope="module")
def tf24():  # type: ignore[no-untyped-def]
    return load_opdefs(JETSON_TF_VERSION)


class TestTheOpDefinitions:
    def test_come_from_the_tensorflow_2_4_0_wheel_and_say_so(self, tf24) -> None:  # type: ignore[no-untyped-def]
        assert tf24.source.startswith("tensorflow_cpu-2.4.0-cp38-cp38-manylinux2010_x86_64.whl from PyPI (sha256 ")
        assert tf24.graph_def_version == 561  # TF_GRAPH_DEF_VERSION of 2.4.0
        assert len(tf24.ops) > 1000

    def test_know_what_2_4_lacks_and_what_it_has(self, tf24) -> None:  # type: ignore[no-untyped-def]
        assert tf24.ops["MatMul"]["attrs"] == ["transpose_a", "transpose_b", "T"]  # no grad_a/grad_b yet
        assert tf24.ops["Conv2D"]["strings"]["padding"] == ["SAME", "VALID", "EXPLICIT"]
        assert tf24.ops["Mean"]["types"]["Tidx"] == ["DT_INT32", "DT_INT64"]
        assert tf24.dtype_names[DT_FLOAT] == "DT_FLOAT"

    def test_are_one_op_a_line_so_a_rederivation_diffs_op_by_op(self) -> None:
        lines = opdefs_path(JETSON_TF_VERSION).read_text().splitlines()
        assert sum(1 for line in lines if line.startswith('  "') and '": {"' in line) == len(
            json.loads("\n".join(lines))["ops"]
        )


class TestTheCommittedGraph:
    def test_loads_in_libtensorflow_2_4(self, tf24) -> None:  # type: ignore[no-untyped-def]
        (artifact,) = [a for a in load_manifest().artifacts if a.backend == "TF"]
        blob = (PROJECT_ROOT / "models" / artifact.file).read_bytes()
        assert graph_problems(blob, tf24, artifact.file) == []

    def test_uses_only_ops_that_2_4_registers(self, tf24) -> None:  # type: ignore[no-untyped-def]
        (artifact,) = [a for a in load_manifest().artifacts if a.backend == "TF"]
        assert set(artifact.requires["tf_ops"]) <= set(tf24.ops)


class TestTheCheckRefuses:
    def test_an_attr_the_op_does_not_have_in_2_4(self, tf24) -> None:  # type: ignore[no-untyped-def]
        blob = graph(PLACEHOLDER, CONST, matmul(bool_attr("grad_a", False)))
        assert graph_problems(blob, tf24) == ["MatMul: attr 'grad_a' is not in the op"]

    def test_an_op_2_4_does_not_register(self, tf24) -> None:  # type: ignore[no-untyped-def]
        blob = graph(PLACEHOLDER, node("z", "NoSuchOpInTf24", inputs=("x",)))
        assert graph_problems(blob, tf24) == ["op NoSuchOpInTf24 (node 'z') does not exist"]

    def test_a_dtype_outside_the_allowed_list(self, tf24) -> None:  # type: ignore[no-untyped-def]
        blob = graph(PLACEHOLDER, node("r", "Relu6", type_attr("T", DT_STRING), inputs=("x",)))
        assert graph_problems(blob, tf24)[0].startswith("Relu6.T = DT_STRING, not one of ")

    def test_a_string_outside_the_allowed_values(self, tf24) -> None:  # type: ignore[no-untyped-def]
        conv = node(
            "c", "Conv2D", type_attr("T", DT_FLOAT), ints_attr("strides", [1, 1, 1, 1]),
            string_attr("padding", "CAUSAL"), inputs=("x", "w"),
        )  # fmt: skip
        assert graph_problems(graph(PLACEHOLDER, CONST, conv), tf24) == [
            "Conv2D.padding = 'CAUSAL', not one of ['SAME', 'VALID', 'EXPLICIT']"
        ]

    def test_a_missing_required_attr(self, tf24) -> None:  # type: ignore[no-untyped-def]
        conv = node("c", "Conv2D", type_attr("T", DT_FLOAT), string_attr("padding", "SAME"), inputs=("x", "w"))
        assert graph_problems(graph(PLACEHOLDER, CONST, conv), tf24) == ["Conv2D: required attr 'strides' is missing"]

    def test_a_graph_that_needs_a_newer_consumer(self, tf24) -> None:  # type: ignore[no-untyped-def]
        blob = graph(PLACEHOLDER, min_consumer=1000)
        assert graph_problems(blob, tf24) == ["min_consumer 1000 is above this release's GraphDef version"]

    def test_nothing_in_a_graph_2_4_accepts(self, tf24) -> None:  # type: ignore[no-untyped-def]
        blob = graph(PLACEHOLDER, CONST, matmul(bool_attr("transpose_a", False)), producer=561)
        assert graph_problems(blob, tf24) == []


def test_the_exporter_writes_graphs_without_the_attrs_newer_tensorflow_adds(tf24) -> None:  # type: ignore[no-untyped-def]
    tf = pytest.importorskip("tensorflow", reason="the TF engine (scripts/bootstrap --tf) runs the exporter's step")
    from gearcam.models._tf_export import strip_default_attrs

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])  # type: ignore[untyped-decorator]
    def fc(x):  # type: ignore[no-untyped-def]
        return tf.identity(tf.matmul(x, tf.ones([3, 2])), name="out")

    graph_def = fc.get_concrete_function().graph.as_graph_def()
    for item in graph_def.node:
        for name in [n for n in item.attr if n.startswith("_")]:
            del item.attr[name]
    before = graph_problems(graph_def.SerializeToString(), tf24)
    assert "MatMul: attr 'grad_a' is not in the op" in before  # what today's TensorFlow writes
    assert graph_problems(strip_default_attrs(graph_def).SerializeToString(), tf24) == []


def test_the_tflite_files_are_checked_against_the_tflite_the_jetson_image_links() -> None:
    from gearcam.models.tflite_ops import TARGET_RUNTIME

    lock = (PROJECT_ROOT / "docker" / "artifacts-jetson.lock").read_text()
    assert f"libtensorflowlite-linux-arm64-{TARGET_RUNTIME}.tar.gz" in lock
    assert f"libtensorflow-gpu-jetson-linux-arm64-{JETSON_TF_VERSION}.tar.gz" in lock
