"""A backend whose engine is not installed: the upload and the check stop naming the package.

The engine is made unimportable for one real runtime process (a stand-in `tensorflow`
package earlier on PYTHONPATH that raises ImportError), as it is on a machine without
requirements-tf.txt; the stored model is left as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gearcam.config import PROJECT_ROOT
from gearcam.errors import OperatorError
from gearcam.models import load_manifest, verify_artifact
from gearcam.models.upload import StoreOptions, store_model
from tests.runtime.conftest import Backing, Runtime, free_port

MANIFEST = load_manifest()


@pytest.fixture(scope="module")
def no_tf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    shadow = tmp_path_factory.mktemp("no-tf")
    (shadow / "tensorflow").mkdir()
    (shadow / "tensorflow" / "__init__.py").write_text("raise ImportError('No module named tensorflow')\n")
    path = os.pathsep.join(p for p in (str(shadow), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


@pytest.fixture(scope="module")
def runtime_without_tf(tmp_path_factory: pytest.TempPathFactory, no_tf: dict[str, str]) -> Iterator[Runtime]:
    backing = Backing(free_port(), tmp_path_factory.mktemp("backing-no-tf"))
    backing.start()
    server = Runtime(free_port(), backing.url, env=no_tf)
    server.start()
    yield server
    server.stop()
    backing.stop()


def test_uploading_a_tf_model_without_tensorflow_names_the_package(runtime_without_tf: Runtime) -> None:
    client = redis.Redis.from_url(runtime_without_tf.url, socket_timeout=60)
    good = MANIFEST.get("lite0-onnx-int8")
    store_model(client, good, verify_artifact(good), StoreOptions("models:classifier", tag="kept"), 1 << 20)
    tf = MANIFEST.get("lite0-tf")
    with pytest.raises(
        OperatorError, match=r"refused efficientnet_lite0\.pb.*Could not load backend.*'tensorflow'.*pip install"
    ):
        store_model(client, tf, verify_artifact(tf), StoreOptions("models:classifier"), 1 << 20)
    meta = client.execute_command("AI.MODELGET", "models:classifier", "META")
    assert meta[meta.index(b"tag") + 1] == b"kept"
    client.close()


def test_checking_a_tf_model_without_tensorflow_fails_naming_the_package(no_tf: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gearcam.models", "--check", "--only", "lite0-tf"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **no_tf},
    )  # fmt: skip
    assert result.returncode == 1
    assert "FAIL  lite0-tf  classify: backend TF needs the Python package 'tensorflow-cpu==2.21.0'" in result.stdout
    assert "model check(s) failed" in result.stderr


def test_the_whole_check_reports_a_missing_engine_as_a_skip(no_tf: dict[str, str]) -> None:
    env = {**os.environ, **no_tf, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    result = subprocess.run(
        [sys.executable, "-c", "from gearcam.models.check import check_manifest; from gearcam.models import load_manifest;"
         "print([(f.artifact, f.status) for f in check_manifest(load_manifest()) if f.check == 'classify'])"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "('lite0-tf', 'skip')" in result.stdout and "('lite0-onnx', 'ok')" in result.stdout
