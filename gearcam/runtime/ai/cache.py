"""Tensors the runtime wrote or read, by the id stamped in their stored header.

An AI.TENSORSET followed by AI.MODELEXECUTE (the usual pipeline) would otherwise read
back from Redis the very bytes it just sent. Entries are keyed by the id of one stored
version, so a stale entry can never be served: a rewritten key has a new id. The
TensorStore drops a version as soon as no key holds it; the byte bound (least recently
used first) only catches what slips through, e.g. a read whose key changed meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from gearcam.runtime.ai.tensor import Tensor

__all__ = ["TensorCache"]


class TensorCache:
    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._entries: OrderedDict[str, Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, uid: str) -> Tensor | None:
        with self._lock:
            tensor = self._entries.get(uid)
            if tensor is None:
                self.misses += 1
                return None
            self._entries.move_to_end(uid)
            self.hits += 1
            return tensor

    def put(self, uid: str, tensor: Tensor) -> None:
        size = int(tensor.array.nbytes)
        if not uid or size > self._max:
            return
        with self._lock:
            if uid in self._entries:
                return
            self._entries[uid] = tensor
            self._bytes += size
            while self._bytes > self._max:
                _, old = self._entries.popitem(last=False)
                self._bytes -= int(old.array.nbytes)

    def drop(self, uid: str) -> None:
        with self._lock:
            tensor = self._entries.pop(uid, None)
            if tensor is not None:
                self._bytes -= int(tensor.array.nbytes)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes
