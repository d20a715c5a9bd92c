"""One tiny benchmark run (the tabular model, 2 batch sizes, 0.1 s windows) shared by the output tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gearcam.bench.cli import main


def _needs() -> str | None:
    for module, package in (("onnx", "onnx==1.23.2"), ("onnxruntime", "onnxruntime==1.31.1"),
                            ("matplotlib", "matplotlib==3.11.2")):  # fmt: skip
        try:
            __import__(module)
        except ImportError:
            return f"the benchmark tests need {module}; pip install {package}"
    return None


@pytest.fixture(scope="package")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``python -m gearcam.bench --plan tiny --out DIR`` run once; yields DIR and its parsed results.json."""
    missing = _needs()
    if missing:
        pytest.skip(missing)
    out = tmp_path_factory.mktemp("bench") / "run"
    assert main(["--plan", "tiny", "--out", str(out)]) == 0
    yield out, json.loads((out / "results.json").read_text())
