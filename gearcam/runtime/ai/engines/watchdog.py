"""One thread that ends engine runs past their deadline (MODEL_EXECUTION_TIMEOUT).

A timer thread per run costs more than a small model's whole run (thread start and join
on every AI.MODELEXECUTE); this keeps the deadlines of the runs in flight and wakes only
when the nearest one is due, calling its `expire` (e.g. setting ONNX Runtime's
`RunOptions.terminate`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["Watchdog", "watchdog"]


class Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._expire: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float, expire: Callable[[], None]) -> int:
        """Call `expire` after `seconds` unless `cancel` comes first; returns the token for `cancel`."""
        token = next(self._ids)
        with self._cond:
            self._expire[token] = expire
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="gearcam-run-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == token:
                self._cond.notify()  # the new deadline is the nearest
        return token

    def cancel(self, token: int) -> None:
        with self._cond:
            self._expire.pop(token, None)  # its heap entry is dropped when it comes due

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._expire:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                expire = self._expire.pop(token)
            expire()


watchdog = Watchdog()
