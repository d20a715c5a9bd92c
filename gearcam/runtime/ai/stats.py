"""Per-key run statistics behind AI.INFO and AI._MODELSCAN, counted as RedisAI 1.2 counts them.

One data point per request: `calls` counts requests (not engine runs), `duration`
adds the microseconds of the engine run that served the request (in an
auto-batched run each request is charged the whole batch), `samples` adds dim 0 of
the request's first output, and a failed request adds a call and an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["RunStats", "StatsRegistry"]


@dataclass
class RunStats:
    key: bytes
    type: str
    backend: str
    device: str
    tag: str
    duration: int = 0
    samples: int = 0
    calls: int = 0
    errors: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def record(self, duration_us: int, samples: int, error: bool = False) -> None:
        with self._lock:
            self.calls += 1
            if error:
                self.errors += 1
            else:
                self.duration += duration_us
                self.samples += samples

    def reset(self) -> None:
        with self._lock:
            self.duration = self.samples = self.calls = self.errors = 0

    def reply(self) -> list[Any]:
        with self._lock:
            samples = -1 if self.type == "SCRIPT" else self.samples
            return [
                "key", self.key, "type", self.type, "backend", self.backend, "device", self.device,
                "tag", self.tag, "duration", self.duration, "samples", samples,
                "calls", self.calls, "errors", self.errors,
            ]  # fmt: skip


class StatsRegistry:
    def __init__(self) -> None:
        self._entries: dict[bytes, RunStats] = {}
        self._lock = threading.Lock()

    def create(self, key: bytes, kind: str, backend: str, device: str, tag: str) -> RunStats:
        """A fresh entry: storing a model again starts its statistics over, as in RedisAI."""
        entry = RunStats(key, kind, backend, device, tag)
        with self._lock:
            self._entries[key] = entry
        return entry

    def ensure(self, key: bytes, kind: str, backend: str, device: str, tag: str) -> RunStats:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (entry.type, entry.backend, entry.device, entry.tag) != (kind, backend, device, tag):
                entry = RunStats(key, kind, backend, device, tag)
                self._entries[key] = entry
            return entry

    def get(self, key: bytes) -> RunStats | None:
        with self._lock:
            return self._entries.get(key)

    def drop(self, key: bytes) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def scan(self, kind: str) -> list[RunStats]:
        with self._lock:
            return [e for e in self._entries.values() if e.type == kind]
