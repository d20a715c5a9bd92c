"""Helpers for the deploy tests: where the tools are, and rendering overlays with `kubectl kustomize`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gearcam.config import PROJECT_ROOT

BIN = Path(sys.executable).parent
OVERLAYS = ("jetson-nano", "x64", "runtime")
# `labels`, `patches` with $patch directives and cross-directory bases need kustomize >= 4.
MIN_KUSTOMIZE = (4, 0)


def tool(name: str) -> str:
    """A tool installed in the venv (requirements-dev.txt) or on PATH; skip the test if neither has it."""
    found = BIN / name
    if found.exists():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        pytest.skip(f"{name} is not installed; `scripts/bootstrap --dev` installs it")
    return on_path


def kubectl() -> str:
    """kubectl with a kustomize new enough for the overlays, or skip saying why."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip(
            "kubectl is not installed (no PyPI package ships a Linux kubectl binary); install it to render the overlays"
        )
    out = subprocess.run([path, "version", "--client"], capture_output=True, text=True, timeout=60).stdout
    found = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out)
    if found is None or (int(found[1]), int(found[2])) < MIN_KUSTOMIZE:
        pytest.skip(f"kubectl's kustomize is older than v{MIN_KUSTOMIZE[0]} ({out.strip()!r}); install a newer kubectl")
    return path


def render(directory: Path) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    """Every overlay rendered once per session."""
    return {name: render(PROJECT_ROOT / "deploy" / "overlays" / name) for name in OVERLAYS}
