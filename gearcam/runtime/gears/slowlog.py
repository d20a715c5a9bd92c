"""SLOWLOG entries for the Gears commands that block their client (RG.PYEXECUTE, RG.TRIGGER).

RedisGears 1.2 blocks the client while an execution runs, and Redis (6.2+) then puts
the command in its SLOWLOG with the time it was blocked. These commands never reach the
backing Redis, so the runtime keeps their entries itself and SLOWLOG GET/LEN/RESET
answer the backing Redis' entries together with these, newest first. The thresholds
are the backing Redis' own `slowlog-log-slower-than` and `slowlog-max-len`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any

__all__ = ["SlowLog"]

# Ids of the runtime's entries, far from the backing Redis' own (which count up from 0).
_FIRST_ID = 1 << 40
_CONFIG_TTL = 1.0  # seconds the backing Redis' thresholds are reused before asking again


class SlowLog:
    def __init__(self) -> None:
        self._entries: deque[list[Any]] = deque()
        self._ids = itertools.count(_FIRST_ID)
        self._lock = threading.Lock()
        self._limits: tuple[int, int] = (10000, 128)  # Redis' defaults: 10 ms, 128 entries
        self._limits_at = float("-inf")

    def limits_stale(self) -> bool:
        return time.monotonic() - self._limits_at > _CONFIG_TTL

    def set_limits(self, slower_than_us: int, max_len: int) -> None:
        """The backing Redis' `slowlog-log-slower-than` (µs; negative: off) and `slowlog-max-len`."""
        self._limits, self._limits_at = (slower_than_us, max_len), time.monotonic()

    def record(self, args: list[bytes], duration_us: int, started: float) -> None:
        """Keep a command that took at least the threshold, as Redis would (args as sent, at most 32)."""
        slower_than, max_len = self._limits
        if slower_than < 0 or duration_us < slower_than:
            return
        shown = list(args[:32])
        if len(args) > 32:
            shown[-1] = f"... ({len(args) - 31} more arguments)".encode()
        shown = [a if len(a) <= 128 else a[:128] + f"... ({len(a) - 128} more bytes)".encode() for a in shown]
        with self._lock:
            self._entries.appendleft([next(self._ids), int(started), duration_us, shown, b"", b""])
            while len(self._entries) > max(max_len, 0):
                self._entries.pop()

    def merged(self, backing: list[Any], count: int) -> list[Any]:
        """SLOWLOG GET: the backing Redis' entries and these, newest first (`count` < 0: all)."""
        with self._lock:
            mine = list(self._entries)
        entries = sorted([*backing, *mine], key=lambda e: (int(e[1]), int(e[0])), reverse=True)
        return entries if count < 0 else entries[:count]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
