"""The runtime's own commands to the backing Redis, as MONITOR would show them, remembered while a client watches.

RedisAI and RedisGears store, read and keep their books through the module API, which Redis never shows to
MONITOR; the runtime does that work with commands (a tensor's `SET`, its commit script, the key-event fences,
`INFO` looks, `CLIENT ID`), on its own links and on clients' links, in between the clients' commands. While some
client is in MONITOR, every link records a mark of each command it sends for itself; the monitor feed
(monitor_feed.py) leaves out a line that matches a mark recorded for its client's address, and uses the mark up.
Nothing is recorded while no client watches, so the serving path pays one attribute read a command.

A mark is a command's name and the start of its next two arguments: enough to tell the runtime's commands from a
client's in the same link (a tensor's value begins with the stored format's magic bytes, a fence names its
channel), cheap enough to take from a line of a large value. Lines of commands Redis never shows (`CONFIG`) leave
their marks behind, which no shown line can match; at most `_KEPT` marks of `_ADDRESSES` addresses are kept. Over a
unix socket every link has the socket's address: the marks of all of them share one queue, and a line is matched
against any of them.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["OWN_TRAFFIC", "Mark", "OwnTraffic", "mark"]

Mark = tuple[bytes, bytes, bytes]
_KEPT = 64  # marks kept per address
_ADDRESSES = 1024  # addresses kept


def _head(arg: Any, size: int) -> bytes:
    if isinstance(arg, bytes):
        return arg[:size]
    if isinstance(arg, (bytearray, memoryview)):
        return bytes(memoryview(arg).cast("B")[:size])
    if isinstance(arg, tuple):  # one argument sent in parts (resp.encode_command)
        head = b""
        for part in arg:
            head += _head(part, size - len(head))
            if len(head) >= size:
                break
        return head
    return str(arg).encode()[:size]  # an int, a float or a str, as the command encodes it


def mark(args: Sequence[Any]) -> Mark:
    """The mark of a command (its arguments as sent, or as read back from a MONITOR line)."""
    name = _head(args[0], 64).upper() if args else b""
    if name == b"AUTH":  # Redis shows its arguments as "(redacted)"
        return name, b"", b""
    return name, _head(args[1], 32) if len(args) > 1 else b"", _head(args[2], 16) if len(args) > 2 else b""


class OwnTraffic:
    """Marks of the runtime's own commands by the address of the link that sent them, while `watching`."""

    def __init__(self) -> None:
        self.watching = False
        self._sent: dict[str, deque[Mark]] = {}
        self._lock = threading.Lock()  # the Gears service's links record from its threads
        # The Gears links (the runtime's and its workers'): what they send besides the runtime's own commands is
        # Gears code's and its readers', which RedisGears sends with RM_Call and Redis shows under "?:0".
        self.module_links: set[str] = set()

    def sent(self, address: str, args: Sequence[Any]) -> None:
        """A command a link sent for the runtime (called only while `watching`; from any thread)."""
        self._record(address, [mark(args)])

    def expect(self, address: str, marks: Sequence[Mark]) -> None:
        """Commands a link of another process (a Gears worker's, logging in) sends for the runtime, told before it
        sends them: that process does not know whether a client watches."""
        if self.watching:
            self._record(address, marks)

    def _record(self, address: str, marks: Sequence[Mark]) -> None:
        with self._lock:
            queue = self._sent.get(address)
            if queue is None:
                if len(self._sent) >= _ADDRESSES:  # links come and go while a monitor stays: the oldest one goes
                    del self._sent[next(iter(self._sent))]
                queue = self._sent[address] = deque(maxlen=_KEPT)
            queue.extend(marks)

    def seen(self, address: str, line_mark: Mark) -> bool:
        """Whether a MONITOR line of `address` is one of the runtime's own commands (its mark is used up)."""
        with self._lock:
            queue = self._sent.get(address)
            if not queue:
                return False
            try:
                queue.remove(line_mark)  # only it: over a unix socket every link shares one address, and one queue
            except ValueError:
                return False
            return True

    def module_link(self, address: str, opened: bool) -> None:
        """A Gears link opened or closed. Not one over a unix socket: every client there has the socket's address,
        so its lines cannot be told apart."""
        if address.startswith("unix:"):
            return
        if opened:
            self.module_links.add(address)
        else:
            self.module_links.discard(address)

    def watch(self, on: bool) -> None:
        """Start or stop remembering (stopped: everything remembered is forgotten)."""
        self.watching = on
        if not on:
            with self._lock:
                self._sent.clear()


OWN_TRAFFIC = OwnTraffic()  # one runtime a process, as commandstats.OWN
