"""Engine sessions recently loaded, for an AI.MODELSTORE of the same blob (re-uploads, DEL then STORE).

Loading a model into its engine takes milliseconds to seconds; RedisAI does it on Redis'
main thread, so a MODELSTORE followed by a MODELEXECUTE sees nothing in between. The
runtime loads in a worker thread while other clients go on: storing the same blob again
(the loader re-uploading on every deploy; RedisAI's tests deleting and storing one model
from 20 clients) would pay the load each time and leave a wide window for other clients.
An engine is reused when the backend, device, declared inputs and outputs and the blob's
SHA-256 agree, within `ttl_s` of its last use. TFLITE interpreters are never shared (they
run one call at a time); the other engines run calls from several threads at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence

from gearcam.runtime.ai.engines import EngineModel

__all__ = ["EngineReuse"]

_SHAREABLE = {"ONNX", "TF", "TORCH"}
EngineKey = tuple[str, str, tuple[str, ...], tuple[str, ...], bytes]


class EngineReuse:
    def __init__(self, ttl_s: float = 10.0, max_entries: int = 8) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[EngineKey, tuple[EngineModel, float]] = {}
        self._lock = threading.Lock()
        self.hits = 0

    @staticmethod
    def key(backend: str, device: str, inputs: Sequence[str], outputs: Sequence[str], blob: bytes) -> EngineKey | None:
        """The identity of a load, or None for a backend whose sessions are not shared."""
        if backend not in _SHAREABLE:
            return None
        return backend, device.upper(), tuple(inputs), tuple(outputs), hashlib.sha256(blob).digest()

    def get(self, key: EngineKey | None) -> EngineModel | None:
        if key is None:
            return None
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries[key] = (entry[0], now)
            self.hits += 1
            return entry[0]

    def put(self, key: EngineKey | None, engine: EngineModel) -> None:
        if key is None:
            return
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            self._entries[key] = (engine, now)
            while len(self._entries) > self._max:
                oldest = min(self._entries, key=lambda k: self._entries[k][1])
                del self._entries[oldest]

    def _expire(self, now: float) -> None:
        for key in [k for k, (_, used) in self._entries.items() if now - used > self._ttl]:
            del self._entries[key]
