"""Uploading the classifier: AI.MODELSTORE's arguments, chunking, and refusals that change nothing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import redis

import tasks
from gearcam.config import PROJECT_ROOT, ModelsSettings
from gearcam.errors import ConfigError, OperatorError
from gearcam.models import load_manifest, verify_artifact
from gearcam.models.upload import StoreOptions, chunks, modelstore_args, server_chunk_size, store_model
from tests.conftest import free_port

MANIFEST = load_manifest()


def _flat(args: list[Any]) -> list[Any]:
    return [bytes(a) if isinstance(a, memoryview) else a for a in args]


def test_modelstore_takes_redisai_argument_order_with_batching_from_the_config() -> None:
    artifact = MANIFEST.get("lite0-onnx-int8")
    settings = ModelsSettings(batchsize=8, minbatchsize=2, minbatchtimeout=5, key="k")
    options = StoreOptions.from_settings(settings, artifact)
    args = _flat(modelstore_args(artifact, b"x" * 10, options, chunk_size=4))
    assert args == [
        "AI.MODELSTORE", "k", "ONNX", "CPU", "TAG", f"lite0-onnx-int8@{artifact.sha256[:12]}",
        "BATCHSIZE", 8, "MINBATCHSIZE", 2, "MINBATCHTIMEOUT", 5, "BLOB", b"xxxx", b"xxxx", b"xx",
    ]  # fmt: skip


def test_a_tf_graph_names_its_input_and_output_ops() -> None:
    artifact = MANIFEST.get("lite0-tf")
    args = modelstore_args(artifact, b"pb", StoreOptions("k", device="GPU:1"), chunk_size=1 << 20)
    assert _flat(args) == ["AI.MODELSTORE", "k", "TF", "GPU:1", "INPUTS", 1, "input", "OUTPUTS", 1, "logits",
                           "BLOB", b"pb"]  # fmt: skip


def test_inconsistent_batching_options_fail_before_anything_is_sent() -> None:
    artifact = MANIFEST.get("lite0-onnx")
    with pytest.raises(ConfigError, match="models.minbatchsize=2 needs models.batchsize > 0"):
        modelstore_args(artifact, b"", StoreOptions("k", minbatchsize=2), 10)
    with pytest.raises(ConfigError, match="models.minbatchtimeout=3 needs models.minbatchsize > 0"):
        modelstore_args(artifact, b"", StoreOptions("k", batchsize=4, minbatchtimeout=3), 10)
    with pytest.raises(ConfigError, match="MODEL_CHUNK_SIZE must be positive"):
        chunks(b"abc", 0)


def test_chunks_are_views_not_copies() -> None:
    blob = bytes(range(10))
    pieces = chunks(blob, 4)
    assert [bytes(p) for p in pieces] == [blob[0:4], blob[4:8], blob[8:10]]
    assert all(p.obj is blob for p in pieces)


def test_a_chunked_upload_stores_the_exact_file(r: redis.Redis) -> None:
    artifact = MANIFEST.get("lite0-tflite-int8")
    blob = verify_artifact(artifact)
    assert server_chunk_size(r, 123) > 0
    store_model(r, artifact, blob, StoreOptions("models:classifier", tag="t1"), chunk_size=1 << 20)
    stored = r.execute_command("AI.MODELGET", "models:classifier", "BLOB")
    stored = b"".join(stored) if isinstance(stored, list) else stored
    assert stored == blob
    meta = dict(zip(*[iter(r.execute_command("AI.MODELGET", "models:classifier", "META"))] * 2, strict=True))
    assert meta[b"backend"] == b"TFLITE" and meta[b"tag"] == b"t1"


def test_a_refused_upload_leaves_the_stored_model_untouched(r: redis.Redis) -> None:
    good = MANIFEST.get("lite0-onnx-int8")
    store_model(r, good, verify_artifact(good), StoreOptions("models:classifier", tag="good"), 1 << 20)
    with pytest.raises(OperatorError, match=r"AI.MODELSTORE models:classifier refused efficientnet_lite0\.onnx"):
        store_model(r, MANIFEST.get("lite0-onnx"), b"not an onnx file", StoreOptions("models:classifier", tag="bad"),
                    1 << 20)  # fmt: skip
    meta = r.execute_command("AI.MODELGET", "models:classifier", "META")
    assert meta[meta.index(b"tag") + 1] == b"good"


def _upload(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gearcam.models", "upload", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_upload_command_stores_the_named_model(r: redis.Redis, server_url: str) -> None:
    result = _upload("--model", "lite0-onnx-int8", "--redis-url", server_url)
    assert result.returncode == 0, result.stderr
    assert "stored lite0-onnx-int8 (ONNX, int8) at models:classifier" in result.stdout
    assert r.execute_command("AI.MODELGET", "models:classifier", "META")[1] == b"ONNX"


def test_the_upload_command_names_an_unknown_model_and_an_unreachable_redis() -> None:
    result = _upload("--model", "resnet", "--redis-url", "redis://127.0.0.1:1")
    assert result.returncode == 1 and "no model 'resnet' in the manifest; choose one of" in result.stderr
    url = f"redis://127.0.0.1:{free_port()}"
    result = _upload("--model", "lite0-onnx", "--redis-url", url)
    assert result.returncode == 1 and f"cannot reach {url}" in result.stderr and "invoke up" in result.stderr


def test_the_invoke_tasks_run_the_models_module() -> None:
    assert tasks.upload_commands("lite0-tf", "redis://:pw@jetson:6379") == [
        f"{sys.executable} -m gearcam.models upload --model lite0-tf --redis-url redis://:pw@jetson:6379"
    ]
    assert tasks.models_commands(check=True, only="lite0-onnx", python="py") == [
        "py -m gearcam.models --check --only lite0-onnx"
    ]
    assert tasks.models_commands(python="/x/python") == ["/x/python -m gearcam.models"]
