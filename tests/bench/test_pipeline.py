"""The whole-pipeline section on one short offered rate: real runtime, loader, Gears script and frames."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from gearcam.bench.pipeline import achieved_rate, camera_frame, run_pipeline, sustained, sweep
from gearcam.bench.plan import plan_named
from gearcam.bench.report import format_markdown

pytest.importorskip("onnxruntime", reason="pip install onnxruntime==1.31.1")


@pytest.fixture(scope="module")
def section() -> dict[str, Any]:
    ticks: list[str] = []
    plan = plan_named("tiny", pipeline_fractions=(0.3,), pipeline_seconds=1.0)
    result = run_pipeline(plan, ticks.append)
    assert ticks[0] == "decode + preprocess + inference alone"
    return result


def test_the_camera_frame_is_a_640x480_jpeg() -> None:
    from io import BytesIO

    from PIL import Image

    frame = camera_frame()
    with Image.open(BytesIO(frame)) as image:
        assert image.format == "JPEG" and image.size == (640, 480)


@pytest.mark.parametrize(("limit", "offered", "found"), [
    (0.62, [0.25, 0.5, 0.7, 0.6, 0.65], 0.6),  # bisects the coarse step between 0.5 and 0.7
    (0.1, [0.25, 0.125, 0.0625], 0.0625),  # below the first fraction: bisects from nothing
    (2.0, [0.25, 0.5, 0.7, 1.0], 1.0),  # everything held: nothing to refine
])  # fmt: skip
def test_the_sweep_refines_the_highest_sustained_rate_between_its_fractions(
    limit: float, offered: list[float], found: float
) -> None:
    tried: list[float] = []
    ticks: list[str] = []

    def offer(fraction: float) -> bool:  # a pipeline that holds up to `limit` of alone
        tried.append(fraction)
        ticks.append("offered")
        return fraction <= limit

    assert sweep((0.25, 0.5, 0.7, 1.0), 2, offer, ticks.append) == pytest.approx(found)
    assert tried == pytest.approx(offered)
    assert len(ticks) == 4 + 2  # one per fraction and per refinement, offered or not


@pytest.mark.slow
def test_the_alone_baseline_counts_frames_per_batch(section: dict[str, Any]) -> None:
    alone = section["alone"]
    for key in ("batch_1", f"batch_{section['autobatch']}"):
        m = alone[key]
        assert m["inferences"] == m["calls"] * m["batch"] > 0
        assert 0 < m["latency_ms"]["p50"] <= m["latency_ms"]["p95"] <= m["latency_ms"]["p99"]
    assert alone["frames_per_s"] == max(alone["batch_1"]["inferences_per_s"],
                                        alone[f"batch_{section['autobatch']}"]["inferences_per_s"])  # fmt: skip


@pytest.mark.slow
def test_every_offered_frame_is_accounted_for(section: dict[str, Any]) -> None:
    if "rates" not in section:
        assert section["not_measured"].startswith("not measured: ")
        pytest.skip(section["not_measured"])
    (row,) = section["rates"]
    assert row["offered_fps"] == pytest.approx(0.3 * section["alone"]["frames_per_s"], abs=0.06)
    assert row["sent"] == max(1, int(row["offered_fps"] * 1.0))
    assert row["delivered"] + row["dropped_or_late"] == row["sent"]
    assert 0 <= row["lagging"] <= row["delivered"]
    if row["latency_ms"]:
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p95"] <= row["latency_ms"]["p99"]
    assert row["cpu_cores"]["runtime"] > 0 and row["cpu_cores"]["machine"] > 0
    faults = row["page_faults_per_frame"]
    assert set(faults) == {"runtime", "gears_workers", "redis"} and all(v >= 0 for v in faults.values())
    # Every delivered frame ran the model, so the engine was busy some of the window, and never more than
    # the queue's one thread can be.
    assert (0 < row["engine_busy"] <= 1.0) if row["delivered"] else row["engine_busy"] >= 0
    # The frames ran in executions triggered in the window, and the queue's batches stay within BATCHSIZE.
    assert row["executions"] >= 1, row
    assert row["frames_per_execution"] == pytest.approx(row["sent"] / row["executions"])
    if row["delivered"]:
        assert 1 <= row["batch_formed"] <= section["autobatch"], row
    assert row["sustained"] == sustained(row)
    assert int(section["stats"]["seen"]) >= row["sent"]
    if row["sustained"]:
        assert section["highest_sustained_fps"] == min(row["achieved_fps"], row["offered_fps"])
        assert section["pipeline_vs_alone"] == pytest.approx(
            section["highest_sustained_fps"] / section["alone"]["frames_per_s_around_sweep"]
        )


@pytest.mark.slow
def test_the_report_shows_each_rates_page_faults_a_frame(section: dict[str, Any],
                                                          tiny_run: tuple[Path, dict[str, Any]]) -> None:  # fmt: skip
    if "rates" not in section:
        pytest.skip(section["not_measured"])
    text = format_markdown({**tiny_run[1], "pipeline": section})  # the tiny plan itself has no pipeline
    rows = [line for line in text.split("## Whole pipeline")[1].splitlines() if line.startswith("| ")][1:]
    faults = section["rates"][0]["page_faults_per_frame"]
    cell = " / ".join(f"{faults[k]:,.1f}" for k in ("runtime", "gears_workers", "redis"))
    assert rows[0].count("|") == 16 and f"| {cell} |" in rows[0]
    row = section["rates"][0]
    assert f"| {row['frames_per_execution']:,.1f} / {row['batch_formed']:,.2f} |" in rows[0]


@pytest.mark.slow
def test_the_baseline_takes_a_window_after_every_offered_rate(section: dict[str, Any]) -> None:
    if "rates" not in section:
        pytest.skip(section["not_measured"])
    alone = section["alone"]
    best = alone[f"batch_{alone['best_batch']}"]
    # the first figure's windows, then one after the single offered rate
    assert alone["window_rates"][:-1] == pytest.approx(best["window_rates"])
    assert len(alone["window_rates"]) == len(best["window_rates"]) + len(section["rates"])
    assert alone["window_rates"][-1] > 0
    assert alone["frames_per_s_around_sweep"] == pytest.approx(statistics.median(alone["window_rates"]))


def test_a_constant_latency_is_not_counted_as_lost_throughput() -> None:
    # 120 frames at 40/s, each hit 300 ms after its frame: the pipeline keeps up.
    sent = [i / 40 for i in range(120)]
    hits = [t + 0.3 for t in sent]
    assert achieved_rate(len(hits), min(hits), max(hits), 40.0) == pytest.approx(40.0)
    # The same frames with a latency growing 20 ms a frame: a backlog, so under the offered rate.
    behind = [t + 0.3 + 0.02 * i for i, t in enumerate(sent)]
    assert achieved_rate(len(behind), min(behind), max(behind), 40.0) < 0.95 * 40.0
    assert achieved_rate(1, 5.0, 5.0, 40.0) == 40.0 and achieved_rate(0, 0.0, 0.0, 40.0) == 0.0
