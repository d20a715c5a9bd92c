"""The cameras and recorder sections: their shape and their arithmetic (never their speed)."""

from __future__ import annotations

from typing import Any

import pytest

from gearcam.bench.cameras import FPS, MOVE_S, PERIOD_S, scenes, sequence_frame
from gearcam.bench.cli import count_ticks, run_plan
from gearcam.bench.plan import plan_named
from gearcam.bench.report import format_markdown

pytest.importorskip("onnxruntime", reason="pip install onnxruntime==1.31.1")

PLAN = plan_named(
    "events", camera_counts=(1, 2), camera_seconds=1.0, gating_seconds=1.0, record_cameras=(1,), record_clip_s=1.0
)


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], list[str]]:
    ticks: list[str] = []
    return run_plan(PLAN, ticks.append), ticks


def test_the_sequence_is_still_nine_tenths_of_the_time_and_moves_otherwise() -> None:
    frames = scenes()
    cycle = [sequence_frame(frames, i) for i in range(int(PERIOD_S * FPS))]
    assert sum(1 for f in cycle if f == frames[0]) == int((PERIOD_S - MOVE_S) * FPS)
    assert len(set(cycle[: int(MOVE_S * FPS)])) == int(MOVE_S * FPS)  # every moving frame differs
    assert sequence_frame(frames, 0, phase=5) == cycle[5]


@pytest.mark.slow
def test_the_progress_total_counts_the_new_sections(run: tuple[dict[str, Any], list[str]]) -> None:
    result, ticks = run
    assert len(ticks) == count_ticks(PLAN, gpu=False)  # a count not sustained still ticks for the ones skipped
    assert result["relay"]["not_measured"] == "not measured: not in this plan" and result["serving"] == []


@pytest.mark.slow
def test_the_cameras_section_accounts_for_every_frame_off_and_on(run: tuple[dict[str, Any], list[str]]) -> None:
    result, _ = run
    c = result["cameras"]
    if "ramp" not in c:
        pytest.skip(c["not_measured"])
    for mode in ("off", "on"):
        row = c["gating"][mode]
        assert row["cameras"] == 1 and row["sent"] == int(PLAN.gating_seconds * FPS)
        assert row["inferred"] <= row["handled"] <= row["sent"]
        assert [r["cameras"] for r in c["ramp"][mode]] == [1, 2][: len(c["ramp"][mode])]
        for r in c["ramp"][mode]:
            assert r["offered_fps"] == r["cameras"] * FPS and r["sent"] == r["cameras"] * int(PLAN.camera_seconds * FPS)
            assert r["cpu_cores_per_camera"] == pytest.approx(r["cpu_cores"] / r["cameras"])
            if r["latency_ms"]:
                assert r["latency_ms"]["p50"] <= r["latency_ms"]["p95"] <= r["latency_ms"]["p99"]
    assert c["gating"]["off"]["motion"] == 0  # gating off: no motion check at all
    kept = c["gating"]["on"]["inferred"] / c["gating"]["off"]["inferred"]
    assert c["gating"]["inferences_saved"] == pytest.approx(1 - kept)
    sustained = {m: max([r["cameras"] for r in c["ramp"][m] if r["sustained"]], default=0) for m in ("off", "on")}
    assert (c["cameras_sustained_off"], c["cameras_sustained_on"]) == (sustained["off"], sustained["on"])
    if sustained["off"]:
        assert c["cameras_on_vs_off"] == pytest.approx(sustained["on"] / sustained["off"])


@pytest.mark.slow
def test_the_recorder_section_measures_the_recorder_process(run: tuple[dict[str, Any], list[str]]) -> None:
    result, _ = run
    rec = result["recorder"]
    (row,) = rec["rows"]
    assert row["cameras"] == 1 and row["clips"] == 1 and row["failures"] == 0 and row["codec"]
    assert row["clip_seconds"] == PLAN.record_clip_s + 2 * rec["roll_s"]
    assert row["cpu_seconds"] > 0 and row["peak_rss_mb"] >= row["idle_rss_mb"] > 0
    assert rec["cpu_cores_per_camera_at_one_event_a_minute"] == pytest.approx(row["cpu_seconds_per_clip"] / 60)
    assert rec["peak_rss_growth_mb_per_camera"] is None  # one count only


@pytest.mark.slow
def test_the_markdown_has_both_sections(run: tuple[dict[str, Any], list[str]]) -> None:
    result, _ = run
    result = {**result, "aims": [], "duration_s": 1.0}
    text = format_markdown(result)
    assert "## Many cameras: motion gating and adaptive sampling off and on" in text
    assert "**Inferences saved by gating**" in text and "**10 fps cameras sustained**" in text
    assert "## Recorder: memory and CPU per camera" in text and "| 1 | 5 |" in text


def test_invoke_bench_passes_the_plan_by_name() -> None:
    import tasks

    (command,) = tasks.bench_commands(plan="events", out="/tmp/b")
    assert command.endswith(" -m gearcam.bench --plan events --out /tmp/b")
