"""The committed artifacts are the files the manifest describes, and bad files are refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gearcam.errors import CallerError
from gearcam.models import MODELS_DIR, ModelFileError, check_backend, load_manifest, read_labels, verify_artifact
from gearcam.models.graphdef import read_graph
from gearcam.models.manifest import Artifact, Manifest, sha256_bytes
from gearcam.models.tflite_ops import TARGET_RUNTIME, min_runtime, read_requirements, version_key

MANIFEST = load_manifest()


@pytest.mark.parametrize("artifact", MANIFEST.artifacts, ids=MANIFEST.names())
def test_every_committed_file_matches_its_manifest_sha256(artifact: Artifact) -> None:
    blob = verify_artifact(artifact)
    assert sha256_bytes(blob) == artifact.sha256 and len(blob) == artifact.size


def test_the_manifest_covers_every_backend_and_both_precisions() -> None:
    pairs = {(a.backend, a.precision) for a in MANIFEST.artifacts}
    assert {"ONNX", "TFLITE", "TF", "TORCH"} == {backend for backend, _ in pairs}
    assert ("ONNX", "int8") in pairs and ("TFLITE", "int8") in pairs


@pytest.mark.parametrize("artifact", MANIFEST.artifacts, ids=MANIFEST.names())
def test_every_artifact_shares_one_input_contract(artifact: Artifact) -> None:
    [spec] = artifact.inputs
    assert (spec.shape, spec.dtype, spec.layout) == ([-1, 224, 224, 3], "float32", "NHWC")
    [out] = artifact.outputs
    assert out.shape == [-1, 1000]
    pre = artifact.preprocessing
    assert (pre.resize_shorter, pre.center_crop, pre.mean, pre.scale) == (256, 224, 127.0, 128.0)
    assert artifact.source_sha256 == MANIFEST.source["sha256"] and artifact.exporters


def test_what_deployments_load_stays_lean() -> None:
    assert sum(a.size for a in MANIFEST.artifacts) <= 100 * 1024 * 1024


def test_the_labels_are_the_1000_imagenet_classes() -> None:
    labels = read_labels(MANIFEST)
    assert len(labels) == 1000 and len(set(labels)) > 990
    assert "tabby" in labels[281].lower() and "espresso" in labels[967].lower()


@pytest.mark.parametrize("artifact", [a for a in MANIFEST.artifacts if a.backend == "TFLITE"], ids=lambda a: a.name)
def test_tflite_op_versions_read_from_the_flatbuffer_match_the_manifest(artifact: Artifact) -> None:
    needs = read_requirements(verify_artifact(artifact), artifact.file)
    assert needs.ops == artifact.requires["tflite_ops"]
    assert needs.min_runtime == artifact.requires["tflite_min_runtime"]
    # RedisAI 1.2.7 links TFLite 2.0.0: every op version must be one it knows.
    assert version_key(needs.min_runtime) <= version_key(TARGET_RUNTIME)


def test_an_op_version_newer_than_the_table_is_reported_unknown() -> None:
    assert min_runtime({"CONV_2D": 1}) == "1.5.0"
    assert min_runtime({"CONV_2D": 5, "ADD": 1}) == "2.4.0"
    assert min_runtime({"CONV_2D": 99}) == "unknown"


def test_the_tf_graph_has_a_placeholder_input_and_a_named_output_op() -> None:
    [artifact] = [a for a in MANIFEST.artifacts if a.backend == "TF"]
    graph = read_graph(verify_artifact(artifact), artifact.file)
    assert graph.op_of(artifact.input_names[0]) == "Placeholder"
    assert graph.op_of(artifact.output_names[0]) == artifact.requires["tf_output_op"]
    assert graph.ops == artifact.requires["tf_ops"]


def _copy(tmp_path: Path, manifest: Manifest) -> Path:
    for artifact in manifest.artifacts:
        if artifact.precision == "int8":
            shutil.copy(MODELS_DIR / artifact.file, tmp_path / artifact.file)
    return tmp_path


def test_a_corrupt_file_is_refused_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    artifact = MANIFEST.get("lite0-onnx-int8")
    models = _copy(tmp_path, MANIFEST)
    data = bytearray((models / artifact.file).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / artifact.file).write_bytes(bytes(data))
    with pytest.raises(
        ModelFileError, match=r"efficientnet_lite0_int8\.onnx does not match the manifest.*git checkout"
    ):
        verify_artifact(artifact, models)


def test_a_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"efficientnet_lite0\.tflite for 'lite0-tflite' is missing"):
        verify_artifact(MANIFEST.get("lite0-tflite"), tmp_path)


def test_an_unknown_model_name_lists_the_choices() -> None:
    with pytest.raises(CallerError, match="no model 'mobilenet' in the manifest; choose one of lite0-onnx"):
        MANIFEST.get("mobilenet")


def test_an_unknown_backend_lists_redisai_backends() -> None:
    assert check_backend("tflite") == "TFLITE"
    with pytest.raises(CallerError, match="unknown backend 'TENSORRT'.*TF, TFLITE, TORCH, ONNX"):
        check_backend("TENSORRT")


def test_a_broken_manifest_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    text = (MODELS_DIR / "manifest.yaml").read_text().replace("backend: ONNX", "backend: CAFFE", 1)
    path.write_text(text)
    with pytest.raises(ModelFileError, match=r"manifest.yaml is invalid: artifacts\.0\.backend: .*CAFFE"):
        load_manifest(path)
    with pytest.raises(ModelFileError, match="is missing"):
        load_manifest(tmp_path / "nothing.yaml")
    path.write_text("artifacts: [\n")
    with pytest.raises(ModelFileError, match="cannot read model manifest"):
        load_manifest(path)


def test_a_labels_file_that_changed_is_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST.labels["file"]).write_text("cat\n" * 1000)
    with pytest.raises(ModelFileError, match="does not match the manifest's sha256"):
        read_labels(MANIFEST, tmp_path)
