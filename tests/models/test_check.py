"""`invoke models --check`: the same checks from the command line, and a re-export when the tools are here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gearcam.config import PROJECT_ROOT
from tasks import EXPORT_PYTHON


def test_check_passes_on_the_committed_artifacts_and_counts_its_findings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gearcam.models", "--check", "--only", "lite0-tflite-int8"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK    lite0-tflite-int8  sha256" in result.stdout
    assert "tflite op versions" in result.stdout and "classify: cats" in result.stdout
    assert " 0 failed" in result.stdout


def test_check_fails_naming_an_unknown_entry() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gearcam.models", "--check", "--only", "nope"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "no model 'nope' in the manifest" in result.stderr


def test_reexport_reproduces_the_manifests_shapes_and_numerics() -> None:
    """Runs in .venv-export, where `scripts/bootstrap --dev` installs the export tools."""
    python = EXPORT_PYTHON if EXPORT_PYTHON.exists() else Path(sys.executable)
    probe = subprocess.run(
        [str(python), "-c", "from gearcam.models.export import export_missing as m; print(m() or '')"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if probe.returncode != 0 or probe.stdout.strip():
        pytest.skip(probe.stdout.strip() or probe.stderr.strip().splitlines()[-1])
    result = subprocess.run(
        [str(python), "-m", "gearcam.models", "--check", "--only", "lite0-onnx-int8"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "re-export" in x)
    assert line.startswith("OK") and "max abs logit diff" in line, line
