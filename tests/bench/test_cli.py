"""The command line: plans by name, the progress bar's total, and a refused plan name."""

from __future__ import annotations

import pytest

from gearcam.bench.cli import count_ticks, run_plan
from gearcam.bench.plan import PLANS, plan_named

pytest.importorskip("onnx", reason="the tabular model is built with onnx (requirements-dev.txt)")


def test_the_progress_total_is_the_number_of_figures_measured() -> None:
    plan = plan_named("tiny", http=False, clients=(1, 3), autobatch_clients=2)
    ticks: list[str] = []
    result = run_plan(plan, ticks.append)
    assert len(ticks) == count_ticks(plan, gpu=False)
    assert [row["clients"] for row in result["serving"][0]["clients"]] == [1, 2, 3]
    assert all("http" not in row for row in result["serving"][0]["sweep"])


def test_each_model_is_either_measured_or_reported_not_measured() -> None:
    plan = plan_named("tiny", artifacts=("lite0-onnx", "tabular"), batches=(1,), http=False, window_s=0.05)
    result = run_plan(plan, lambda _: None)
    assert [s["name"] for s in result["serving"]] == ["lite0-onnx", "tabular"]
    assert all("sweep" in s or s["not_measured"].startswith("not measured") for s in result["serving"])


def test_every_preset_keeps_the_issue_s_ranges() -> None:
    full = PLANS["full"]
    assert full.batches[0] == 1 and full.batches[-1] == 32
    assert full.clients[0] == 1 and full.clients[-1] == 16
    assert {"lite0-onnx", "lite0-onnx-int8", "lite0-tflite", "lite0-tflite-int8", "lite0-tf", "lite0-torch",
            "tabular"} <= set(full.artifacts)  # fmt: skip
    assert full.autobatch_clients == 8
    with pytest.raises(ValueError, match="choose one of full, quick, events, tiny"):
        plan_named("huge")


def test_an_unknown_model_in_only_is_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from gearcam.bench.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["--plan", "tiny", "--only", "tabular,lite0-nope"])
    assert caught.value.code == 2
    assert "unknown model(s) lite0-nope; choose from lite0-onnx" in capsys.readouterr().err
