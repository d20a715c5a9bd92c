"""The code base stays clean: ruff (checks and format), and mypy --strict on gearcam/ (STYLE.md §6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run(str(BIN / "ruff"), "check", "gearcam", "tests", "tasks.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_as_it_is() -> None:
    result = _run(str(BIN / "ruff"), "format", "--check", "gearcam", "tests", "tasks.py")
    assert result.returncode == 0, result.stdout + result.stderr + "\nrun `ruff format gearcam tests tasks.py`"


def test_mypy_strict_passes_on_gearcam() -> None:
    result = _run(str(BIN / "mypy"), "gearcam")
    assert result.returncode == 0, result.stdout + result.stderr


def test_gears_is_python_3_7_for_redisgears() -> None:
    gears = ROOT / "gears"
    scripts = sorted(gears.glob("*.py"))
    assert scripts, f"no Gears scripts in {gears}"
    result = _run(str(BIN / "vermin"), "-t=3.7-", "--no-tips", "--violations", str(gears))
    assert result.returncode == 0, result.stdout + result.stderr


def test_gears_imports_nothing_from_gearcam() -> None:
    for script in (ROOT / "gears").glob("*.py"):
        text = script.read_text()
        assert "import gearcam" not in text and "from gearcam" not in text, script
