"""The tiny run's files: well-formed JSON, Markdown tables and real PNG plots; figures that add up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def measurements(node: Any) -> Iterator[dict[str, Any]]:
    """Every Measurement dict anywhere in the results (they are the dicts with window_rates)."""
    if isinstance(node, dict):
        if "window_rates" in node:
            yield node
        for value in node.values():
            yield from measurements(value)
    elif isinstance(node, list):
        for value in node:
            yield from measurements(value)


def test_the_json_records_machine_versions_plan_and_every_section(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, result = tiny_run
    assert result["machine"]["cpus"] >= 1 and result["machine"]["load_average_at_end"]
    assert "onnxruntime" in result["versions"] and "redis-server" in result["versions"]
    assert result["plan"]["name"] == "tiny" and result["plan"]["batches"] == [1, 2]
    (tabular,) = result["serving"]
    assert tabular["name"] == "tabular" and "random weights" in tabular["note"]
    assert [row["batch"] for row in tabular["sweep"]] == [1, 2]
    assert result["pipeline"]["not_measured"].startswith("not measured")
    assert result["gpu_status"] is None or result["gpu_status"].startswith("not measured")
    assert [aim["target"] for aim in result["aims"]] == [0.95, 1.0, 1.5, 0.9, 0.7, 100.0, 1.25, 1.5, 0.3]
    assert result["steady"]["not_measured"] == "not measured: not in this plan"
    assert [(row["frame_bytes"], row["pipeline"]) for row in result["relay"]["rows"]] == [
        (64 * 1024, 1), (64 * 1024, 16), (400 * 1024, 1)]  # fmt: skip
    assert [row["call"] for row in result["tls"]["rows"]] == ["PING", "XADD 64 KB", "GET 1 MB"]
    decode = result["decode"]["rows"]
    assert [(row["width"], row["height"], row["decoded_at"]) for row in decode] == [
        (640, 480, [640, 480]), (1920, 1080, [960, 540])]  # fmt: skip


def test_every_figure_is_positive_and_consistent(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, result = tiny_run
    found = list(measurements(result))
    # sweep: direct, runtime, HTTP per batch + one-at-a-time at batch 1; clients: off and on per count;
    # relay: direct, relayed and through the bare forwarder, one at a time, pipelined, and large frames;
    # TLS: the runtime and redis-server, plain and TLS, for three calls; decoding: reduced and full, two frame sizes
    assert len(found) == 2 * 3 + 1 + 2 * 2 + 3 * 3 + 3 * 4 + 2 * 2
    for m in found:
        assert m["calls"] > 0 and m["seconds"] > 0 and m["inferences_per_s"] > 0
        assert m["inferences"] == m["calls"] * m["batch"]
        assert all(rate > 0 for rate in m["window_rates"])
        lat = m["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]


def test_every_ratio_is_the_quotient_of_its_two_figures(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, result = tiny_run
    for row in result["relay"]["rows"]:
        direct, relayed, forwarded = (row[k]["inferences_per_s"] for k in ("direct", "relayed", "forwarded"))
        assert row["relayed_vs_direct"] == pytest.approx(relayed / direct)
        assert row["forwarded_vs_direct"] == pytest.approx(forwarded / direct)
    for row in result["tls"]["rows"]:
        rate = {way: row[way]["inferences_per_s"] for way in ("runtime", "runtime TLS", "redis", "redis TLS")}
        assert row["runtime_tls_vs_plain"] == pytest.approx(rate["runtime TLS"] / rate["runtime"])
        assert row["redis_tls_vs_plain"] == pytest.approx(rate["redis TLS"] / rate["redis"])
    for row in result["decode"]["rows"]:
        assert row["reduced_vs_full"] == pytest.approx(
            row["reduced"]["inferences_per_s"] / row["full"]["inferences_per_s"]
        )
    (tabular,) = result["serving"]
    for row in tabular["sweep"]:
        ips = {k: row[k]["inferences_per_s"] for k in ("direct", "runtime", "http")}
        assert row["runtime_vs_direct"] == pytest.approx(ips["runtime"] / ips["direct"])
        assert row["runtime_vs_http"] == pytest.approx(ips["runtime"] / ips["http"])
        if "one_at_a_time" in row:
            one = row["one_at_a_time"]["inferences_per_s"]
            assert row["pipelined_vs_one_at_a_time"] == pytest.approx(ips["runtime"] / one)
    for row in tabular["clients"]:
        on, off = row["autobatch"]["inferences_per_s"], row["no_autobatch"]["inferences_per_s"]
        assert row["autobatch_vs_none"] == pytest.approx(on / off)
    http_aim = result["aims"][1]
    assert http_aim["detail"]["tabular (CPU)"] == pytest.approx(min(r["runtime_vs_http"] for r in tabular["sweep"]))
    assert http_aim["met"] == (http_aim["detail"]["tabular (CPU)"] > 1.0)


def test_the_engine_time_inside_the_runtime_covers_the_timed_calls_and_fits_in_them(
    tiny_run: tuple[Path, dict[str, Any]],
) -> None:
    out, result = tiny_run
    (tabular,) = result["serving"]
    for row in tabular["sweep"]:
        engine, call = row["engine_in_runtime"], row["runtime"]
        assert engine["runs"] == call["calls"]  # reset once warm: the windows' runs, no more, no fewer
        assert 0 < engine["mean_ms"] < call["latency_ms"]["mean"]
        assert row["engine_in_runtime_vs_direct"] == pytest.approx(
            engine["mean_ms"] / row["direct"]["latency_ms"]["mean"]
        )
        redis_work = row["redis_per_call"]  # the backing redis-server's share, read over the same windows
        assert redis_work["cpu_ms"] >= 0 and redis_work["minor_faults"] >= 0
        # The tabular model's runs are made inline once it has run on a queue thread (during the warm-up); a
        # run queued all the same (the inline slot busy) waited inside its own call, so within the longest call.
        # (Not the mean call: on a loaded machine the few queued runs may wait longer than most calls take.)
        assert engine["queue_wait_ms"] is None or 0 <= engine["queue_wait_ms"] <= call["latency_ms"]["max"]
    text = (out / "results.md").read_text()
    assert "## Engine time inside the runtime" in text
    first = tabular["sweep"][0]
    outside = first["runtime"]["latency_ms"]["mean"] - first["engine_in_runtime"]["mean_ms"]
    redis_cells = f"{first['redis_per_call']['cpu_ms']:,.2f} | {first['redis_per_call']['minor_faults']:,.0f} |"
    waited = first["engine_in_runtime"]["queue_wait_ms"]
    wait_cell = "–" if waited is None else f"{waited:,.2f}"
    assert f"| tabular | CPU | {first['batch']} |" in text and f"| {outside:,.2f} | {wait_cell} | {redis_cells}" in text


def test_the_batch_the_queue_formed_counts_the_timed_requests_over_its_engine_runs(
    tiny_run: tuple[Path, dict[str, Any]],
) -> None:
    out, result = tiny_run
    (tabular,) = result["serving"]
    for row in tabular["clients"]:
        batching, measured = row["batching"], row["autobatch"]
        assert batching["requests"] == measured["calls"]  # counted from the first timed window on
        assert 1 <= batching["engine_runs"] <= batching["requests"]
        assert 1.0 <= batching["mean_batch"] == pytest.approx(batching["requests"] / batching["engine_runs"])
        assert batching["mean_batch"] <= min(row["clients"], result["plan"]["autobatch_size"])
    text = (out / "results.md").read_text()
    last = tabular["clients"][-1]
    assert f"| {last['batching']['mean_batch']:,.2f} |" in text


def test_memory_is_measured_per_process(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    _, result = tiny_run
    memory = result["serving"][0]["memory"]
    assert 0 < memory["runtime_idle_mb"] <= memory["runtime_peak_mb"]
    assert memory["server_peak_mb"] == pytest.approx(memory["runtime_peak_mb"] + memory["redis_peak_mb"])
    assert memory["http_server_peak_mb"] > 0
    assert memory["server_vs_http"] == pytest.approx(memory["server_peak_mb"] / memory["http_server_peak_mb"])
    # Read again after the auto-batched model and the client sweep: peaks only grow.
    assert memory["runtime_peak_mb"] <= memory["runtime_peak_all_mb"]
    assert memory["server_peak_all_mb"] == pytest.approx(memory["runtime_peak_all_mb"] + memory["redis_peak_all_mb"])


def test_the_markdown_has_the_tables_and_links_the_plots(tiny_run: tuple[Path, dict[str, Any]]) -> None:
    out, result = tiny_run
    text = (out / "results.md").read_text()
    for heading in ("## Aims", "## Model serving", "## Engine time inside the runtime",
                    "## Concurrent single-item clients", "## Server memory", "## Plain commands through the runtime",
                    "## What TLS costs", "## Decoding a camera frame", "## Whole pipeline"):  # fmt: skip
        assert heading in text
    big = result["decode"]["rows"][-1]
    assert f"| 1920×1080 | {big['frame_bytes'] / 1024:,.0f} | 960×540 | " in text
    assert "random weights" in text
    rows = [line for line in text.splitlines() if line.startswith("| tabular | CPU |")]
    # a row per batch in the serving table (11 columns), then in the engine-time table (11 too)
    assert [line.count("|") for line in rows] == [12] * 2 * len(result["plan"]["batches"])
    for name in ("tabular.png", "latency.png", "memory.png"):
        assert f"]({name})" in text


@pytest.mark.parametrize("name", ["tabular.png", "latency.png", "memory.png"])
def test_the_plots_are_real_non_blank_pngs(tiny_run: tuple[Path, dict[str, Any]], name: str) -> None:
    import matplotlib.image

    out, _ = tiny_run
    data = (out / name).read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5_000
    pixels = matplotlib.image.imread(out / name)
    assert pixels.shape[0] >= 300 and pixels.shape[1] >= 500
    assert float(pixels[..., :3].std()) > 0.05  # lines, bars and text, not a blank canvas
