"""A model or script may not read or write the runtime machine's files, whatever its engine offers.

Each way in was measured working before the refusal: an ONNX tensor kept in a file beside the model
(ONNX Runtime reads it from the runtime's working directory), TorchScript's `torch.from_file` and
`torch.save`, TensorFlow's `ReadFile`. The client only needs `AI.MODELSTORE`/`AI.SCRIPTSTORE` on keys
of its own; the files are the runtime's.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from onnx import TensorProto, helper

from gearcam.runtime.ai.engines.file_access import external_data_location
from tests.runtime.conftest import Runtime, error_of
from tests.runtime.models import add_model, model_bytes

SECRET = b"gearcam-test-secret-0123456789"
ONNX_REFUSAL = "Initializer tensors with external data is not allowed."
FILE_REFUSAL = (
    "ERR the gearcam runtime does not load a model or script that reads or writes files or reaches the network"
)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[redis.Redis]:
    connection = runtime.client()
    connection.flushall()
    yield connection
    connection.close()


@pytest.fixture
def secret(runtime: Runtime) -> Iterator[Path]:
    """A file in the runtime's working directory, named relative to it as a model would name it."""
    assert runtime.proc is not None
    path = Path(f"/proc/{runtime.proc.pid}/cwd").resolve() / f".gearcam-secret-{uuid.uuid4().hex}"
    path.write_bytes(SECRET)
    yield path
    path.unlink(missing_ok=True)


def _external(name: str, location: str, size: int) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[size], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _reads_initializer(location: str) -> bytes:
    """y = the initializer w, whose bytes are in the file `location`."""
    out = helper.make_tensor_value_info("y", TensorProto.UINT8, [len(SECRET)])
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "reads", [], [out],
                              initializer=[_external("w", location, len(SECRET))])  # fmt: skip
    return model_bytes(graph, check=False)


def _reads_inside_a_loop(location: str) -> bytes:
    """The external tensor sits in a Constant inside a Loop's body, two levels down."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Constant", [], ["value"], value=_external("c", location, len(SECRET)))],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("value", TensorProto.UINT8, [len(SECRET)])],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "cond"], ["scan"], body=body)], "loop",
        [helper.make_tensor_value_info("n", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("scan", TensorProto.UINT8, [None, len(SECRET)])],
    )  # fmt: skip
    return model_bytes(graph, check=False)


def test_an_onnx_model_naming_a_file_is_refused_as_redisai_refuses_it(
    runtime: Runtime, client: redis.Redis, secret: Path
) -> None:
    for blob in (_reads_initializer(secret.name), _reads_inside_a_loop(secret.name)):
        assert error_of(client, "AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", blob) == ONNX_REFUSAL
        assert client.exists("m") == 0
    assert f"refused an ONNX model whose tensor names the file '{secret.name}'" in runtime.output()
    # a model that holds its own values still loads
    assert client.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model()) == b"OK"


def test_the_walk_finds_external_tensors_wherever_onnx_can_hold_them() -> None:
    assert external_data_location(_reads_initializer("w.bin")) == "w.bin"
    assert external_data_location(_reads_inside_a_loop("../up/there")) == "../up/there"
    indices = helper.make_tensor("i", TensorProto.INT64, [2], [0, 1])
    sparse = helper.make_sparse_tensor(_external("v", "values.bin", 2), indices, [4])
    graph = helper.make_graph([], "sparse", [], [helper.make_tensor_value_info("v", TensorProto.UINT8, [4])])
    graph.sparse_initializer.append(sparse)
    assert external_data_location(model_bytes(graph, check=False)) == "values.bin"
    function = helper.make_function("local", "f", ["x"], ["y"],
                                    [helper.make_node("Constant", [], ["y"], value=_external("k", "fn.bin", 1))],
                                    [helper.make_opsetid("", 13)])  # fmt: skip
    model = model_bytes(helper.make_graph([], "g", [], []), functions=[function], check=False)
    assert external_data_location(model) == "fn.bin"
    assert external_data_location(add_model()) is None
    with pytest.raises(ValueError):
        external_data_location(b"\xff\xff\xff")


needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)
needs_tf = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed (scripts/bootstrap --tf)"
)

READS = """
def bar(tensors: List[Tensor], keys: List[str], args: List[str]):
    return torch.from_file(args[0], False, 30, dtype=torch.uint8)
"""
WRITES = """
def keep(t: Tensor, path: str):
    if bool(t.sum() > 0):
        torch.save(t, path)

def bar(tensors: List[Tensor], keys: List[str], args: List[str]):
    keep(tensors[0], args[0])
    return tensors[0]
"""
PLAIN = """
def bar(tensors: List[Tensor], keys: List[str], args: List[str]):
    return tensors[0] + 1
"""


@needs_torch
def test_torchscript_that_reads_or_writes_files_is_refused(client: redis.Redis, secret: Path) -> None:
    for source, op in ((READS, "aten::from_file"), (WRITES, "aten::save")):
        reply = error_of(client, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", source)
        assert reply == f"{FILE_REFUSAL} ({op}); RedisAI would. Feed the data in as input tensors instead"
        assert client.exists("s") == 0
    assert client.execute_command("AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", PLAIN) == b"OK"

    from tests.runtime import torch_models

    written = secret.with_name(secret.name + ".pt")
    reply = error_of(
        client, "AI.MODELSTORE", "m", "TORCH", "CPU", "BLOB", torch_models.file_writing_model(written.name)
    )
    assert reply.startswith(FILE_REFUSAL) and "(aten::save)" in reply
    assert client.exists("m") == 0 and not written.exists()
    # every method is read, exported state methods included (a plain Python method on the loaded module)
    assert client.execute_command("AI.MODELSTORE", "m", "TORCH", "CPU", "BLOB", torch_models.stateful_model()) == b"OK"


def _tf_graph() -> bytes:
    """Two outputs: z, the bytes of the file named by the string placeholder p; y = x * 2."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        path = tf.compat.v1.placeholder(tf.string, name="p")
        tf.identity(tf.io.read_file(path), name="z")
        x = tf.compat.v1.placeholder(tf.float32, name="x")
        tf.identity(x * 2, name="y")
    return bytes(graph.as_graph_def().SerializeToString())


@needs_tf
def test_a_tf_graph_whose_outputs_read_a_file_is_refused(client: redis.Redis, secret: Path) -> None:
    blob = _tf_graph()
    reply = error_of(client, "AI.MODELSTORE", "m", "TF", "CPU", "INPUTS", 1, "p", "OUTPUTS", 1, "z", "BLOB", blob)
    assert reply == f"{FILE_REFUSAL} (ReadFile); RedisAI would. Feed the data in as input tensors instead"
    assert client.exists("m") == 0
    # the same graph asked only for y never runs ReadFile: it loads and runs
    assert client.execute_command("AI.MODELSTORE", "m", "TF", "CPU", "INPUTS", 1, "x", "OUTPUTS", 1, "y",
                                  "BLOB", blob) == b"OK"  # fmt: skip
    client.execute_command("AI.TENSORSET", "x", "FLOAT", 2, "VALUES", 1, 2)
    client.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "x", "OUTPUTS", 1, "out")
    assert client.execute_command("AI.TENSORGET", "out", "VALUES") == [b"2", b"4"]
