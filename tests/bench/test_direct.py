"""The direct engine's own process: windows measured when asked, and a clear error when it cannot start."""

from __future__ import annotations

import pytest

from gearcam.bench.direct import direct_engine
from gearcam.bench.plan import TABULAR

pytest.importorskip("onnxruntime", reason="pip install onnxruntime==1.31.1")


def test_the_engine_process_measures_the_windows_it_is_asked_for() -> None:
    with direct_engine(TABULAR) as engine:
        meter = engine.meter(4)
        meter.warm(0.01)
        calls, seconds, latencies = meter.window(0.05)
    assert calls == len(latencies) > 0
    assert seconds >= 0.05
    assert all(ms > 0 for ms in latencies)


def test_a_model_that_cannot_load_names_the_process_and_its_reason() -> None:
    reason = r"the direct-engine process ended \(1\): CallerError: no model .no-such-model. in the manifest"
    with pytest.raises(RuntimeError, match=reason):
        with direct_engine("no-such-model"):
            pass


def test_a_process_that_does_not_answer_in_time_is_killed_and_named() -> None:
    with direct_engine(TABULAR) as engine:
        engine.meter(1).warm(0.0)
        with pytest.raises(RuntimeError, match=r"did not answer .* within 0 s: killed"):
            engine.ask({"batch": 1, "window": 5.0}, timeout=0.2)
