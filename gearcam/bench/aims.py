"""The speed and memory aims (docs/benchmarks.md), checked against one run: met or not, with the numbers.

1. runtime inference >= 95 % of the direct engine from batch 4 (image models; the tabular
   model is all per-call overhead by design);
2. gearcam over Redis ahead of the HTTP baseline at every batch size;
3. auto-batching with 8 single-image clients >= 1.5x without it, where the engine scales
   with batch (an engine gaining less than ``SCALES`` from batch 1 to the largest batch
   is listed as not scaling, and left out of the verdict);
4. the end-to-end pipeline sustaining >= 90 % of decode + preprocess + inference alone;
5. plain XADD of 64 KB frames relayed by the runtime >= 70 % of direct to redis-server, one at a time
   (a camera's pattern; pipelined figures are reported too);
6. the runtime's steady resident memory under one camera on the LiteRT int8 model <= 100 MiB;
7. peak memory of the runtime and its redis-server <= 1.25x the HTTP server's, under the same
   load (one model, one client, the batch sweep);
8. per-call overhead: the tabular model (all overhead) at batch 1 through the runtime >= 1.5x
   the HTTP baseline's calls/s, with both per-call times;
9. the runtime's TENSORSET + MODELEXECUTE + TENSORGET at batch 1 adding <= 0.3 ms (p50) to the
   direct engine's call, every model.

Each verdict's ``unit`` says how its figures read ("x" for ratios).
"""

from __future__ import annotations

from typing import Any

from gearcam.bench.plan import TABULAR
from gearcam.bench.relay import FRAME_BYTES
from gearcam.bench.steady import STEADY_AIM_MB

__all__ = ["MEMORY_AIM", "PER_CALL_AIM", "SCALES", "TRIO_AIM_MS", "check_aims"]

MEMORY_AIM = 1.25  # runtime + redis-server peak over the HTTP server's, same load
PER_CALL_AIM = 1.5  # tabular calls/s at batch 1, runtime over HTTP
TRIO_AIM_MS = 0.3  # runtime trio p50 minus the direct engine's p50, batch 1
SCALES = 1.3  # direct inferences/s at the largest batch over batch 1: below this the engine "does not scale" (issue 13)


def _measured(serving: list[dict[str, Any]], images_only: bool = False) -> list[dict[str, Any]]:
    return [s for s in serving if "sweep" in s and not (images_only and s["name"] == TABULAR)]


def _runtime_vs_direct(serving: list[dict[str, Any]]) -> dict[str, Any]:
    detail = {}
    for s in _measured(serving, images_only=True):
        ratios = [r["runtime_vs_direct"] for r in s["sweep"] if r["batch"] >= 4 and r["runtime_vs_direct"] is not None]
        if ratios:
            detail[f"{s['name']} ({s['device']})"] = min(ratios)
    return {"aim": "runtime >= 95 % of the direct engine from batch 4 (worst batch per model)", "target": 0.95,
            "detail": detail, "met": all(v >= 0.95 for v in detail.values()) if detail else None}  # fmt: skip


def _runtime_vs_http(serving: list[dict[str, Any]]) -> dict[str, Any]:
    detail = {}
    for s in _measured(serving):
        ratios = [r["runtime_vs_http"] for r in s["sweep"] if r.get("runtime_vs_http") is not None]
        if ratios:
            detail[f"{s['name']} ({s['device']})"] = min(ratios)
    return {"aim": "runtime ahead of the HTTP baseline at every batch size (worst batch per model)", "target": 1.0,
            "detail": detail, "met": all(v > 1.0 for v in detail.values()) if detail else None}  # fmt: skip


def _autobatch(serving: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    detail, not_scaling = {}, {}
    for s in _measured(serving, images_only=True):
        row = next((r for r in s["clients"] if r["clients"] == clients), None)
        scaling = s["engine_batch_scaling"]["ratio"]
        if row is None or row["autobatch_vs_none"] is None:
            continue
        name = f"{s['name']} ({s['device']})"
        if scaling is not None and scaling >= SCALES:
            detail[name] = row["autobatch_vs_none"]
        else:
            not_scaling[name] = {"autobatch_vs_none": row["autobatch_vs_none"], "engine_batch_scaling": scaling}
    return {"aim": f"auto-batching with {clients} single-image clients >= 1.5x without it, where the engine scales",
            "target": 1.5, "detail": detail, "not_scaling": not_scaling,
            "met": all(v >= 1.5 for v in detail.values()) if detail else None}  # fmt: skip


def _pipeline(pipeline: dict[str, Any]) -> dict[str, Any]:
    value = pipeline.get("pipeline_vs_alone")
    aim = "pipeline sustains >= 90 % of decode + preprocess + inference alone"
    if value is None:
        reason = pipeline.get("not_measured", "no offered rate was sustained")
        return {"aim": aim, "target": 0.9, "detail": {}, "met": None if "not_measured" in pipeline else False,
                "note": reason}  # fmt: skip
    return {"aim": aim, "target": 0.9, "detail": {"pipeline_vs_alone": value}, "met": value >= 0.9}


def _relay(relay: dict[str, Any]) -> dict[str, Any]:
    aim = "relayed XADD of 64 KB frames >= 70 % of direct, one at a time"
    rows = [{"frame_bytes": relay.get("frame_bytes"), **r} for r in relay.get("rows", [])]  # one size before 12-04
    row = next((r for r in rows if r["pipeline"] == 1 and r["frame_bytes"] == FRAME_BYTES), None)
    if row is None or row["relayed_vs_direct"] is None:
        return {"aim": aim, "target": 0.7, "detail": {}, "met": None,
                "note": relay.get("not_measured", "not measured")}  # fmt: skip
    detail = {"one at a time": row["relayed_vs_direct"]}
    for other in rows:
        if other is not row:
            name = f"pipelined x{other['pipeline']}" if other["pipeline"] > 1 else "one at a time"
            if other["frame_bytes"] != FRAME_BYTES:
                name += f", {other['frame_bytes'] // 1024} KB frames"
            detail[name] = other["relayed_vs_direct"]
    if row.get("forwarded_vs_direct") is not None:  # the floor: a bare forwarder, one at a time
        detail["bare forwarder, one at a time"] = row["forwarded_vs_direct"]
    return {"aim": aim, "target": 0.7, "detail": detail, "met": row["relayed_vs_direct"] >= 0.7}


def _steady(steady: dict[str, Any]) -> dict[str, Any]:
    aim = f"runtime steady memory <= {STEADY_AIM_MB:.0f} MiB, one camera on the LiteRT int8 model"
    if "steady_mb" not in steady:
        return {"aim": aim, "target": STEADY_AIM_MB, "detail": {}, "met": None,
                "note": steady.get("not_measured", "not measured")}  # fmt: skip
    value = steady["steady_mb"]
    return {"aim": aim, "target": STEADY_AIM_MB, "detail": {"runtime_rss_mb": value}, "unit": "MiB",
            "met": value <= STEADY_AIM_MB}  # fmt: skip


def _memory(serving: list[dict[str, Any]]) -> dict[str, Any]:
    detail = {f"{s['name']} ({s['device']})": s["memory"]["server_vs_http"] for s in _measured(serving)
              if s["memory"].get("server_vs_http") is not None}  # fmt: skip
    return {"aim": f"runtime + redis-server peak memory <= {MEMORY_AIM}x the HTTP server's, same load (worst model)",
            "target": MEMORY_AIM, "detail": detail,
            "met": all(v <= MEMORY_AIM for v in detail.values()) if detail else None}  # fmt: skip


def _batch_one(s: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in s["sweep"] if r["batch"] == 1), None)


def _p50(figures: dict[str, Any] | None) -> float | None:
    return figures["latency_ms"]["p50"] if figures and figures.get("latency_ms") else None


def _per_call(serving: list[dict[str, Any]]) -> dict[str, Any]:
    aim = f"per-call overhead: tabular model at batch 1, runtime >= {PER_CALL_AIM}x the HTTP baseline's calls/s"
    s = next((s for s in _measured(serving) if s["name"] == TABULAR), None)
    row = _batch_one(s) if s else None
    if row is None or row.get("runtime_vs_http") is None:
        return {"aim": aim, "target": PER_CALL_AIM, "detail": {}, "met": None, "note": "not measured"}
    value = row["runtime_vs_http"]
    note = f"p50 a call: runtime {_p50(row['runtime']):.2f} ms, HTTP {_p50(row.get('http')):.2f} ms"
    return {"aim": aim, "target": PER_CALL_AIM, "detail": {"runtime / HTTP": value}, "note": note,
            "met": value >= PER_CALL_AIM}  # fmt: skip


def _trio(serving: list[dict[str, Any]]) -> dict[str, Any]:
    detail = {}
    for s in _measured(serving):
        row = _batch_one(s)
        runtime, direct = _p50(row["runtime"]) if row else None, _p50(row["direct"]) if row else None
        if runtime is not None and direct is not None:
            detail[f"{s['name']} ({s['device']})"] = runtime - direct
    return {"aim": f"runtime trio at batch 1 adds <= {TRIO_AIM_MS} ms (p50) to the direct engine's call, every model",
            "target": TRIO_AIM_MS, "detail": detail, "unit": "ms",
            "met": all(v <= TRIO_AIM_MS for v in detail.values()) if detail else None}  # fmt: skip


def check_aims(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each aim with its per-model ratios and ``met`` (None: nothing to judge it by in this run)."""
    serving = result.get("serving", [])
    return [
        _runtime_vs_direct(serving),
        _runtime_vs_http(serving),
        _autobatch(serving, int(result["plan"]["autobatch_clients"])),
        _pipeline(result.get("pipeline", {})),
        _relay(result.get("relay", {})),
        _steady(result.get("steady", {})),
        _memory(serving),
        _per_call(serving),
        _trio(serving),
    ]
