"""What a client in MONITOR is shown of the backing Redis' feed: what Redis with RedisAI and RedisGears shows.

Redis feeds its monitors every command it runs, clients' and those a module runs with RM_Call, but never what a
module does through its API. So a monitor through the runtime sees the clients' commands and the commands of
Gears code and of its readers (`XREADGROUP`, `XACK`: RedisGears sends them with RM_Call), the latter under
RM_Call's socketless client `?:0`, as Redis names it; not the runtime's own commands (own_traffic.py), on its
links or on a client's, nor the calls of the runtime's Lua scripts (the `lua` lines right after such a script's
line). The commands the runtime serves itself (`AI.*`, `RG.*`) never reach Redis: their lines are the runtime's
(RuntimeState.monitored). Each client's lines show its own address, as CLIENT LIST does, where its link to the
backing Redis has one of its own (TCP).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from gearcam.runtime.own_traffic import OWN_TRAFFIC, mark
from gearcam.runtime.resp import MODULE_CLIENT, read_monitor_line

__all__ = ["MonitorFeed"]

_MODULE_CLIENT = MODULE_CLIENT.encode()
_SCRIPTS = {b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"}
_DECIDED = 4096  # lines whose fate is remembered for the other monitors
Rename = Callable[[bytes], bytes]


class _Decisions:
    """Each line's fate, decided once for every monitor: deciding uses up the mark of a runtime's command."""

    def __init__(self) -> None:
        self._fates: OrderedDict[bytes, tuple[bytes | None, bool]] = OrderedDict()

    def fate(self, frame: bytes, rename: Rename) -> tuple[bytes | None, bool]:
        """The line to show (None: none), and whether it is a script's whose `lua` lines follow it; `rename`: a
        link's address to its client's."""
        key = frame[:160]  # its time to the microsecond, its client and the command's start
        known = self._fates.get(key)
        if known is not None:
            return known
        line = read_monitor_line(frame)
        if line is None:
            return frame, False
        args = line.args
        fate: bytes | None = frame
        if OWN_TRAFFIC.seen(line.client, mark(args)):
            fate = None
        else:
            shown = _MODULE_CLIENT if line.client in OWN_TRAFFIC.module_links else rename(line.client.encode())
            start, end = line.client_at
            if shown != frame[start:end]:
                fate = frame[:start] + shown + frame[end:]
        decided = self._fates[key] = (fate, bool(args) and args[0].upper() in _SCRIPTS)
        if len(self._fates) > _DECIDED:
            self._fates.popitem(last=False)
        return decided


DECISIONS = _Decisions()


class MonitorFeed:
    """One monitoring client's view of the feed: the `lua` lines of a script whose line was left out go too."""

    def __init__(self, rename: Rename) -> None:
        """`rename`: a client's link's address to the client's own, as CLIENT LIST shows it (ClientDirectory's
        as_listed: over TCP; over a unix socket every link has the socket's, which stays)."""
        self._rename = rename
        self._in_hidden_script = False

    def line(self, frame: bytes) -> bytes | None:
        """The line to show (its client renamed where it stands for RM_Call), or None to leave it out."""
        if b" lua] " in frame[:64]:
            return None if self._in_hidden_script else frame
        fate, script = DECISIONS.fate(frame, self._rename)
        self._in_hidden_script = fate is None and script
        return fate
