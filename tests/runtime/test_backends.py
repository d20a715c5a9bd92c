"""The TFLITE, TF and TORCH backends with tiny models from tests/fixtures (make_fixtures.py builds them)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.runtime.conftest import Backing, error_of, runtime_in_front
from tests.runtime.models import FIXTURES


def _has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def test_a_tflite_model_runs_and_reports_its_tensor_names(r: redis.Redis) -> None:
    blob = (FIXTURES / "add.tflite").read_bytes()
    assert r.execute_command("AI.MODELSTORE", "m", "TFLITE", "CPU", "BLOB", blob) == b"OK"
    meta = r.execute_command("AI.MODELGET", "m", "META")
    assert meta[0:2] == [b"backend", b"TFLITE"] and len(meta[11]) == 2 and len(meta[13]) == 1
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    r.execute_command("AI.TENSORSET", "b", "FLOAT", 1, 2, "VALUES", 10, 20)
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"11", b"22"]


def test_a_tflite_interpreter_is_resized_for_each_batch(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "TFLITE", "CPU", "BLOB", (FIXTURES / "add.tflite").read_bytes())
    for batch in (1, 3, 2):
        x = np.arange(batch * 2, dtype=np.float32).reshape(batch, 2)
        r.execute_command("AI.TENSORSET", "x", "FLOAT", batch, 2, "BLOB", x.tobytes())
        r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "x", "x", "OUTPUTS", 1, "y")
        got = np.frombuffer(r.execute_command("AI.TENSORGET", "y", "BLOB"), np.float32).reshape(batch, 2)
        np.testing.assert_array_equal(got, 2 * x)


def test_a_tflite_dtype_mismatch_gets_redisai_error(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "TFLITE", "CPU", "BLOB", (FIXTURES / "add.tflite").read_bytes())
    r.execute_command("AI.TENSORSET", "i", "INT32", 1, 2, "VALUES", 1, 2)
    assert error_of(r, "AI.MODELEXECUTE", "m", "INPUTS", 2, "i", "i", "OUTPUTS", 1, "o") == (
        "Input tensor type doesn't match the type expected by the model definition"
    )


def test_tflite_on_gpu_answers_redisai_cuda_error(r: redis.Redis) -> None:
    blob = (FIXTURES / "add.tflite").read_bytes()
    assert error_of(r, "AI.MODELSTORE", "m", "TFLITE", "GPU", "BLOB", blob) == (
        "ERR GPU requested but TFLITE couldn't find CUDA"
    )


@pytest.mark.skipif(not _has("tensorflow"), reason="TensorFlow is not installed (scripts/bootstrap --tf)")
def test_a_frozen_tf_graph_runs_with_named_ops(r: redis.Redis) -> None:
    blob = (FIXTURES / "graph_mul.pb").read_bytes()
    assert r.execute_command("AI.MODELSTORE", "m", "TF", "CPU", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "mul",
                             "BLOB", blob) == b"OK"  # fmt: skip
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 2, 3)
    r.execute_command("AI.TENSORSET", "b", "FLOAT", 2, "VALUES", 4, 5)
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"8", b"15"]
    assert r.execute_command("AI.MODELGET", "m", "META")[10:14] == [b"inputs", [b"a", b"b"], b"outputs", [b"mul"]]
    assert error_of(r, "AI.MODELSTORE", "m2", "TF", "CPU", "INPUTS", 1, "x", "OUTPUTS", 1, "mul", "BLOB", blob) == (
        'ERR Input node named "x" not found in TF graph.'
    )
    assert error_of(r, "AI.MODELSTORE", "m2", "TF", "CPU", "INPUTS", 1, "a", "OUTPUTS", 1, "y", "BLOB", blob) == (
        'ERR Output node named "y" not found in TF graph'
    )
    corrupt = b"\x0a\xff\xff\xff\xff\x0f" + blob[:40]  # a length prefix past the end: not a GraphDef
    store_corrupt = ("AI.MODELSTORE", "m3", "TF", "CPU", "INPUTS", 1, "a", "OUTPUTS", 1, "mul", "BLOB", corrupt)
    assert error_of(r, *store_corrupt) == "Invalid GraphDef"  # RedisAI's words, nothing more


@pytest.mark.skipif(not _has("tensorflow"), reason="TensorFlow is not installed (scripts/bootstrap --tf)")
def test_a_tf_run_error_keeps_tensorflow_lines_as_spaced_text(r: redis.Redis) -> None:
    blob = (FIXTURES / "graph_mul.pb").read_bytes()
    r.execute_command("AI.MODELSTORE", "m", "TF", "CPU", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "mul", "BLOB", blob)
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 2, 3)
    r.execute_command("AI.TENSORSET", "b", "FLOAT", 3, "VALUES", 4, 5, 6)
    message = error_of(r, "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c")
    # RedisAI's reply: TensorFlow's text with each line break made a space (the tab stays).
    assert "Incompatible shapes: [2] vs. [3] \t [[{{node mul}}]]" in message
    assert "\n" not in message


def _reshaping_graph() -> bytes:
    """y = reshape(x, [-1]) * 2, x a float placeholder declared (None, 4)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=(None, 4), name="x")
        tf.identity(tf.reshape(x, [-1]) * 2, name="y")
    return bytes(graph.as_graph_def().SerializeToString())


@pytest.mark.skipif(not _has("tensorflow"), reason="TensorFlow is not installed (scripts/bootstrap --tf)")
def test_a_tf_feed_is_checked_by_the_graph_not_by_the_placeholders_declared_shape(r: redis.Redis) -> None:
    """As RedisAI's C call: RedisAI's own graph_v2.pb test feeds [1, 1, 28, 28] to a (None, 28, 28) input."""
    r.execute_command(
        "AI.MODELSTORE", "m", "TF", "CPU", "INPUTS", 1, "x", "OUTPUTS", 1, "y", "BLOB", _reshaping_graph()
    )
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 1, 4, "VALUES", 1, 2, 3, 4)
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "a", "OUTPUTS", 1, "b") == b"OK"
    assert r.execute_command("AI.TENSORGET", "b", "VALUES") == [b"2", b"4", b"6", b"8"]
    # a dtype the placeholder does not take is TensorFlow's error, not a silent conversion
    r.execute_command("AI.TENSORSET", "i", "INT32", 1, 4, "VALUES", 1, 2, 3, 4)
    assert "Type mismatch: actual int32 vs. expect float" in error_of(
        r, "AI.MODELEXECUTE", "m", "INPUTS", 1, "i", "OUTPUTS", 1, "b"
    )


@pytest.fixture
def without_tensorflow(backing: Backing, tmp_path: Path) -> Iterator[redis.Redis]:
    """A runtime in which `import tensorflow` fails, as on a machine without it."""
    hidden = tmp_path / "hide" / "tensorflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named tensorflow')\n")
    with runtime_in_front(backing, env={"PYTHONPATH": str(hidden.parent)}) as runtime:
        yield redis.Redis(port=runtime.port, protocol=2)


def test_a_missing_engine_names_the_package_to_install(without_tensorflow: redis.Redis) -> None:
    r = without_tensorflow
    message = error_of(r, "AI.MODELSTORE", "m", "TF", "CPU", "INPUTS", 1, "a", "OUTPUTS", 1, "b", "BLOB", b"x")
    assert message.startswith("ERR Could not load backend")
    assert "tensorflow" in message and "requirements-tf.txt" in message


@pytest.mark.skipif(not _has("torch"), reason="PyTorch is not installed (scripts/bootstrap --torch)")
def test_a_torchscript_model_runs(r: redis.Redis) -> None:
    assert r.execute_command("AI.MODELSTORE", "m", "TORCH", "CPU", "BLOB", (FIXTURES / "add.pt").read_bytes()) == b"OK"
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 1, 2)
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]
    assert r.execute_command("AI.MODELGET", "m", "META")[10:12] == [b"inputs", [b"a", b"b"]]


@pytest.mark.skipif(not _has("torch"), reason="PyTorch is not installed (scripts/bootstrap --torch)")
def test_torchscript_scripts_store_get_and_execute(r: redis.Redis) -> None:
    source = "def double(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0] * 2\n"
    assert r.execute_command("AI.SCRIPTSTORE", "s", "CPU", "TAG", "t1", "ENTRY_POINTS", 1, "double",
                             "SOURCE", source) == b"OK"  # fmt: skip
    assert r.execute_command("AI.SCRIPTGET", "s", "META") == [b"device", b"CPU", b"tag", b"t1",
                                                                b"Entry Points", [b"double"]]  # fmt: skip
    assert r.execute_command("AI.SCRIPTGET", "s", "SOURCE") == source.encode()
    assert r.type("s") == b"AI_SCRIPT"
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 1, 5)
    assert r.execute_command("AI.SCRIPTEXECUTE", "s", "double", "INPUTS", 1, "a", "OUTPUTS", 1, "b") == b"OK"
    assert r.execute_command("AI.TENSORGET", "b", "VALUES") == [b"2", b"10"]
    assert r.execute_command("AI.INFO", "s")[:4] == [b"key", b"s", b"type", b"SCRIPT"]
    assert r.execute_command("AI.INFO", "s")[12:14] == [b"samples", -1]
    assert error_of(r, "AI.SCRIPTEXECUTE", "s", "double", "ARGS", 1, "x") == (
        "ERR KEYS or INPUTS scope must be provided first for AI.SCRIPTEXECUTE command"
    )
    assert error_of(r, "AI.SCRIPTSTORE", "s2", "CPU", "NO_ENTRY_POINTS", 1, "double", "SOURCE", source) == (
        "ERR Insufficient arguments, missing script entry points"
    )
    assert error_of(r, "AI.SCRIPTSTORE", "s2", "CPU", "ENTRY_POINTS", 1, "nope", "SOURCE", source) == (
        "Function nope does not exist in the given script."
    )
    assert r.execute_command("AI.SCRIPTDEL", "s") == b"OK"
    assert error_of(r, "AI.SCRIPTGET", "s") == "ERR script key is empty"
