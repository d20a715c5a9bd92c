"""AI.MODELSTORE / MODELGET / MODELDEL / MODELEXECUTE (and the deprecated forms) against RedisAI 1.2."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.runtime.conftest import error_of, running_stack
from tests.runtime.models import add_model, identity_string_model, linear_model

ADD = add_model()


@pytest.fixture
def model(r: redis.Redis) -> bytes:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "TAG", "v1", "BLOB", ADD)
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    r.execute_command("AI.TENSORSET", "b", "FLOAT", 1, 2, "VALUES", 3, 4)
    return b"m"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("m", "ONNX", "CPU", "BLOB"), "ERR wrong number of arguments for 'AI.MODELSTORE' command"),
        (("m", "CAFFE", "CPU", "BLOB", b"x"), "ERR unsupported backend"),
        (("m", "ONNX", "TPU", "BLOB", b"x"), "ERR Invalid DEVICE"),
        (("m", "ONNX", "CPU", "BATCHSIZE", "x", "BLOB", b"x"), "ERR Invalid argument for BATCHSIZE"),
        (("m", "ONNX", "CPU", "BATCHSIZE", 2, "MINBATCHSIZE", "x", "BLOB", b"x"), "ERR Invalid argument for MINBATCHSIZE"),
        (("m", "ONNX", "CPU", "BATCHSIZE", 2, "MINBATCHSIZE", 1, "MINBATCHTIMEOUT", "x", "BLOB", b"x"),
         "ERR Invalid argument for MINBATCHTIMEOUT"),
        (("m", "ONNX", "CPU", "MINBATCHSIZE", 2, "BLOB", b"x"), "ERR MINBATCHSIZE specified without BATCHSIZE"),
        (("m", "ONNX", "CPU", "BATCHSIZE", 2, "MINBATCHTIMEOUT", 5, "BLOB", b"x"),
         "ERR MINBATCHTIMEOUT specified without MINBATCHSIZE"),
        (("m", "ONNX", "CPU", "TAG", "t", "BATCHSIZE", 2), "ERR Insufficient arguments, missing model BLOB"),
        (("m", "ONNX", "CPU", "INPUTS", 1, "a", "BLOB", b"x"), "ERR INPUTS argument should not be specified for this backend"),
        (("m", "ONNX", "CPU", "BLOOB", b"x"), "ERR Invalid argument, expected BLOB"),
        (("m", "TF", "CPU", "BLOB", b"x"), "ERR INPUTS not specified for TF"),
        (("m", "TF", "CPU", "INPUTS", "x", "a", "BLOB", b"x"), "ERR Invalid argument for input_count"),
        (("m", "TF", "CPU", "INPUTS", 2, "a"), "ERR number of model inputs does not match the number of given arguments"),
        (("m", "TF", "CPU", "INPUTS", 1, "a", "BLOB", b"x"), "ERR OUTPUTS not specified for TF"),
        (("m", "TF", "CPU", "INPUTS", 1, "a", "OUTPUTS", "x", "b", "BLOB", b"x"), "ERR Invalid argument for output_count"),
        (("m", "TF", "CPU", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "mul"), "ERR Invalid argument, expected BLOB"),
        (("m", "TORCH", "CPU", "BATCHSIZE", 2, "NOT_BLOB"), "ERR Invalid argument, expected BLOB"),
        (("m", "TORCH", "CPU::", "BLOB", b"x"), "ERR Invalid DEVICE"),
        (("m", "TORCH", "CPU:123456", "BLOB", b"x"), "ERR Invalid DEVICE"),
        (("m", "ONNX", "CPU", "BLOB", b"not a model"), "No graph was found in the protobuf."),
        (("m", "TFLITE", "CPU", "BLOB", b"not a model"), "Failed to load model from buffer"),
        (("m", "ONNX", "GPU", "BLOB", ADD), "ERR GPU requested but ONNX couldn't find CUDA"),
    ],
)  # fmt: skip
def test_modelstore_errors(r: redis.Redis, args: tuple[object, ...], message: str) -> None:
    assert error_of(r, "AI.MODELSTORE", *args) == message


def test_a_model_that_does_not_load_leaves_the_stored_one_untouched(r: redis.Redis, model: bytes) -> None:
    assert error_of(r, "AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", b"garbage") == "No graph was found in the protobuf."
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c") == b"OK"
    assert r.execute_command("AI.MODELGET", "m", "BLOB") == ADD


def test_a_blob_may_come_in_chunks(r: redis.Redis) -> None:
    half = len(ADD) // 2
    assert r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", ADD[:half], ADD[half:]) == b"OK"
    assert r.execute_command("AI.MODELGET", "m", "BLOB") == ADD


def test_modelget_layouts(r: redis.Redis, model: bytes) -> None:
    meta = r.execute_command("AI.MODELGET", "m", "META")
    assert meta == [b"backend", b"ONNX", b"device", b"CPU", b"tag", b"v1", b"batchsize", 0, b"minbatchsize", 0,
                    b"inputs", [b"a", b"b"], b"outputs", [b"c"], b"minbatchtimeout", 0]  # fmt: skip
    assert r.execute_command("AI.MODELGET", "m") == [*meta, b"blob", ADD]
    assert r.execute_command("AI.MODELGET", "m", "META", "BLOB") == [*meta, b"blob", ADD]
    assert r.execute_command("AI.MODELGET", "m", "BLOB") == ADD


def test_modelget_splits_a_blob_larger_than_the_chunk_size_like_redisai(r: redis.Redis, model: bytes) -> None:
    size = len(ADD) // 3
    r.execute_command("AI.CONFIG", "MODEL_CHUNK_SIZE", size)
    try:
        chunks = r.execute_command("AI.MODELGET", "m", "BLOB")
    finally:
        r.execute_command("AI.CONFIG", "MODEL_CHUNK_SIZE", 511 * 1024 * 1024)
    assert len(chunks) == len(ADD) // size + 1
    assert b"".join(chunks) == ADD


def test_batching_options_are_stored(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "cpu", "BATCHSIZE", 8, "MINBATCHSIZE", 2, "MINBATCHTIMEOUT", 5,
                      "BLOB", ADD)  # fmt: skip
    meta = r.execute_command("AI.MODELGET", "m", "META")
    assert meta[2:4] == [b"device", b"cpu"]
    assert meta[6:10] == [b"batchsize", 8, b"minbatchsize", 2] and meta[14:16] == [b"minbatchtimeout", 5]


def test_modeldel_and_its_errors(r: redis.Redis, model: bytes) -> None:
    assert r.type("m") == b"AI__MODEL"
    assert r.execute_command("AI.MODELDEL", "m") == b"OK"
    assert error_of(r, "AI.MODELDEL", "m") == "ERR model key is empty"
    assert error_of(r, "AI.MODELGET", "m") == "ERR model key is empty"
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1)
    assert error_of(r, "AI.MODELDEL", "t") == "WRONGTYPE Operation against a key holding the wrong kind of value"


def test_modelexecute_writes_its_outputs(r: redis.Redis, model: bytes) -> None:
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c", "TIMEOUT", 1000) == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"4", b"6"]
    assert r.type("c") == b"AI_TENSOR"


def test_pipelined_commands_after_an_execution_see_its_outputs(
    r: redis.Redis, direct: redis.Redis, model: bytes
) -> None:
    """The outputs' write does not hold up the next command, but everything after it sees the outputs."""
    pipe = r.pipeline(transaction=False)
    for n in range(1, 6):
        pipe.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", n, n)
        pipe.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c")
        pipe.execute_command("AI.TENSORGET", "c", "VALUES")
        pipe.exists("c")
        pipe.strlen("c")
    replies = pipe.execute()
    for n in range(1, 6):
        tensorset, executed, values, exists, size = replies[5 * (n - 1) : 5 * n]
        assert (tensorset, executed, exists) == (b"OK", b"OK", 1)
        assert values == [str(n + 3).encode(), str(n + 4).encode()]
        assert size > 8  # the stored tensor: marker, header and two floats
    stored = np.frombuffer(direct.get("c")[-8:], dtype=np.float32)
    assert stored.tolist() == [8.0, 9.0]


def test_a_refused_output_write_answers_the_execution_and_keeps_the_pipeline_in_order(
    r: redis.Redis, model: bytes
) -> None:
    r.rpush("taken", "x")
    pipe = r.pipeline(transaction=False)
    pipe.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "taken")
    pipe.execute_command("AI.TENSORGET", "taken", "VALUES")
    pipe.lrange("taken", 0, -1)
    pipe.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c")
    pipe.execute_command("AI.TENSORGET", "c", "VALUES")
    refused, read, listed, executed, values = pipe.execute(raise_on_error=False)
    assert str(refused).startswith("WRONGTYPE")
    assert str(read).startswith("WRONGTYPE")
    assert listed == [b"x"]
    assert (executed, values) == (b"OK", [b"4", b"6"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("m", "INPUTS", 1, "a", "OUTPUTS", 1), "ERR wrong number of arguments for 'AI.MODELEXECUTE' command"),
        (("nope", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c"), "ERR model key is empty"),
        (("m", "INPUT", 2, "a", "b", "OUTPUTS", 1, "c"), "ERR INPUTS not specified"),
        (("m", "INPUTS", "x", "a", "b", "OUTPUTS", 1, "c"), "ERR Invalid argument for input_count"),
        (("m", "INPUTS", 0, "a", "b", "OUTPUTS", 1, "c"), "ERR Input count must be a positive integer"),
        (("m", "INPUTS", 1, "a", "OUTPUTS", 1, "c", "d"), "Number of keys given as INPUTS here does not match model definition"),
        (("m", "INPUTS", 2, "a", "OUTPUTS", 1, "c", "d"),
         "ERR number of input keys to AI.MODELEXECUTE command does not match the number of given arguments"),
        (("m", "INPUTS", 2, "a", "b", "OUT", 1, "c"), "ERR OUTPUTS not specified"),
        (("m", "INPUTS", 2, "a", "b", "OUTPUTS", "x", "c"), "ERR Invalid argument for output_count"),
        (("m", "INPUTS", 2, "a", "b", "OUTPUTS", -1, "c"), "ERR Output count must be a positive integer"),
        (("m", "INPUTS", 2, "a", "b", "OUTPUTS", 2, "c", "d"), "Number of keys given as OUTPUTS here does not match model definition"),
        (("m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c", "junk"), "Invalid argument: junk"),
        (("m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c", "TIMEOUT"), "ERR No value provided for TIMEOUT"),
        (("m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c", "TIMEOUT", 0), "ERR Invalid value for TIMEOUT"),
        (("m", "INPUTS", 2, "a", "zz", "OUTPUTS", 1, "c"), "ERR tensor key is empty or in a different shard"),
        (("m", "INPUTS", 2, "a", "plain", "OUTPUTS", 1, "c"), "WRONGTYPE Operation against a key holding the wrong kind of value"),
    ],
)  # fmt: skip
def test_modelexecute_errors(r: redis.Redis, model: bytes, args: tuple[object, ...], message: str) -> None:
    r.set("plain", "x")
    assert error_of(r, "AI.MODELEXECUTE", *args) == message


def test_a_wrong_input_shape_gets_the_engine_error_and_the_runtime_keeps_serving(r: redis.Redis, model: bytes) -> None:
    r.execute_command("AI.TENSORSET", "wide", "FLOAT", 1, 3, "VALUES", 1, 2, 3)
    message = error_of(r, "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "wide", "OUTPUTS", 1, "c")
    # ONNX Runtime's lines, spaced as Redis spaces RedisAI's replies, in RedisAI 1.2.7's wording.
    assert message == (
        "Got invalid dimensions for input: b for the following indices  index: 1 Got: 3 Expected: 2  "
        "Please fix either the inputs or the model."
    )
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c") == b"OK"
    info = r.execute_command("AI.INFO", "m")
    assert info[14:] == [b"calls", 2, b"errors", 1]


def test_the_deprecated_modelset_and_modelrun(r: redis.Redis) -> None:
    assert r.execute_command("AI.MODELSET", "m", "ONNX", "CPU", "INPUTS", "x", "OUTPUTS", "y", "BLOB", ADD) == b"OK"
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 1)
    assert r.execute_command("AI.MODELRUN", "m", "INPUTS", "a", "a", "OUTPUTS", "c") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"2"]
    assert error_of(r, "AI.MODELRUN", "m", "INPUTS", "a", "OUTPUTS", "c") == (
        "Number of keys given as INPUTS here does not match model definition"
    )
    assert error_of(r, "AI.MODELSET", "m", "TORCH", "BLOB", b"x") == "ERR Invalid DEVICE"
    assert error_of(r, "AI.MODELSET", "m", "TORCH", "MINBATCHTIMEOUT", "BLOB", b"x") == "ERR Invalid DEVICE"
    assert error_of(r, "AI.MODELSET", "m", "TORCH") == "ERR wrong number of arguments for 'AI.MODELSET' command"
    # RedisAI 1.2.7's order: AI.MODELRUN counts its arguments before it looks for the model.
    assert error_of(r, "AI.MODELRUN", "m", "INPUTS", "a", "OUTPUTS") == (
        "ERR wrong number of arguments for 'AI.MODELRUN' command"
    )
    # TF lists: none at all, or something else where INPUTS must come first.
    assert error_of(r, "AI.MODELSET", "t", "TF", "CPU", "BLOB", b"x") == (
        "ERR Insufficient arguments, INPUTS and OUTPUTS not specified"
    )
    assert error_of(r, "AI.MODELSET", "t", "TF", "CPU", "not_inputs", "BLOB", b"x") == "ERR INPUTS not specified"


@pytest.mark.parametrize(
    "command",
    [
        ("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c"),
        ("AI.MODELRUN", "nothing", "INPUTS", "a"),  # not even its arguments are read
        ("AI.DAGEXECUTE", "|>", "AI.TENSORGET", "a"),
        ("AI.SCRIPTEXECUTE", "s", "f", "KEYS", 1, "a"),
    ],
)
def test_execution_inside_multi_is_queued_and_answers_redisai_error_at_exec(
    r: redis.Redis, model: bytes, command: tuple[object, ...]
) -> None:
    """As on RedisAI: QUEUED, then its place in EXEC's reply is the error, and the rest commits."""
    pipe = r.pipeline(transaction=True)
    pipe.set("x", 1)
    pipe.execute_command(*command)
    pipe.get("x")
    first, refused, last = pipe.execute(raise_on_error=False)
    assert (first, last) == (True, b"1")
    assert isinstance(refused, redis.ResponseError)
    assert str(refused) == "Cannot run RedisAI command within a transaction or a LUA script"
    assert r.exists("c") == 0


def test_modelscan_lists_models_with_their_tags(r: redis.Redis, model: bytes) -> None:
    r.execute_command("AI.MODELSTORE", "m2", "ONNX", "CPU", "BLOB", ADD)
    assert sorted(r.execute_command("AI._MODELSCAN")) == [[b"m", b"v1"], [b"m2", b""]]


def test_a_model_replaced_behind_the_runtime_is_noticed(r: redis.Redis, direct: redis.Redis, model: bytes) -> None:
    r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c")
    blob, weights, bias = linear_model(features=2, classes=2)
    r.execute_command("AI.MODELSTORE", "other", "ONNX", "CPU", "BLOB", blob)
    assert direct.copy("other", "m", replace=True)  # a write the runtime does not see
    assert error_of(r, "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c") == (
        "Number of keys given as INPUTS here does not match model definition"
    )
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 1, "a", "OUTPUTS", 1, "y") == b"OK"
    x = np.array([[1, 2]], np.float32)
    logits = x @ weights + bias
    expected = np.exp(logits) / np.exp(logits).sum()
    got = np.frombuffer(r.execute_command("AI.TENSORGET", "y", "BLOB"), np.float32)
    np.testing.assert_allclose(got, expected.ravel(), rtol=1e-5)
    direct.delete("m")
    assert error_of(r, "AI.MODELEXECUTE", "m", "INPUTS", 1, "a", "OUTPUTS", 1, "y") == "ERR model key is empty"


def test_an_onnx_model_with_string_tensors_runs_alone_and_in_a_dag(r: redis.Redis) -> None:
    """RedisAI's test_onnx_string_tensors on its identity_string.onnx, rebuilt."""
    r.execute_command("AI.MODELSTORE", "ms", "ONNX", "CPU", "BLOB", identity_string_model())
    r.execute_command("AI.TENSORSET", "in", "STRING", 2, 2, "BLOB", b"input11\0input12\0input21\0input22\0")
    assert r.execute_command("AI.MODELEXECUTE", "ms", "INPUTS", 1, "in", "OUTPUTS", 1, "out") == b"OK"
    expected = [b"dtype", b"STRING", b"shape", [2, 2], b"values", [b"input11", b"input12", b"input21", b"input22"]]
    assert r.execute_command("AI.TENSORGET", "out", "META", "VALUES") == expected
    dag = r.execute_command("AI.DAGEXECUTE", "LOAD", 1, "in", "|>", "AI.MODELEXECUTE", "ms", "INPUTS", 1, "in",
                            "OUTPUTS", 1, "o", "|>", "AI.TENSORGET", "o", "META", "VALUES")  # fmt: skip
    assert dag == [b"OK", expected]


def test_string_tensors_batch_through_an_onnx_model(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "ms", "ONNX", "CPU", "BATCHSIZE", 2, "MINBATCHSIZE", 2,
                      "BLOB", identity_string_model())  # fmt: skip
    r.execute_command("AI.TENSORSET", "first", "STRING", 1, 2, "VALUES", "this is\0", "the first batch\0")
    r.execute_command("AI.TENSORSET", "second", "STRING", 1, 2, "VALUES", "that is", "the second batch")
    other = threading.Thread(
        target=r.execute_command, args=("AI.MODELEXECUTE", "ms", "INPUTS", 1, "first", "OUTPUTS", 1, "o1")
    )
    other.start()
    r.execute_command("AI.MODELEXECUTE", "ms", "INPUTS", 1, "second", "OUTPUTS", 1, "o2")
    other.join()
    assert r.execute_command("AI.TENSORGET", "o1", "VALUES") == [b"this is", b"the first batch"]
    assert r.execute_command("AI.TENSORGET", "o2", "VALUES") == [b"that is", b"the second batch"]


def _engines_reused(r: redis.Redis) -> int:
    return int(r.info("MODULES")["ai_engines_reused"])


def test_storing_the_same_blob_again_reuses_its_engine_session(r: redis.Redis) -> None:
    """DEL then STORE of one blob (re-uploads; RedisAI's 20-client test) skips the engine load."""
    blob = add_model(("reused", 2))  # a blob no other test stores (sessions are reused across keys for 10 s)
    before = _engines_reused(r)
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", blob)
    r.execute_command("AI.MODELDEL", "m")
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", blob)
    r.execute_command("AI.MODELSTORE", "other", "ONNX", "CPU", "TAG", "t", "BLOB", blob)
    assert _engines_reused(r) == before + 2
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    for key in ("m", "other"):
        assert r.execute_command("AI.MODELEXECUTE", key, "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c") == b"OK"
        assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]
    # Another blob, or the same one on another device, loads its own session.
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model(("reused", 3)))
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU:0", "BLOB", blob)
    assert _engines_reused(r) == before + 2


def test_a_modeldel_answered_before_its_del_event_does_not_release_the_next_stores_session(tmp_path: Path) -> None:
    """A MODELDEL's `del` event reaches the runtime on its subscription, after the reply: a MODELSTORE of the
    same key pipelined behind it may have loaded its session first. That event is the runtime's own, not a
    foreign DEL, so the new session stays (it was released, and reloaded at the next run, before)."""
    blob = add_model(("redel", 2))
    with running_stack(tmp_path) as (_, runtime):
        client = runtime.client()
        try:
            for _ in range(40):
                pipe = client.pipeline(transaction=False)
                pipe.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", blob)
                pipe.execute_command("AI.MODELDEL", "m")
                pipe.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", blob)
                assert pipe.execute() == [b"OK", b"OK", b"OK"]
            client.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
            client.set("fence", 1)  # a relayed write: the run below waits until the key events before it arrived
            assert client.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c") == b"OK"
            assert client.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]
            # A DEL from someone else still releases it.
            client.delete("m")
            client.set("fence", 2)
            assert "ERR model key is empty" in error_of(client, "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a",
                                                        "OUTPUTS", 1, "c")  # fmt: skip
        finally:
            client.close()
        log = runtime.output()
    assert "loaded model" not in log  # the session stored was the one that ran
    assert log.count("released the engine session") == 1 and "key del in db 0" in log


def test_modelscan_forgets_models_flushed_without_key_events(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "gone", "ONNX", "CPU", "BLOB", ADD)
    r.flushall()  # no per-key events: RedisAI frees the model and its entry all the same
    r.execute_command("AI.MODELSTORE", "kept", "ONNX", "CPU", "TAG", "t", "BLOB", ADD)
    assert r.execute_command("AI._MODELSCAN") == [[b"kept", b"t"]]
    assert error_of(r, "AI.INFO", "gone") == "ERR cannot find run info for key"
