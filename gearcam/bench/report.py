"""One run's results as Markdown tables: the aims, serving per model, clients, memory, pipeline, cameras, recorder."""

from __future__ import annotations

from typing import Any

from gearcam.bench.report_cameras import cameras_lines, recorder_lines

__all__ = ["format_markdown"]


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _lat(m: dict[str, Any] | None) -> str:
    if not m:
        return "–"
    lat = m["latency_ms"]
    return f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f}"


def _ips(m: dict[str, Any] | None) -> float | None:
    return None if not m else float(m["inferences_per_s"])


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "not met", None: "not measured"}[met]


def _table(title: str, intro: str, columns: list[str]) -> list[str]:
    """A section's heading, its paragraph, and the head of its table (the rule follows from the columns)."""
    return [f"## {title}", "", intro, "", f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]


def _aims(result: dict[str, Any]) -> list[str]:
    lines = ["## Aims", "", "| aim | verdict | measured (ratio against the same run's baseline) |", "|---|---|---|"]
    for aim in result.get("aims", []):
        unit = aim.get("unit", "x")
        parts = [f"{name} {_x(v) if unit == 'x' else f'{_f(v, 2)} {unit}'}" for name, v in aim["detail"].items()]
        parts += [f"{name} {_x(v['autobatch_vs_none'])} (engine does not scale: batch gain "
                  f"{_x(v['engine_batch_scaling'])})" for name, v in aim.get("not_scaling", {}).items()]  # fmt: skip
        if aim.get("note"):
            parts.append(str(aim["note"]))
        lines.append(f"| {aim['aim']} | {_verdict(aim['met'])} | {'; '.join(parts) or '–'} |")
    return lines


def _serving(result: dict[str, Any]) -> list[str]:
    lines = _table("Model serving",
                   "Inferences/s (median window) and client latency p50 / p95 / p99 in ms. *direct*: the engine called "
                   "in one process (ceiling); *runtime*: AI.TENSORSET + AI.MODELEXECUTE + AI.TENSORGET pipelined in "
                   "one round trip; *one at a time*: the same three commands each waiting for its reply; *HTTP*: "
                   "Starlette + uvicorn on the same engine.",
                   ["model", "device", "batch", "direct", "runtime", "runtime / direct", "runtime latency ms", "HTTP",
                    "runtime / HTTP", "one at a time", "pipelined / one at a time"])  # fmt: skip
    for s in result.get("serving", []) + result.get("gpu", []):
        if "sweep" not in s:
            lines.append(f"| {s['name']} | {s.get('device', 'CPU')} | | {s['not_measured']} | | | | | | | |")
            continue
        for r in s["sweep"]:
            lines.append(
                f"| {s['name']} | {s['device']} | {r['batch']} | {_f(_ips(r['direct']))} | {_f(_ips(r['runtime']))} "
                f"| {_x(r['runtime_vs_direct'])} | {_lat(r['runtime'])} | {_f(_ips(r.get('http')))} "
                f"| {_x(r.get('runtime_vs_http'))} | {_f(_ips(r.get('one_at_a_time')))} "
                f"| {_x(r.get('pipelined_vs_one_at_a_time'))} |"
            )
    return lines


def _engine_time(result: dict[str, Any]) -> list[str]:
    lines = _table("Engine time inside the runtime",
                   "Where a pipelined call's time goes, one client: the engine's mean run time in the direct process "
                   "and inside the runtime (AI.INFO's duration over its calls, counted over the timed windows), and "
                   "the rest of the runtime's mean call (the trip there and back, the three commands, the write to "
                   "Redis), of which *waiting in the queue* is the mean time from a run's hand-over to the engine "
                   "thread to its start (`ai_queue_<device>_wait_seconds` of INFO MODULES over the requests queued; "
                   "– where every run was made inline). An engine that runs as fast inside the runtime as alone "
                   "(ratio near 1) leaves the gap to the rest. *redis-server a call*: its CPU ms and minor page "
                   "faults over the same windows, per call (storing the input tensor; a fault is a fresh page the "
                   "kernel zeroes, see docs/runtime.md, \"Large tensors and the backing Redis' allocator\").",
                   ["model", "device", "batch", "engine alone ms", "engine in the runtime ms", "in the runtime / alone",
                    "runtime call ms", "outside the engine ms", "waiting in the queue ms",
                    "redis-server a call: CPU ms", "page faults"])  # fmt: skip
    for s in result.get("serving", []) + result.get("gpu", []):
        for r in s.get("sweep", []):
            engine, call = r.get("engine_in_runtime", {}).get("mean_ms"), r["runtime"]["latency_ms"].get("mean")
            outside = call - engine if call is not None and engine is not None else None
            redis_work, waited = r.get("redis_per_call", {}), r.get("engine_in_runtime", {}).get("queue_wait_ms")
            lines.append(
                f"| {s['name']} | {s['device']} | {r['batch']} | {_f(r['direct']['latency_ms'].get('mean'), 2)} "
                f"| {_f(engine, 2)} | {_x(r.get('engine_in_runtime_vs_direct'))} | {_f(call, 2)} | {_f(outside, 2)} "
                f"| {_f(waited, 2)} | {_f(redis_work.get('cpu_ms'), 2)} | {_f(redis_work.get('minor_faults'), 0)} |"
            )
    return lines


def _clients(result: dict[str, Any]) -> list[str]:
    lines = _table("Concurrent single-item clients, auto-batching off and on",
                   f"Server auto-batching: the model stored a second time with BATCHSIZE "
                   f"{result['plan']['autobatch_size']}. Inferences/s, and p50 / p95 / p99 latency in ms. *Batch "
                   "formed*: requests over the queue's engine runs while auto-batching (clients that wait for their "
                   "replies keep about half of themselves queued while a batch runs).",
                   ["model", "clients", "no auto-batching", "latency ms", "auto-batching", "latency ms", "ratio",
                    "batch formed", "engine gain batch 1 → largest"])  # fmt: skip
    for s in result.get("serving", []) + result.get("gpu", []):
        for r in s.get("clients", []):
            lines.append(
                f"| {s['name']} ({s['device']}) | {r['clients']} | {_f(_ips(r['no_autobatch']))} "
                f"| {_lat(r['no_autobatch'])} | {_f(_ips(r['autobatch']))} | {_lat(r['autobatch'])} "
                f"| {_x(r['autobatch_vs_none'])} | {_f(r.get('batching', {}).get('mean_batch'), 2)} "
                f"| {_x(s['engine_batch_scaling']['ratio'])} |"
            )
    return lines


def _memory(result: dict[str, Any]) -> list[str]:
    lines = _table("Server memory (peak resident set, MiB)",
                   "Each backend in a fresh runtime process and a fresh redis-server (which holds the tensors and the "
                   "model blob); the HTTP server is a fresh process too. *Peak*: under the HTTP server's load (one "
                   "model, one client, the batch sweep); *with auto-batching*: after the auto-batched copy of the "
                   "model and the client sweep too.",
                   ["model", "backend", "precision", "runtime before the model", "runtime peak", "redis-server peak",
                    "server total", "HTTP server peak", "server / HTTP",
                    "server total with auto-batching"])  # fmt: skip
    for s in result.get("serving", []):
        if "memory" not in s:
            continue
        m = s["memory"]
        lines.append(
            f"| {s['name']} | {s['backend']} | {s['precision']} | {_f(m['runtime_idle_mb'], 0)} "
            f"| {_f(m['runtime_peak_mb'], 0)} | {_f(m['redis_peak_mb'], 0)} | {_f(m['server_peak_mb'], 0)} "
            f"| {_f(m['http_server_peak_mb'], 0)} | {_x(m.get('server_vs_http'))} "
            f"| {_f(m.get('server_peak_all_mb'), 0)} |"
        )
    return lines


def _pipeline(result: dict[str, Any]) -> list[str]:
    p = result.get("pipeline", {})
    lines = ["## Whole pipeline: camera:0 → Gears → cats", ""]
    if "rates" not in p:
        return [*lines, f"{p.get('not_measured', 'not measured')}"]
    alone = p["alone"]
    lines += [
        f"Model {p['model']} stored with BATCHSIZE {p['autobatch']}; 640×480 JPEG frames of {p['frame_bytes']:,} "
        f"bytes; every frame is a hit (target classes 0-999). Baseline, decode + preprocess + inference alone in one "
        f"process at batch {alone['best_batch']}: **{_f(alone['frames_per_s_around_sweep'])} frames/s**, the "
        f"median of its {len(alone['window_rates'])} windows, {len(p['rates'])} of them one after each offered rate "
        f"({_f(min(alone['window_rates']))} to {_f(max(alone['window_rates']))}; the offered rates are fractions of "
        f"the first figure, {_f(alone['frames_per_s'])}). Highest sustained rate: "
        f"**{_f(p['highest_sustained_fps'])} frames/s** ({_x(p['pipeline_vs_alone'])} the baseline); "
        f"highest achieved under overload {_f(p['highest_achieved_fps'])} frames/s.", "",
        "| offered frames/s | achieved | sent | in cats | dropped or late | lagging (> 1 s) "
        "| latency p50 / p95 / p99 ms | runtime CPU (cores) | Gears workers CPU | redis CPU | whole machine CPU "
        "| engine busy | frames a Gears execution / a model run | page faults a frame: runtime / workers / redis "
        "| sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in p["rates"]:
        lat = r["latency_ms"]
        latency = f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f}" if lat else "–"
        lines.append(
            f"| {_f(r['offered_fps'])} | {_f(r['achieved_fps'])} | {r['sent']} | {r['delivered']} "
            f"| {r['dropped_or_late']} | {r['lagging']} | {latency} | {_f(r['cpu_cores']['runtime'], 2)} "
            f"| {_f(r['cpu_cores'].get('gears_workers'), 2)} "
            f"| {_f(r['cpu_cores']['redis'], 2)} | {_f(r['cpu_cores'].get('machine'), 2)} "
            f"| {_f(r.get('engine_busy'), 2)} | {_grouping(r)} | {_faults(r.get('page_faults_per_frame'))} "
            f"| {'yes' if r['sustained'] else 'no'} |"
        )
    return lines + _footprint(p.get("footprint"))


def _grouping(row: dict[str, Any]) -> str:
    """Frames a Gears execution and a model run (runs before 2026-12-05 17:00 did not count them)."""
    if "batch_formed" not in row:
        return "–"
    return f"{_f(row['frames_per_execution'], 1)} / {_f(row['batch_formed'], 2)}"


def _faults(per_frame: dict[str, float | None] | None) -> str:
    """A row's page faults a frame (runs before 2026-12-05 did not count them)."""
    if not per_frame:
        return "–"
    return " / ".join(_f(per_frame.get(k), 1) for k in ("runtime", "gears_workers", "redis"))


def _footprint(f: dict[str, Any] | None, when: str = "at the end of the sweep") -> list[str]:
    if not f:
        return []
    streams = ", ".join(f"{k} {_f(s['mb'])} MiB ({s['entries']} entries)" for k, s in f["streams"].items())
    return [
        "",
        f"Memory {when} (MiB): runtime "
        f"**{_f(f['runtime_rss_mb'])}** resident, Gears workers {_f(f['gears_workers_rss_mb'])}; redis-server "
        f"{_f(f['redis_used_mb'])} used ({_f(f['redis_rss_mb'])} resident), of which the streams "
        f"{_f(f['redis_streams_mb'])} ({streams or 'none'}) and the rest {_f(f['redis_rest_mb'])}. The streams' "
        "share is their MAXLEN times the frame size.",
    ]


def _steady(result: dict[str, Any]) -> list[str]:
    st = result.get("steady", {})
    lines = ["## Steady memory: one camera on the LiteRT int8 model", ""]
    if "samples" not in st:
        return [*lines, f"{st.get('not_measured', 'not measured')}"]
    samples = ", ".join(f"{_f(s['runtime_rss_mb'])} at {s['s']:.0f} s" for s in st["samples"])
    return [
        *lines,
        f"Model {st['model']}, one camera at {_f(st['fps'])} frames/s of {st['frame_bytes']:,}-byte JPEG frames for "
        f"{st['seconds']:.0f} s ({st['frames']} frames, {st['inferred']} classified), as `invoke up` runs it. Runtime "
        f"resident memory (MiB): {_f(st['before_model_mb'])} before the model, then {samples}; at the end "
        f"**{_f(st['steady_mb'])}**.",
        *_footprint(st["footprint"], "of the whole stack at the end"),
    ]


def _relay(result: dict[str, Any]) -> list[str]:
    relay = result.get("relay", {})
    lines = ["## Plain commands through the runtime: XADD of camera frames", ""]
    if "rows" not in relay:
        return [*lines, f"{relay.get('not_measured', 'not measured')}"]
    lines += [
        "XADD of camera frames (MAXLEN ~ 1000) to redis-server directly, relayed by the runtime to the same "
        "redis-server, and through a bare forwarder (bytes passed on, nothing parsed: the floor for any relaying "
        "process); frames/s and client latency p50 / p95 / p99 in ms per call. 400 KB is a 1080p JPEG, more than "
        "one read of a socket.", "",
        "| frame KB | frames per call | direct | latency ms | relayed | latency ms | relayed / direct "
        "| bare forwarder | latency ms | forwarder / direct |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in relay["rows"]:
        bare = r.get("forwarded")  # (runs before 2026-12-02 did not measure it)
        size = r.get("frame_bytes", relay["frame_bytes"])  # (runs before 2026-12-04 had one size)
        lines.append(
            f"| {size // 1024} | {r['pipeline']} | {_f(_ips(r['direct']))} | {_lat(r['direct'])} "
            f"| {_f(_ips(r['relayed']))} | {_lat(r['relayed'])} | {_x(r['relayed_vs_direct'])} | {_f(_ips(bare))} "
            f"| {_lat(bare)} | {_x(r.get('forwarded_vs_direct'))} |"
        )
    return lines


def _rows_under(result: dict[str, Any], key: str, title: str, intro: str,
                columns: list[str]) -> tuple[list[str], list[dict[str, Any]]]:  # fmt: skip
    """A section's heading, paragraph and table head, and its rows; or its `not measured` line and no rows."""
    section = result.get(key, {})  # (older runs may not have measured it)
    if "rows" not in section:
        return [f"## {title}", "", f"{section.get('not_measured', 'not measured')}"], []
    return _table(title, intro, columns), section["rows"]


def _tls(result: dict[str, Any]) -> list[str]:
    lines, rows = _rows_under(
        result, "tls", "What TLS costs",
        "One client, one call at a time, showing a client certificate: the runtime's plain port and its TLS port "
        "(`--tls-port`), and its backing redis-server's plain port and TLS port (`tls-port`), in turns; calls/s "
        "and latency p50 / p95 / p99 in ms. TLS / plain of the runtime beside Redis' own tells what the runtime "
        "adds to what TLS costs any server.",
        ["call", "runtime", "latency ms", "runtime TLS", "latency ms", "TLS / plain", "redis-server", "latency ms",
         "redis-server TLS", "latency ms", "TLS / plain"],
    )  # fmt: skip
    for r in rows:
        cells = [f"{_f(_ips(r[way]))} | {_lat(r[way])}" for way in ("runtime", "runtime TLS", "redis", "redis TLS")]
        lines.append(f"| {r['call']} | {cells[0]} | {cells[1]} | {_x(r['runtime_tls_vs_plain'])} | {cells[2]} "
                     f"| {cells[3]} | {_x(r['redis_tls_vs_plain'])} |")  # fmt: skip
    return lines


def _decode(result: dict[str, Any]) -> list[str]:
    lines, rows = _rows_under(
        result,
        "decode",
        "Decoding a camera frame",
        "Decode + preprocess of one JPEG frame (the sample picture filling the frame, quality 85) into the "
        "model's input, as the Gears script does it: a frame of 1024 pixels or more on its shorter side is "
        "decoded at 1/2, 1/4 or 1/8 scale by the JPEG decoder (never under 512), against a full decode of "
        "the same frame; frames/s of one thread and latency p50 / p95 / p99 in ms.",
        ["frame", "KB", "decoded at", "reduced", "latency ms", "full", "latency ms", "reduced / full"],
    )
    for r in rows:
        at = "×".join(str(n) for n in r["decoded_at"])
        lines.append(
            f"| {r['width']}×{r['height']} | {r['frame_bytes'] / 1024:,.0f} | {at} | {_f(_ips(r['reduced']))} "
            f"| {_lat(r['reduced'])} | {_f(_ips(r['full']))} | {_lat(r['full'])} | {_x(r['reduced_vs_full'])} |"
        )
    return lines


def _write_ack_line(result: dict[str, Any]) -> str:
    modes = sorted({s["write_ack"] for s in result.get("serving", []) + result.get("gpu", []) if s.get("write_ack")})
    if not modes:
        return ""
    return (f"AI writes were answered once {' / '.join(modes)} (`ai_write_ack`; the backing Redis ran without an AOF; "
            "docs/runtime.md, \"When a write is answered\").")  # fmt: skip


def format_markdown(result: dict[str, Any], plots: list[str] | None = None) -> str:
    """The whole run as Markdown; ``plots`` are image paths relative to where the text will live."""
    m = result["machine"]
    head = [
        f"# gearcam benchmark: {result['plan']['name']} run, {result['started']}", "",
        f"Machine: {m['cpu']}, {m['cpus']} cores, {m['memory_gb']} GB, {m['platform']}; load average at start "
        f"{m['load_average_at_start']}, at end {m.get('load_average_at_end')}. Run took {result['duration_s']:.0f} s.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".",
        f"GPU: {result['gpu_status'] or 'measured'}. Every rate is the median of {result['plan']['repeats']} windows "
        f"of {result['plan']['window_s']} s; every ratio compares two figures of this run, whose windows took turns "
        "(direct engine, runtime and HTTP server at each batch; XADD direct, relayed and forwarded; decode + infer "
        "alone between the pipeline's offered rates).",
        "The *tabular* model has random weights (not a trained model): it measures per-call overhead.",
        _write_ack_line(result), "",
    ]  # fmt: skip
    body = _aims(result) + [""] + _serving(result) + [""] + _engine_time(result) + [""] + _clients(result)
    body += [""] + _memory(result)
    body += (
        [""]
        + _relay(result)
        + [""]
        + _tls(result)
        + [""]
        + _decode(result)
        + [""]
        + _pipeline(result)
        + [""]
        + _steady(result)
    )
    body += [""] + cameras_lines(result) + [""] + recorder_lines(result)
    if plots:
        body += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(head + body) + "\n"
