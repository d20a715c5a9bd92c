"""Which stored AI objects the runtime may answer from its own memory, without asking Redis.

The backing Redis holds every tensor, model and script (so DEL, EXPIRE, RDB/AOF and
restarts keep working), and the runtime keeps what it wrote or read in memory. An
entry here says "key K of DB d holds the object with id U, as far as the keyspace
events tell": the runtime's own writes set it and announce how many events they will
cause; any other event on the key (a DEL, an overwrite, an expiry, a write made
directly to Redis or by another runtime) withdraws it. Reads of a withdrawn key go
to Redis again. Mistakes only ever withdraw too much, never too little:

- an event is charged to the runtime's own write only while such a write is pending,
  and events reach the listener in the order Redis ran the commands, so once the
  last own write's events are counted every later foreign event withdraws the entry;
- when the event subscription is lost (a Redis restart, a network cut) everything is
  withdrawn, since events were missed;
- FLUSHALL, FLUSHDB and SWAPDB cause no key events: the connection layer withdraws
  everything when it relays one (see docs/runtime.md for those sent around the runtime).

A read that fills an entry records the key's epoch before it asks Redis and trusts the
answer only if no event arrived for the key meanwhile.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Charged", "Coherence", "Trusted"]

Slot = tuple[int, bytes]


class Charged(enum.Enum):
    """Whose a key event is, as memory counts it."""

    OWN = "own"  # announced by the runtime's own write or delete (RedisAI's cause none: nobody else sees it)
    FOREIGN = "foreign"  # anyone else's: it withdrew what memory knew of the key
    UNCOUNTED = "uncounted"  # of a kind that changes no stored AI object (see TensorStore.on_key_event)


@dataclass(frozen=True)
class Trusted:
    kind: bytes  # the stored marker (tensor, model or script)
    uid: str


class Coherence:
    def __init__(self) -> None:
        self._trusted: dict[Slot, Trusted] = {}
        self._pending: dict[Slot, int] = {}
        self._epochs: dict[Slot, int] = {}
        self._generation = 0  # bumped by withdraw_all(): older epochs are void
        self._lock = threading.Lock()  # key events arrive on the loop; AI.INFO reads sizes from threads
        self.withdrawn = 0
        # Told when an entry stops being trusted (replaced or withdrawn): what it held is nobody's now.
        self.on_forget: Callable[[Trusted], None] | None = None

    def get(self, db: int, key: bytes) -> Trusted | None:
        return self._trusted.get((db, key))

    def epoch(self, db: int, key: bytes) -> tuple[int, int]:
        """A token taken before a read from Redis: `learn` trusts the answer only if the key saw no event since."""
        return self._generation, self._epochs.get((db, key), 0)

    def learn(self, db: int, key: bytes, entry: Trusted, token: tuple[int, int]) -> None:
        with self._lock:
            if token == (self._generation, self._epochs.get((db, key), 0)):
                old = self._trusted.get((db, key))
                self._trusted[(db, key)] = entry
                if old is not None and old != entry:
                    self._forget(old)

    def expect(self, db: int, key: bytes, events: int) -> tuple[int, int]:
        """An own write was sent that will cause `events` key events on `key`; returns the token to `learn` with.

        Until it succeeds the key is not trusted (the write may be refused); a read already
        on its way must not restore what was there before, so the epoch moves on.
        """
        with self._lock:
            slot = (db, key)
            self._pending[slot] = self._pending.get(slot, 0) + events
            self._epochs[slot] = self._epochs.get(slot, 0) + 1
            old = self._trusted.pop(slot, None)
            if old is not None:
                self._forget(old)
            return self._generation, self._epochs[slot]

    def wrote(self, db: int, key: bytes, entry: Trusted, events: int) -> None:
        """An own write that cannot be refused for the key's type was sent: trusted at once."""
        token = self.expect(db, key, events)
        self.learn(db, key, entry, token)

    def write_failed(self, db: int, key: bytes, events: int) -> None:
        """An own write was refused (WRONGTYPE): it caused no events, and the key is not what was written."""
        with self._lock:
            slot = (db, key)
            left = self._pending.get(slot, 0) - events
            if left > 0:
                self._pending[slot] = left
            else:
                self._pending.pop(slot, None)
            self._withdraw(slot)

    def on_event(self, db: int, key: bytes) -> Charged:
        """Count a key event: an own write's while one is pending on the key, else foreign (it withdraws the entry)."""
        with self._lock:
            slot = (db, key)
            left = self._pending.get(slot, 0)
            if left > 0:
                if left == 1:
                    del self._pending[slot]
                else:
                    self._pending[slot] = left - 1
                return Charged.OWN
            self._withdraw(slot)
            return Charged.FOREIGN

    def withdraw(self, db: int, key: bytes) -> None:
        with self._lock:
            self._withdraw((db, key))

    def withdraw_all(self) -> None:
        with self._lock:
            self.withdrawn += len(self._trusted)
            self._trusted.clear()
            self._pending.clear()
            self._epochs.clear()
            self._generation += 1

    def _withdraw(self, slot: Slot) -> None:
        self._epochs[slot] = self._epochs.get(slot, 0) + 1
        old = self._trusted.pop(slot, None)
        if old is not None:
            self.withdrawn += 1
            self._forget(old)
        if len(self._epochs) > 100_000:  # epochs of keys nobody reads: forget them all at once
            self._epochs.clear()
            self._generation += 1

    def _forget(self, entry: Trusted) -> None:
        if self.on_forget is not None:
            self.on_forget(entry)

    def __len__(self) -> int:
        return len(self._trusted)
