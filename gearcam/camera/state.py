"""A camera's connection state, as the producer writes it into ``gearcam:stats:<stream>`` and readers show it.

Fields (next to the counters in the same hash): ``source`` (its name, never a password),
``connected`` (1 or 0), ``retrying_since`` (ms since the epoch, while it retries), ``source_error``
and ``state_ms`` (when the state was last written). `invoke status`, `invoke up`'s live line and
the pages' ``/healthz`` and ``/metrics`` read them through ``CameraState``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CONNECTED", "LAST_ERROR", "RETRYING_SINCE", "SOURCE", "STATE_MS", "CameraState"]

SOURCE = "source"
CONNECTED = "connected"
RETRYING_SINCE = "retrying_since"
LAST_ERROR = "source_error"
STATE_MS = "state_ms"


@dataclass(frozen=True)
class CameraState:
    """One camera stream's state; ``known`` is False for a stream no producer has described."""

    stream: str
    known: bool
    source: str = ""
    connected: bool = False
    retrying_since_ms: int | None = None
    last_error: str = ""

    @classmethod
    def from_hash(cls, stream: str, fields: Mapping[str, str]) -> CameraState:
        if CONNECTED not in fields:
            return cls(stream, False)
        since = fields.get(RETRYING_SINCE, "")
        return cls(stream, True, fields.get(SOURCE, ""), fields.get(CONNECTED) == "1",
                   int(since) if since.isdigit() else None, fields.get(LAST_ERROR, ""))  # fmt: skip

    def retrying_for(self, now_ms: int | None = None) -> float | None:
        """Seconds it has been retrying, or None while connected."""
        if self.connected or self.retrying_since_ms is None:
            return None
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0.0, (now - self.retrying_since_ms) / 1000)

    def as_dict(self) -> dict[str, object]:
        """For JSON (``/healthz``)."""
        since = self.retrying_since_ms
        return {"source": self.source, "connected": self.connected,
                "retrying_since": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since / 1000)) if since else None,
                "last_error": self.last_error or None}  # fmt: skip

    def describe(self) -> str:
        """'camera:0 connected (samples)' or 'camera:0 RETRYING since 12:00:01 (42 s): <error>'."""
        if not self.known:
            return f"{self.stream}: no state yet"
        if self.connected:
            return f"{self.stream} connected ({self.source})"
        since = self.retrying_since_ms
        when = time.strftime("%H:%M:%S", time.localtime(since / 1000)) if since else "?"
        return f"{self.stream} RETRYING since {when} ({self.retrying_for() or 0:.0f} s): {self.last_error}"
