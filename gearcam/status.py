"""What `invoke status` prints and `invoke up`'s live line shows: read from Redis, formatted as text.

Everything comes from documented commands (RG.DUMPREGISTRATIONS, AI.MODELGET META, AI.INFO,
XLEN, HGETALL), so it reads the runtime and a Redis with the modules alike. A part that
cannot be read (no RG.* or AI.* commands, no model yet) is shown as such, not fatal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ResponseError

from gearcam.camera.state import CameraState
from gearcam.config import (
    CAMERA_PREFIX,
    CONFIG_KEY,
    STATS_ERRORS_KEY,
    STATS_NOTIFY_KEY,
    STATS_PIPELINE_KEY,
    STATS_PREFIX,
    STATS_RECORD_KEY,
    Settings,
)
from gearcam.notify.counts import COUNTERS as NOTIFY_COUNTERS
from gearcam.record.stats import COUNTERS as RECORD_COUNTERS
from gearcam.redis_text import text

__all__ = ["STAGES", "camera_states", "registrations", "status_line", "status_report", "table"]

STAGES = ("seen", "forwarded", "sampled", "inferred", "hits", "errors")
ADAPT_DECISIONS = ("adapt_raise", "adapt_lower", "adapt_max")  # adaptive sampling (docs/pipeline.md)


def _text(value: Any) -> str:
    return "-" if value is None else text(value)


def _pairs(flat: Any) -> dict[str, Any]:
    if isinstance(flat, dict):
        return {_text(k): v for k, v in flat.items()}
    items = list(flat or [])
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _command(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    raw: dict[bytes, bytes] = client.hgetall(key)  # type: ignore[assignment]
    return {_text(k): _text(v) for k, v in raw.items()}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers], *[[_text(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def registrations(client: redis.Redis) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """RG.DUMPREGISTRATIONS as (fields, RegistrationData) of each registration, names as text."""
    entries = [_pairs(entry) for entry in _command(client, "RG.DUMPREGISTRATIONS") or []]
    return [(fields, _pairs(fields.get("RegistrationData"))) for fields in entries]


def _registrations(client: redis.Redis) -> str:
    try:
        found = registrations(client)
    except ResponseError as exc:
        return f"(no RG.* commands here: {exc})"
    rows = []
    for fields, data in found:
        args = _pairs(data.get("args"))
        rows.append([fields.get("id"), fields.get("reader"), args.get("stream") or args.get("regex"), data.get("mode"),
                     data.get("numTriggered"), data.get("numSuccess"), data.get("numFailures"),
                     data.get("lastError")])  # fmt: skip
    if not rows:
        return "(none: run `python -m gearcam.loader`)"
    return table(["id", "reader", "on", "mode", "triggered", "ok", "failed", "last error"], rows)


def _streams(client: redis.Redis, hits_stream: str) -> list[str]:
    cameras = sorted(_text(k) for k in client.scan_iter(match=f"{CAMERA_PREFIX}*", count=1000, _type="STREAM"))
    return [*cameras, "all", hits_stream]


def _model(client: redis.Redis, key: str) -> str:
    try:
        meta = _pairs(_command(client, "AI.MODELGET", key, "META"))
    except ResponseError as exc:
        return f"{key}: {exc}"
    rows = [[key, meta.get("backend"), meta.get("device"), meta.get("tag"), meta.get("batchsize"),
             meta.get("minbatchsize")]]  # fmt: skip
    headers = ["key", "backend", "device", "tag", "batchsize", "minbatchsize"]
    try:
        info = _pairs(_command(client, "AI.INFO", key))
        headers += ["calls", "errors", "duration us"]
        rows[0] += [info.get("calls"), info.get("errors"), info.get("duration")]
    except ResponseError:
        pass
    return table(headers, rows)


def camera_states(client: redis.Redis) -> list[CameraState]:
    """The state of every camera that described itself in gearcam:stats:camera:<n>."""
    keys = sorted(_text(k) for k in client.scan_iter(match=f"{STATS_PREFIX}{CAMERA_PREFIX}*", count=1000))
    states = [CameraState.from_hash(key[len(STATS_PREFIX) :], _hash(client, key)) for key in keys]
    return [state for state in states if state.known]


def _adaptive(pipeline: dict[str, str], per_camera: dict[str, dict[str, str]]) -> str:
    """Decisions counted, the last window's p99, and each adapted camera's interval with its reason."""
    if not any(d in pipeline for d in ADAPT_DECISIONS):
        return "(no decision yet: off unless latency_budget_ms > 0 in gearcam:config or a camera's hash)"
    counts = " ".join(f"{d[len('adapt_') :]} {pipeline.get(d, '0')}" for d in ADAPT_DECISIONS)
    rows = [[s, c["interval"], c.get("interval_reason", "")] for s, c in per_camera.items() if "interval" in c]
    body = f"decisions: {counts} | last window p99 {pipeline.get('latency_p99_ms', '-')} ms"
    return body + ("\n" + table(["stream", "interval", "reason"], rows) if rows else "")


def _service_counters(client: redis.Redis, key: str, names: Sequence[str]) -> str:
    """A service's counters hash (the recorder's, the notifier's), or why there is none."""
    counters = _hash(client, key)
    if not counters:
        return "(no counters yet: the service has not run, or has had nothing to do)"
    rows = [[name, counters.get(name, "0")] for name in names]
    extra = sorted((k, v) for k, v in counters.items() if k not in names)
    return table(["counter", "value"], rows + [list(kv) for kv in extra])


def status_report(client: redis.Redis, settings: Settings) -> str:
    """Registrations, counters, stream lengths and the model, as text tables."""
    config = _hash(client, CONFIG_KEY)
    hits_stream = config.get("hits_stream", settings.pipeline.hits_stream)
    model_key = config.get("model_key", settings.models.key)
    pipeline = _hash(client, STATS_PIPELINE_KEY)
    errors = _hash(client, STATS_ERRORS_KEY)
    streams = _streams(client, hits_stream)
    per_camera = {s: _hash(client, f"{STATS_PREFIX}{s}") for s in streams if s.startswith(CAMERA_PREFIX)}
    camera_fields = ["produced", "dropped", "frames", "motion", "sampled", "still", "inferred", "hits", "errors"]
    states = {state.stream: state.describe() for state in camera_states(client)}
    cameras = table(["stream", *camera_fields, "interval"],
                    [[s, *(c.get(f, "0") for f in camera_fields), c.get("interval", "-")]
                     for s, c in per_camera.items()]) if per_camera else "(no streams)"  # fmt: skip
    sections = [
        ("Gears registrations", _registrations(client)),
        ("Pipeline counters", table(["stage", "count"], [[s, pipeline.get(s, "0")] for s in STAGES])
         + (f"\nlast error: {pipeline['last_error']}" if "last_error" in pipeline else "")
         + (f"\nconfig problem: {pipeline['config_error']}" if "config_error" in pipeline else "")),
        ("Errors by reason", table(["reason", "count"], sorted(errors.items())) if errors else "(none)"),
        ("Cameras", cameras + "".join(f"\n{line}" for line in states.values())),
        ("Adaptive sampling", _adaptive(pipeline, per_camera)),
        ("Recorder (gearcam:stats:record)", _service_counters(client, STATS_RECORD_KEY, RECORD_COUNTERS)),
        ("Notifier (gearcam:stats:notify)", _service_counters(client, STATS_NOTIFY_KEY, NOTIFY_COUNTERS)),
        ("Streams", table(["stream", "length"], [[s, client.xlen(s)] for s in streams])),
        ("Model", _model(client, model_key)),
        (f"Config ({CONFIG_KEY})", table(["field", "value"], sorted(config.items())) if config else "(not written)"),
    ]  # fmt: skip
    return "\n\n".join(f"{title}\n{body}" for title, body in sections)


def status_line(client: redis.Redis, hits_stream: str = "cats") -> str:
    """One line for a terminal: the stage counters and the two stream lengths."""
    pipeline = _hash(client, STATS_PIPELINE_KEY)
    counts = " ".join(f"{stage} {pipeline.get(stage, '0')}" for stage in STAGES)
    line = f"{counts} | all {client.xlen('all')} {hits_stream} {client.xlen(hits_stream)}"
    if "last_ms" in pipeline:
        line += f" | {pipeline['last_ms']} ms"
    for state in camera_states(client):
        if not state.connected:
            line += f" | {state.describe()}"
    if "config_error" in pipeline:
        line += f" | {pipeline['config_error']}"
    elif pipeline.get("last_error_ms", "").isdigit() and time.time() * 1000 - int(pipeline["last_error_ms"]) < 10000:
        line += f" | last error: {pipeline.get('last_error', '')}"
    return line
