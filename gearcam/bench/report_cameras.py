"""The cameras and recorder sections of a run as Markdown (gearcam.bench.cameras, gearcam.bench.recorder)."""

from __future__ import annotations

from typing import Any

__all__ = ["cameras_lines", "recorder_lines"]


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _latency(row: dict[str, Any]) -> str:
    lat = row["latency_ms"]
    return f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f}" if lat else "–"


def cameras_lines(result: dict[str, Any]) -> list[str]:
    c = result.get("cameras", {})
    lines = ["## Many cameras: motion gating and adaptive sampling off and on", ""]
    if "ramp" not in c:
        return [*lines, f"{c.get('not_measured', 'not measured')}"]
    g = c["gating"]
    on = ", ".join(f"{k} {v}" for k, v in c["on_config"].items())
    capped = " (the largest count tried: the ceiling is higher)" if c["ramp_capped"] else ""
    lines += [
        f"Cameras at {c['fps_per_camera']} fps, each a 640×480 scene that is still {_pct(c['still_share'])} of the "
        f"time (a square moves for 1 s of every 10), {c['seconds']:g} s per count; every frame that runs the model "
        f"({c['model']}) is a hit. *On*: {on}. Sustained: every frame handled, the producer kept the rate, "
        f"camera-to-hit p99 ≤ {c['lag_ms']:.0f} ms.", "",
        f"- **Inferences saved by gating** on one camera over {c['gating_seconds']:g} s: "
        f"**{_pct(g['inferences_saved'])}** "
        f"({g['on']['inferred']} of {g['on']['sent']} frames ran with gating on, {g['off']['inferred']} of "
        f"{g['off']['sent']} off).",
        f"- **CPU per camera** (runtime + redis + Gears workers, at the highest count sustained): "
        f"{_f(c['cpu_cores_per_camera_off'], 3)} cores off, {_f(c['cpu_cores_per_camera_on'], 3)} cores on.",
        f"- **10 fps cameras sustained**: {c['cameras_sustained_off']} off, {c['cameras_sustained_on']} on{capped}: "
        f"**{_f(c['cameras_on_vs_off'], 1)}×**.", "",
        "| mode | cameras | frames sent | handled | with motion | ran the model | interval raised / lowered "
        "| latency p50 / p95 / p99 ms | CPU cores | per camera | machine | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for mode in ("off", "on"):
        for r in c["ramp"][mode]:
            lines.append(
                f"| {mode} | {r['cameras']} | {r['sent']} | {r['handled']} | {r['motion']} | {r['inferred']} "
                f"| {r['adapt_raise']} / {r['adapt_lower']} | {_latency(r)} | {_f(r['cpu_cores'], 2)} "
                f"| {_f(r['cpu_cores_per_camera'], 3)} | {_f(r['machine_cores'], 2)} "
                f"| {'yes' if r['sustained'] else 'no'} |"
            )
    return lines


def recorder_lines(result: dict[str, Any]) -> list[str]:
    rec = result.get("recorder", {})
    lines = ["## Recorder: memory and CPU per camera", ""]
    if "roll_s" not in rec:
        return [*lines, f"{rec.get('not_measured', 'not measured')}"]
    lines += [
        f"`python -m gearcam.record` cutting one clip per camera at once (640×480, 10 fps, {rec['roll_s']:g} s before "
        f"and after each event). One camera with one event a minute costs "
        f"**{_f(100 * rec['cpu_cores_per_camera_at_one_event_a_minute'], 1)} % of a core**; peak memory "
        f"**{_f(rec['peak_rss_mb'], 0)} MiB**, growing {_f(rec['peak_rss_growth_mb_per_camera'], 1)} MiB a camera.", "",
        "| cameras | clip s | codec | clips | failures | KB a clip | CPU s | CPU s a clip | CPU s a video second "
        "| idle MiB | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rec["rows"]:
        lines.append(
            f"| {r['cameras']} | {_f(r['clip_seconds'], 0)} | {r['codec']} | {r['clips']} | {r['failures']} "
            f"| {_f(r['bytes_per_clip'] / 1024, 0)} | {_f(r['cpu_seconds'], 2)} | {_f(r['cpu_seconds_per_clip'], 2)} "
            f"| {_f(r['cpu_seconds_per_video_second'], 3)} | {_f(r['idle_rss_mb'], 0)} | {_f(r['peak_rss_mb'], 0)} |"
        )
    return lines
