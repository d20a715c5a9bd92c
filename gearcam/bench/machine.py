"""The machine and software a run measured, recorded in every result file.

Figures from different machines are not comparable; ratios within one run are. So the
results keep the CPU model, core count, load average at the start and the end (others
may share the cores), and the version of every engine and library that was measured.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["gpu_status", "load_average", "machine_info", "versions"]

_PACKAGES = ("onnxruntime", "ai-edge-litert", "tensorflow-cpu", "tensorflow", "torch", "numpy", "redis", "hiredis",
             "starlette", "uvicorn", "Pillow", "matplotlib", "onnx")  # fmt: skip


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": platform.python_version(),
        "load_average_at_start": load_average(),
    }


def versions() -> dict[str, str]:
    """Installed versions of the measured engines and the libraries around them (absent ones left out)."""
    found: dict[str, str] = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    redis_server = _redis_server_version()
    if redis_server:
        found["redis-server"] = redis_server
    return found


def _redis_server_version() -> str | None:
    from gearcam.redis_server import find_redis_server, server_version

    try:
        return ".".join(map(str, server_version(find_redis_server())))
    except Exception:  # no redis-server: the serving sections will say so themselves
        return None


def gpu_status() -> str | None:
    """None when ONNX Runtime's CUDA provider can run here, else why the GPU is not measured."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "not measured: pip install onnxruntime==1.31.1 (the GPU figures need onnxruntime-gpu and a GPU)"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "not measured (no GPU): ONNX Runtime's CUDAExecutionProvider is not available on this machine"
    return None
