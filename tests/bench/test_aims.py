"""The aims' verdicts follow the ratios they are given; an engine that does not scale is set apart."""

from __future__ import annotations

from typing import Any

from gearcam.bench.aims import check_aims


def _subject(name: str, direct: list[float], runtime: list[float], http: list[float], autobatch: float,
             memory: float = 1.0) -> dict[str, Any]:  # fmt: skip
    batches = [1, 4, 8]
    sweep = [{"batch": b, "runtime_vs_direct": r / d, "runtime_vs_http": r / h}
             for b, d, r, h in zip(batches, direct, runtime, http, strict=True)]  # fmt: skip
    return {"name": name, "device": "CPU", "sweep": sweep,
            "clients": [{"clients": 8, "autobatch_vs_none": autobatch}],
            "engine_batch_scaling": {"ratio": direct[-1] / direct[0]}, "memory": {"server_vs_http": memory}}  # fmt: skip


def test_verdicts_follow_the_ratios() -> None:
    scaling = _subject("a", [100, 200, 200], [50, 190, 181], [40, 150, 150], 1.6, memory=1.1)
    flat = _subject("b", [100, 101, 102], [90, 95, 85], [100, 90, 90], 1.0, memory=1.3)
    result = {"plan": {"autobatch_clients": 8}, "serving": [scaling, flat],
              "pipeline": {"pipeline_vs_alone": 0.89},
              "relay": {"rows": [{"pipeline": 1, "relayed_vs_direct": 0.71}, {"pipeline": 16, "relayed_vs_direct": 0.4}]},
              "steady": {"steady_mb": 101.5}}  # fmt: skip
    direct, http, autobatch, pipeline, relay, steady, memory = check_aims(result)
    assert direct["detail"] == {"a (CPU)": 181 / 200, "b (CPU)": 85 / 102} and direct["met"] is False
    assert http["detail"]["b (CPU)"] == 0.9 and http["met"] is False
    assert autobatch["detail"] == {"a (CPU)": 1.6} and autobatch["met"] is True
    assert autobatch["not_scaling"]["b (CPU)"]["autobatch_vs_none"] == 1.0
    assert pipeline["met"] is False and pipeline["detail"] == {"pipeline_vs_alone": 0.89}
    assert relay["met"] is True and relay["detail"] == {"one at a time": 0.71, "pipelined x16": 0.4}
    assert steady["met"] is False and steady["detail"] == {"runtime_rss_mb": 101.5}
    assert memory["detail"] == {"a (CPU)": 1.1, "b (CPU)": 1.3} and memory["met"] is False
    result["serving"] = [scaling]
    assert check_aims(result)[-1]["met"] is True


def test_nothing_measured_is_no_verdict() -> None:
    result = {"plan": {"autobatch_clients": 8}, "serving": [{"name": "lite0-tf", "not_measured": "not measured: x"}],
              "pipeline": {"not_measured": "not measured: the pipeline did not run"}}  # fmt: skip
    verdicts = check_aims(result)
    assert [aim["met"] for aim in verdicts] == [None] * 7
    assert verdicts[3]["note"] == "not measured: the pipeline did not run"
