"""Sessions (one per RG.PYEXECUTE ID) and their persistence in the backing Redis.

RedisGears keeps sessions and registrations in its RDB; the runtime keeps each
session's code, options and registration ids in the hash `gearcam:gears:sessions`
of the backing Redis, and loads them again when it starts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gearcam.runtime.gears.link import LinkPool

__all__ = ["SESSIONS_KEY", "Session", "delete_session", "load_sessions", "save_session", "save_sessions_again"]

SESSIONS_KEY = "gearcam:gears:sessions"


@dataclass
class Session:
    id: str
    code: str
    description: str | None = None
    requirements: list[str] = field(default_factory=list)
    registrations: list[str] = field(default_factory=list)
    owner: str = "default"  # the ACL user that ran RG.PYEXECUTE: its code runs with that user's rights
    token: str = field(default="", compare=False)  # the loaded script in the owner's worker (not stored)
    # RedisGears' requirementInstallationNeeded: a requirement new to this runtime, or a forced reinstall.
    installation_needed: bool = field(default=False, compare=False)

    def stored(self) -> dict[str, Any]:
        return {
            "id": self.id, "code": self.code, "description": self.description, "requirements": self.requirements,
            "registrations": self.registrations, "owner": self.owner,
        }  # fmt: skip

    def dump(self, registrations: list[Any]) -> list[Any]:
        """RG.PYDUMPSESSIONS entry; `registrations` are ids or (VERBOSE) dumped registrations."""
        return [
            "ID", self.id, "sessionDescription", self.description, "refCount", 1, "linked", "primary",
            "dead", "false", "requirementInstallationNeeded", int(self.installation_needed),
            "requirements", list(self.requirements),
            "registrations", registrations,
        ]  # fmt: skip


def save_session(links: LinkPool, session: Session) -> None:
    _write(links, [session])


def _write(links: LinkPool, sessions: list[Session]) -> None:
    links.call("HSET", SESSIONS_KEY, *(part for s in sessions for part in (s.id, json.dumps(s.stored()))))


def save_sessions_again(links: LinkPool, current: Callable[[], dict[str, Session]]) -> None:
    """Write the `current` sessions again (a FLUSHALL took the hash). A session deleted or upgraded meanwhile
    (its own HDEL or HSET may have run before this HSET) is written as it is now, or deleted, afterwards."""
    written = dict(current())
    if not written:
        return
    _write(links, list(written.values()))
    now = dict(current())
    gone = [session_id for session_id in written if session_id not in now]
    if gone:
        links.call("HDEL", SESSIONS_KEY, *gone)
    changed = [s for session_id, s in now.items() if session_id in written and s is not written[session_id]]
    if changed:
        _write(links, changed)


def delete_session(links: LinkPool, session_id: str) -> None:
    links.call("HDEL", SESSIONS_KEY, session_id)


def load_sessions(links: LinkPool) -> list[Session]:
    flat = links.call("HGETALL", SESSIONS_KEY)
    sessions = []
    for i in range(0, len(flat), 2):
        data = json.loads(flat[i + 1])
        data.pop("token", None)
        sessions.append(Session(**data))
    return sessions
