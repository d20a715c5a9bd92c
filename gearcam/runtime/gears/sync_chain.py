"""Which mode='sync' KeysReader runs a sync run's own writes started, so the client's reply waits for them too.

Inside Redis a sync registration's `execute('SET', k, ...)` fires the key event, and any sync
registration on `k` runs right there, before `execute()` returns: the whole chain has run when
the client's write answers. Here a Gears worker's writes go straight to Redis and their key events
come to the runtime like anyone's, so after a sync run ends the service publishes a fence and
takes as its children the sync runs started, before the fence came back, by events on the keys it
wrote (its outcome lists them); it ends only once they have, and they wait for theirs. A chain is
followed `MAX_DEPTH` runs deep: inside Redis a registration that keeps triggering itself recurses
until the stack runs out; here the reply goes out and the chain goes on after it.

A run learns its depth from the run that took it as a child. Any run whose listing was still open
when its event came may be that parent, so a run waits for those listings before it lists its own
children (an earlier run never waits on a later one: no cycle).
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_DEPTH", "SyncChains", "SyncRun"]

MAX_DEPTH = 32


@dataclass(eq=False)
class SyncRun:
    """One sync KeysReader execution started by a key event, as the chains see it."""

    seq: int
    key: bytes
    earlier: list[SyncRun]  # runs whose listing was open when this one's event came: its possible parents
    listed: Future[None] = field(default_factory=Future)  # its children were taken (their depths are known)
    depth: int | None = None  # set by the run that took it as a child; None: a client's write started it
    future: Future[Any] | None = None  # the run itself, ending after its children (set as it starts)


class SyncChains:
    """The sync runs in flight, by key. Events start runs on the main loop; runs list children on the Gears loop."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._by_key: dict[bytes, list[SyncRun]] = {}
        self._open: dict[int, SyncRun] = {}  # runs whose children are not listed yet
        self._lock = threading.Lock()

    def start(self, key: bytes) -> SyncRun:
        """Main loop, at the key event: a run for one sync registration the event triggers."""
        with self._lock:
            run = SyncRun(next(self._seq), key, list(self._open.values()))
            self._by_key.setdefault(key, []).append(run)
            self._open[run.seq] = run
        return run

    def end(self, run: SyncRun, _: object = None) -> None:
        """Any thread: the run and its children ended (or it never ran): it is nobody's child any more.
        (A done callback: the second argument is the run's future.)"""
        self.close(run)
        with self._lock:
            runs = self._by_key.get(run.key)
            if runs is not None:
                runs.remove(run)
                if not runs:
                    del self._by_key[run.key]

    def close(self, run: SyncRun) -> None:
        """The run's children are listed: later runs waiting to know their depth go on."""
        with self._lock:
            self._open.pop(run.seq, None)
        if not run.listed.done():
            run.listed.set_result(None)

    def take_children(self, run: SyncRun, touched: frozenset[bytes] | None) -> list[Future[Any]]:
        """After a fence published once `run` ended: the runs its writes started (on the keys it `touched`, any
        key when None) that no other run took; they are one deeper."""
        with self._lock:
            if touched is None:
                found = [r for runs in self._by_key.values() for r in runs]
            else:
                found = [r for key in touched for r in self._by_key.get(key, ())]
            children = [r for r in found if r.seq > run.seq and r.depth is None and r.future is not None]
            for child in children:
                child.depth = (run.depth or 0) + 1
        return [child.future for child in children if child.future is not None]
