"""PNG plots of one run with matplotlib's Agg backend (no display needed).

``throughput.png``: inferences/s against batch size through the runtime, one line per
backend, precision and device (the direct engine dotted in the same colour), like the
Jetson article's figure. ``tabular.png``: the same for the tabular model, with the HTTP
baseline. ``latency.png`` and ``memory.png``: bars per model. ``pipeline.png``: achieved
against offered frame rate, with p99 latency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_plots"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ips(m: dict[str, Any] | None) -> float:
    return float(m["inferences_per_s"]) if m else float("nan")


def _throughput(plt: Any, models: list[dict[str, Any]], path: Path, title: str, http: bool) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    for i, s in enumerate(models):
        color = f"C{i % 10}"
        batches = [r["batch"] for r in s["sweep"]]
        label = f"{s['backend']} {s['precision']} {s['device']}"
        ax.plot(batches, [_ips(r["runtime"]) for r in s["sweep"]], "o-", color=color, label=f"{label} (runtime)")
        ax.plot(batches, [_ips(r["direct"]) for r in s["sweep"]], ":", color=color, label=f"{label} (direct)")
        if http and any("http" in r for r in s["sweep"]):
            ax.plot(batches, [_ips(r.get("http")) for r in s["sweep"]], "s--", color=color, alpha=0.6,
                    label=f"{label} (HTTP)")  # fmt: skip
    ax.set_xscale("log", base=2)
    sizes = sorted({r["batch"] for s in models for r in s["sweep"]})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.minorticks_off()
    ax.set_xlabel("tensor batch size")
    ax.set_ylabel("inferences / s")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bars(plt: Any, names: list[str], series: dict[str, list[float]], ylabel: str, title: str, path: Path,
          log: bool = False) -> None:  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    if log:
        ax.set_yscale("log")
    width = 0.8 / max(1, len(series))
    for j, (label, values) in enumerate(series.items()):
        ax.bar([i + j * width for i in range(len(names))], values, width, label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(names))], names, rotation=20, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pipeline(plt: Any, pipeline: dict[str, Any], path: Path) -> None:
    rows = pipeline["rates"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    offered = [r["offered_fps"] for r in rows]
    ax.plot(offered, [r["achieved_fps"] for r in rows], "o-", label="achieved frames/s")
    ax.plot(offered, offered, ":", color="grey", label="offered")
    ax.axhline(pipeline["alone"]["frames_per_s_around_sweep"], color="C3", ls="--",
               label="decode + preprocess + inference alone")  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.set_xlabel("offered camera frames / s")
    ax.set_ylabel("frames / s reaching cats")
    lat = ax.twinx()
    lat.plot(offered, [r["latency_ms"]["p99"] if r["latency_ms"] else float("nan") for r in rows], "s--", color="C1",
             label="p99 latency (ms)")  # fmt: skip
    lat.set_ylabel("camera → cats p99 latency, ms")
    ax.legend(loc="upper left", fontsize=7)
    lat.legend(loc="lower right", fontsize=7)
    ax.set_title("whole pipeline", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(result: dict[str, Any], out: Path) -> list[Path]:
    """Write every plot the run has data for into ``out``; returns their paths."""
    plt = _pyplot()
    measured = [s for s in result.get("serving", []) + result.get("gpu", []) if "sweep" in s]
    images = [s for s in measured if s["name"] != "tabular"]
    tabular = [s for s in measured if s["name"] == "tabular"]
    written: list[Path] = []
    if images:
        _throughput(plt, images, out / "throughput.png", "EfficientNet-Lite0: inferences/s by batch size", False)
        written.append(out / "throughput.png")
    if tabular:
        _throughput(plt, tabular, out / "tabular.png", "tabular model (random weights): inferences/s", True)
        written.append(out / "tabular.png")
    if measured:
        names = [f"{s['backend']} {s['precision']}" if s["name"] != "tabular" else "tabular" for s in measured]
        first = [s["sweep"][0]["runtime"]["latency_ms"] for s in measured]
        batch = measured[0]["sweep"][0]["batch"]
        _bars(plt, names, {q: [lat[q] for lat in first] for q in ("p50", "p95", "p99")}, "ms",
              f"client latency through the runtime at batch {batch} (TENSORSET+MODELEXECUTE+TENSORGET)",
              out / "latency.png", log=True)  # fmt: skip
        written.append(out / "latency.png")
        mem = [s["memory"] for s in measured if s["device"] == "CPU"]
        mem_names = [n for n, s in zip(names, measured, strict=True) if s["device"] == "CPU"]
        nan = float("nan")
        _bars(plt, mem_names, {
            "runtime": [m["runtime_peak_mb"] or nan for m in mem],
            "redis-server": [m["redis_peak_mb"] or nan for m in mem],
            "HTTP server": [m["http_server_peak_mb"] or nan for m in mem],
        }, "MiB (peak RSS)", "server peak memory per backend", out / "memory.png")  # fmt: skip
        written.append(out / "memory.png")
    if "rates" in result.get("pipeline", {}) and result["pipeline"]["rates"]:
        _pipeline(plt, result["pipeline"], out / "pipeline.png")
        written.append(out / "pipeline.png")
    return written
