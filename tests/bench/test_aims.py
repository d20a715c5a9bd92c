"""The aims' verdicts follow the ratios they are given; an engine that does not scale is set apart."""

from __future__ import annotations

from typing import Any

from gearcam.bench.aims import check_aims


def _subject(name: str, direct: list[float], runtime: list[float], http: list[float], autobatch: float,
             memory: float = 1.0) -> dict[str, Any]:  # fmt: skip
    batches = [1, 4, 8]
    # Latencies (ms) of one call: 1000 / calls a second, as for a single client.
    sweep = [{"batch": b, "runtime_vs_direct": r / d, "runtime_vs_http": r / h,
              "direct": {"latency_ms": {"p50": 1000 / d}}, "runtime": {"latency_ms": {"p50": 1000 / r}},
              "http": {"latency_ms": {"p50": 1000 / h}}}
             for b, d, r, h in zip(batches, direct, runtime, http, strict=True)]  # fmt: skip
    return {"name": name, "device": "CPU", "sweep": sweep,
            "clients": [{"clients": 8, "autobatch_vs_none": autobatch}],
            "engine_batch_scaling": {"ratio": direct[-1] / direct[0]}, "memory": {"server_vs_http": memory}}  # fmt: skip


def test_verdicts_follow_the_ratios() -> None:
    scaling = _subject("a", [100, 200, 200], [50, 190, 181], [40, 150, 150], 1.6, memory=1.1)
    flat = _subject("b", [100, 101, 102], [90, 95, 85], [100, 90, 90], 1.0, memory=1.3)
    result = {"plan": {"autobatch_clients": 8}, "serving": [scaling, flat],
              "pipeline": {"pipeline_vs_alone": 0.89},
              "relay": {"rows": [{"frame_bytes": 409600, "pipeline": 1, "relayed_vs_direct": 0.5},
                                 {"frame_bytes": 65536, "pipeline": 1, "relayed_vs_direct": 0.71,
                                  "forwarded_vs_direct": 0.8},
                                 {"frame_bytes": 65536, "pipeline": 16, "relayed_vs_direct": 0.4,
                                  "forwarded_vs_direct": 0.9}]},
              "steady": {"steady_mb": 101.5}}  # fmt: skip
    direct, http, autobatch, pipeline, relay, steady, memory, per_call, trio = check_aims(result)
    assert direct["detail"] == {"a (CPU)": 181 / 200, "b (CPU)": 85 / 102} and direct["met"] is False
    assert http["detail"]["b (CPU)"] == 0.9 and http["met"] is False
    assert autobatch["detail"] == {"a (CPU)": 1.6} and autobatch["met"] is True
    assert autobatch["not_scaling"]["b (CPU)"]["autobatch_vs_none"] == 1.0
    assert pipeline["met"] is False and pipeline["detail"] == {"pipeline_vs_alone": 0.89}
    assert relay["met"] is True
    assert relay["detail"] == {"one at a time": 0.71, "one at a time, 400 KB frames": 0.5, "pipelined x16": 0.4,
                               "bare forwarder, one at a time": 0.8}  # fmt: skip
    assert steady["met"] is False and steady["detail"] == {"runtime_rss_mb": 101.5}
    assert memory["detail"] == {"a (CPU)": 1.1, "b (CPU)": 1.3} and memory["met"] is False
    assert per_call["met"] is None  # no tabular model in this run
    assert trio["unit"] == "ms" and trio["met"] is False
    assert trio["detail"]["a (CPU)"] == 1000 / 50 - 1000 / 100 and trio["detail"]["b (CPU)"] == 1000 / 90 - 1000 / 100
    result["serving"] = [scaling]
    assert check_aims(result)[6]["met"] is True


def test_the_tabular_model_judges_the_per_call_overhead() -> None:
    fast = _subject("tabular", [30000, 200000, 260000], [3125, 8000, 9000], [1000, 5000, 6000], 1.0)
    close = _subject("tabular", [30000, 200000, 260000], [2990, 2991, 2992], [2000, 2000, 2000], 1.0)
    for subject, met, ratio in ((fast, True, 3.125), (close, False, 1.495)):
        result = {"plan": {"autobatch_clients": 8}, "serving": [subject]}
        per_call, trio = check_aims(result)[7:]
        assert per_call["met"] is met and per_call["detail"] == {"runtime / HTTP": ratio}
        assert per_call["note"] == (
            "p50 a call: runtime 0.32 ms, HTTP 1.00 ms" if met else "p50 a call: runtime 0.33 ms, HTTP 0.50 ms"
        )
    # 1000/3125 - 1000/30000 = 0.29 ms: met.
    assert check_aims({"plan": {"autobatch_clients": 8}, "serving": [fast]})[8]["met"] is True


def test_nothing_measured_is_no_verdict() -> None:
    result = {"plan": {"autobatch_clients": 8}, "serving": [{"name": "lite0-tf", "not_measured": "not measured: x"}],
              "pipeline": {"not_measured": "not measured: the pipeline did not run"}}  # fmt: skip
    verdicts = check_aims(result)
    assert [aim["met"] for aim in verdicts] == [None] * 9
    assert verdicts[3]["note"] == "not measured: the pipeline did not run"


def test_the_relay_aim_reads_runs_that_measured_one_frame_size() -> None:
    """Runs before 2026-12-04 gave the frame size once, for every row."""
    relay = {"frame_bytes": 65536, "rows": [{"pipeline": 1, "relayed_vs_direct": 0.55, "forwarded_vs_direct": 0.7},
                                            {"pipeline": 16, "relayed_vs_direct": 0.34}]}  # fmt: skip
    result = {"plan": {"autobatch_clients": 8}, "serving": [], "pipeline": {}, "relay": relay, "steady": {}}
    aim = check_aims(result)[4]
    assert aim["met"] is False
    assert aim["detail"] == {"one at a time": 0.55, "pipelined x16": 0.34, "bare forwarder, one at a time": 0.7}
