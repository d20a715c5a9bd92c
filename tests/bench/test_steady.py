"""The steady-memory section on a short run: real runtime, loader, Gears script, LiteRT int8 model and frames."""

from __future__ import annotations

import pytest

from gearcam.bench.aims import check_aims
from gearcam.bench.plan import plan_named
from gearcam.bench.report import _steady
from gearcam.bench.steady import STEADY_AIM_MB, run_steady

pytest.importorskip("ai_edge_litert", reason="pip install ai-edge-litert (requirements.txt)")


@pytest.mark.slow
def test_one_camera_runs_and_the_runtimes_memory_is_sampled_and_judged() -> None:
    ticks: list[str] = []
    plan = plan_named("tiny", steady_seconds=3.0, steady_fps=5.0)
    section = run_steady(plan, ticks.append)
    assert ticks == ["steady memory"]
    assert section["model"] == "lite0-tflite-int8"
    assert 13 <= section["frames"] <= 16 and 0 < section["inferred"] <= section["frames"]
    assert [s["s"] for s in section["samples"]] == [0.0]  # one sample per 10 s, the first at the start
    assert section["before_model_mb"] > 10 and section["steady_mb"] >= section["before_model_mb"]
    footprint = section["footprint"]
    assert footprint["streams"]["camera:0"]["entries"] == section["frames"]
    assert footprint["gears_workers_rss_mb"] > 0
    (steady,) = [aim for aim in check_aims({"plan": {"autobatch_clients": 1}, "steady": section})
                 if "steady memory" in aim["aim"]]  # fmt: skip
    assert steady["met"] is (section["steady_mb"] <= STEADY_AIM_MB)
    text = "\n".join(_steady({"steady": section}))
    assert f"**{section['steady_mb']:,.1f}**" in text and "of the whole stack at the end" in text


def test_a_plan_without_the_section_says_so() -> None:
    assert run_steady(plan_named("tiny"), lambda _: None) == {"not_measured": "not measured: not in this plan"}
