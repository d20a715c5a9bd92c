"""Lua scripts that call AI.* or RG.* commands: answered with the modules' text instead of "Unknown command".

RedisAI refuses to run its execution commands from Lua (`Cannot run RedisAI command within
a transaction or a LUA script`), RedisGears its RG.PYEXECUTE (`Can not run gears inside a
multi exec, lua, ...`). The backing redis-server knows neither module's commands, so a
script calling one fails there with `Unknown Redis command called from script`. The
runtime relays EVAL untouched and only looks at an error reply of that kind: if the
script's source names a module command, the text is replaced by the module's (for the
commands it refuses from Lua) or by one that says what the runtime cannot do (for the
others, which the modules do serve from Lua). Sources come from EVAL and SCRIPT LOAD as
they pass, kept by SHA1 (bounded), so EVALSHA is answered the same way. Scripts that do
not name module commands, and successful replies, are never touched.

The same scan notes the scripts that name `FLUSHALL`, `FLUSHDB` or `SWAPDB`: commands that
change keys without key events, after which the connection forgets what the AI store held
in memory, as it does when it relays one itself (ai/coherence.py). A script that only
names one forgets too much, never too little.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from gearcam.runtime import replies
from gearcam.runtime.gears.replies import GEARS_CANNOT_BLOCK

__all__ = ["LuaScripts", "Script", "module_names"]

_MODULE_NAME = re.compile(rb"""["']((?:AI|RG)\.[A-Za-z_]+)["']""", re.IGNORECASE)
_FORGETTING = re.compile(rb"""["'](?:FLUSHALL|FLUSHDB|SWAPDB)["']""", re.IGNORECASE)
_UNKNOWN = b"Unknown Redis command called from script"
_EVAL = {"EVAL", "EVAL_RO"}
_EVALSHA = {"EVALSHA", "EVALSHA_RO"}


def module_names(source: bytes) -> tuple[str, ...]:
    """The AI.* and RG.* command names a Lua source quotes, upper-cased, in order of first mention."""
    return tuple(dict.fromkeys(m.group(1).decode().upper() for m in _MODULE_NAME.finditer(source)))


class Script(NamedTuple):
    """What a script's source names: module commands (in order of first mention), and a command that changes
    keys without key events."""

    names: tuple[str, ...] = ()
    forgets: bool = False


_PLAIN = Script()


class LuaScripts:
    """What each script seen so far names, by SHA1 (at most `limit` scripts, oldest forgotten first); only the
    scripts that name something are kept."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._names: OrderedDict[str, Script] = OrderedDict()

    def inspect(self, name: str, args: list[bytes]) -> Script:
        """What the script an EVAL/EVALSHA/SCRIPT LOAD request runs or loads names (noting its source)."""
        if len(args) < 2:
            return _PLAIN
        if name in _EVALSHA:
            return self._names.get(args[1].decode(errors="replace").lower(), _PLAIN)
        if name in _EVAL or (name == "SCRIPT" and len(args) == 3 and args[1].upper() == b"LOAD"):
            source = args[-1] if name == "SCRIPT" else args[1]
            script = Script(module_names(source), _FORGETTING.search(source) is not None)
            if script != _PLAIN:
                sha = hashlib.sha1(source).hexdigest()  # noqa: S324 - Redis names scripts by SHA1
                self._names[sha] = script
                self._names.move_to_end(sha)
                while len(self._names) > self._limit:
                    self._names.popitem(last=False)
            return script
        return _PLAIN

    @staticmethod
    def reply(names: tuple[str, ...], frame: bytes, is_execution: Callable[[str], bool]) -> bytes:
        """The reply to send for a script naming `names` (`is_execution`: an AI.* name RedisAI refuses from
        Lua): the module's text in place of "Unknown command"."""
        if not names or not frame.startswith(b"-") or _UNKNOWN not in frame:
            return frame
        if any(n.startswith("AI.") and is_execution(n) for n in names):
            text = replies.IN_TRANSACTION.removeprefix("ERR ").encode()
        elif "RG.PYEXECUTE" in names:  # RedisGears' text has no error code
            return frame.replace(b"ERR " + _UNKNOWN, _UNKNOWN, 1).replace(_UNKNOWN, GEARS_CANNOT_BLOCK.encode(), 1)
        else:
            listed = ", ".join(names)
            modules = " and ".join(dict.fromkeys("RedisAI" if n.startswith("AI.") else "RedisGears" for n in names))
            text = (
                f"the gearcam runtime cannot serve {listed} from a Lua script ({modules} can); "
                "send it from the client instead"
            ).encode()
        return frame.replace(_UNKNOWN, text, 1)
