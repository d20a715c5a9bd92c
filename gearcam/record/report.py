"""`invoke events`: the events as terminal lines, and the `--since` argument."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import redis

from gearcam.config import EVENTS_STREAM
from gearcam.errors import CallerError
from gearcam.record.catalog import fold_events
from gearcam.record.layout import clip_path

__all__ = ["events_report", "parse_since"]

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now_ms: int | None = None) -> int:
    """``10m``, ``2h``, ``1d`` ago, an ISO date or time (local), or ms since the epoch -> ms."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = value.strip()
    ago = _AGO.match(value)
    if ago:
        return now_ms - int(float(ago.group(1)) * _UNITS[ago.group(2)] * 1000)
    if value.isdigit():
        return int(value)
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError as exc:
        raise CallerError(f"--since {value!r}: give 10m, 2h, 1d, an ISO date/time (2026-12-01T08:00) or ms") from exc


def events_report(client: redis.Redis, data_dir: Path, camera: str | None = None, since: str | None = None) -> str:
    entries = cast(list[Any], client.xrevrange(EVENTS_STREAM, count=5000))
    events = fold_events(entries, camera=camera, since_ms=parse_since(since) if since else None)
    if not events:
        return "no events" + (f" of {camera}" if camera else "") + (f" since {since}" if since else "")
    lines = [f"{'id':<16} {'camera':<10} {'label':<24} {'score':>5} {'start':<19} {'length':>7}  clip"]
    for e in events:
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.start / 1000))
        length = "open" if e.duration_s is None else f"{e.duration_s:.1f}s"
        path = clip_path(data_dir, e.camera, e.start, e.id)
        clip = str(path) if path.exists() else ("-" if e.end is None else "(not recorded)")
        lines.append(f"{e.id:<16} {e.camera:<10} {e.label[:24]:<24} {e.score:>5.2f} {start:<19} {length:>7}  {clip}")
    return "\n".join(lines)
