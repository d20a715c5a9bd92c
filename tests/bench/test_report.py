"""The Markdown report says "not measured" with the reason, and shows each aim's verdict."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from gearcam.bench.aims import check_aims
from gearcam.bench.report import format_markdown


def test_a_model_that_was_not_measured_keeps_its_row_and_reason(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, result = tiny_run
    result = copy.deepcopy(result)
    result["serving"].append({"name": "lite0-tf", "device": "CPU",
                              "not_measured": "not measured: backend TF needs the Python package 'tensorflow-cpu'"})  # fmt: skip
    result["aims"] = check_aims(result)
    text = format_markdown(result)
    assert "| lite0-tf | CPU | | not measured: backend TF needs the Python package 'tensorflow-cpu' |" in text
    verdicts = [line for line in text.splitlines() if line.startswith("| runtime ahead of the HTTP")]
    assert len(verdicts) == 1 and ("| met |" in verdicts[0] or "| not met |" in verdicts[0])
    assert "not measured: this plan has no pipeline section" in text
