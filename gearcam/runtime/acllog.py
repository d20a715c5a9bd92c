"""ACL LOG as one log: the backing Redis' entries and the runtime's refusals of the commands it serves.

Redis records each command, key or channel its ACL rules refused in `ACL LOG`, the audit trail
an operator reads after a `NOPERM`. The runtime refuses `AI.*` and `RG.*` itself (acl.py), where
the backing Redis never sees them, so it keeps those refusals in a log of its own, kept by
Redis' rules (acl.c, addACLLogEntry): a refusal like one of the ten newest entries (same
reason, context, object and user, that entry updated at most 60 s before) counts into it and
moves it to the front; else a new entry goes in front; at most `acllog-max-len` entries.
`ACL LOG [count]` answers both logs as one, newest first; `ACL LOG RESET` empties both.

Both logs keep time in whole milliseconds, so the runtime keeps a client's order by time: a
refusal is logged once the client's earlier commands ran and in a millisecond of its own (the
clock ticks before and after it), and Redis' entries are placed by their time on Redis' clock
(`TIME`, read with them). docs/runtime.md ("ACLs and the runtime's own commands") has the rule.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gearcam.errors import NetworkError
from gearcam.runtime.acl import AclRefused
from gearcam.runtime.relay import Address, BackendLink, OwnLink
from gearcam.runtime.resp import Double, ErrorReply

__all__ = ["AclLog"]

_GROUP_MS = 60_000  # ACL_LOG_GROUPING_MAX_TIME_DELTA
_SCAN = 10  # how many of the newest entries a refusal is compared with
_MAX_LEN = 128  # acllog-max-len's default, until the backing Redis' is read
_EXTENDED = (7, 2)  # Redis 7.2 added entry-id, timestamp-created and timestamp-last-updated


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Entry:
    reason: str
    context: str
    denied: bytes  # ACL LOG's `object`: the command's name or the key
    username: bytes
    client_info: bytes
    updated_ms: int
    created_ms: int
    entry_id: int
    count: int = 1

    def reply(self, now_ms: int, extended: bool) -> dict[bytes, Any]:
        """The entry as ACL LOG answers it (a map in RESP3, pairs in RESP2)."""
        fields: dict[bytes, Any] = {
            b"count": self.count,
            b"reason": self.reason.encode(),
            b"context": self.context.encode(),
            b"object": self.denied,
            b"username": self.username,
            b"age-seconds": Double((now_ms - self.updated_ms) / 1000),
            b"client-info": self.client_info,
        }
        if extended:
            fields[b"entry-id"] = self.entry_id
            fields[b"timestamp-created"] = self.created_ms
            fields[b"timestamp-last-updated"] = self.updated_ms
        return fields


def _fields(entry: Any) -> dict[bytes, Any]:
    """One of the backing Redis' entries by field name (RESP2 pairs or a RESP3 map)."""
    if isinstance(entry, dict):
        return dict(entry)
    return {entry[i]: entry[i + 1] for i in range(0, len(entry) - 1, 2)}


def _age_ms(fields: dict[bytes, Any]) -> int:
    """An entry's `age-seconds` (whole milliseconds in Redis) as milliseconds."""
    try:
        return round(float(fields.get(b"age-seconds", 0.0)) * 1000)
    except (TypeError, ValueError):
        return 0


async def _next_millisecond() -> None:
    """Wait until the clock's millisecond has changed."""
    start = _now_ms()
    while _now_ms() == start:
        await asyncio.sleep(0.0002)


def _as_refused(info: bytes, name: bytes, user: bytes) -> bytes:
    """CLIENT LIST's line with `cmd=` the refused command and `user=` the user refused, as Redis shows them
    (a TorchScript script's command is refused on the runtime's own link, run as the client's user)."""
    replaced = {b"cmd": b"cmd=" + name, b"user": b"user=" + user}
    return b" ".join(replaced.get(word.partition(b"=")[0], word) for word in info.split())


class AclLog:
    """The runtime's refusals, in Redis' ACL LOG form, and ACL LOG answered with the backing Redis' entries."""

    def __init__(self, backing: Address, timeout: float, listed: Callable[[bytes], bytes]) -> None:
        """`listed`: a client's line as the runtime lists that client (its own addresses, clients.py)."""
        self._listed = listed
        self._link = OwnLink(backing, timeout)
        self._entries: deque[_Entry] = deque()
        self._max_len = _MAX_LEN
        self._created = 0  # entry ids, as Redis 7.2 counts them
        self._version: tuple[int, int] | None = None

    async def close(self) -> None:
        await self._link.close()

    def __len__(self) -> int:
        return len(self._entries)

    async def record(self, refused: AclRefused, context: str, user: str, link: BackendLink) -> None:
        """Log a refusal of an owned command sent on `link` by `user` (context: toplevel, multi or module).

        Waits for the link's earlier commands to run and for the clock's next millisecond, before and
        after: Redis' entries for the client's commands before and after it are older and newer.
        """
        await link.settled()
        await _next_millisecond()
        client_info = self._listed(await self._client_info(link, refused.command.encode(), user))
        now = _now_ms()
        username = user.encode()
        for i, entry in enumerate(self._entries):
            if i == _SCAN:
                break
            if (
                entry.reason == refused.reason
                and entry.context == context
                and abs(now - entry.updated_ms) <= _GROUP_MS
                and entry.denied == refused.denied
                and entry.username == username
            ):
                del self._entries[i]
                entry.count += 1
                entry.updated_ms = now
                entry.client_info = client_info
                self._entries.appendleft(entry)
                break
        else:
            self._entries.appendleft(_Entry(refused.reason, context, refused.denied, username, client_info, now, now,
                                            self._created))  # fmt: skip
            self._created += 1
            self._trim()
        await _next_millisecond()

    async def answer(self, args: list[bytes], reply: Any) -> Any:
        """`ACL LOG [count | RESET]` given the backing Redis' reply to it on the client's link (which checked
        its arguments and the client's rights): both logs, newest first, or both emptied.

        Redis' entries are read again on the runtime's link next to `TIME`, to place them on its clock;
        where that link may not, the client's reply is placed by its ages.
        """
        if len(args) == 3 and args[2].upper() == b"RESET":
            self._entries.clear()
            return reply
        if not isinstance(reply, list):
            return reply
        count = max(int(args[2]), 0) if len(args) == 3 else 10
        entries, redis_now_ms = await self._backing_entries(count)
        if entries is None:
            entries, redis_now_ms = reply, _now_ms()
        self._trim()
        now = _now_ms()
        extended = self._version is not None and self._version >= _EXTENDED
        merged = []
        for entry in entries:
            fields = _fields(entry)
            age = _age_ms(fields)
            fields[b"age-seconds"] = Double(age / 1000)  # a double in RESP3, whichever link it was read on
            if isinstance(fields.get(b"client-info"), bytes):  # a client still connected: where it is
                fields[b"client-info"] = self._listed(fields[b"client-info"])
            merged.append((-(redis_now_ms - age), fields))
        merged += [(-e.updated_ms, e.reply(now, extended)) for e in self._entries]
        merged.sort(key=lambda item: item[0])  # newest first (a stable sort: Redis' before the runtime's at a tie)
        return [fields for _, fields in merged[: min(count, self._max_len)]]

    def _trim(self) -> None:
        while len(self._entries) > self._max_len:
            self._entries.pop()

    async def _backing_entries(self, count: int) -> tuple[list[Any] | None, int]:
        """Redis' newest `count` entries and Redis' time then, in this process' milliseconds; also
        acllog-max-len and Redis' version. None where the runtime may not read them."""
        try:
            link = await self._link.get()
            began = time.time_ns()
            config, info, clock, entries = await link.pipeline([
                (b"CONFIG", b"GET", b"acllog-max-len"), (b"INFO", b"server"), (b"TIME",), (b"ACL", b"LOG", count)
            ])  # fmt: skip
            ended = time.time_ns()
        except (NetworkError, OSError):
            return None, 0
        if isinstance(config, list) and len(config) == 2 and bytes(config[1]).isdigit():
            self._max_len = int(config[1])
        if isinstance(info, bytes):
            for line in info.split(b"\r\n"):
                if line.startswith(b"redis_version:"):
                    parts = line.split(b":", 1)[1].split(b".")
                    self._version = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
        if not isinstance(clock, list) or not isinstance(entries, list):
            return None, 0  # an error reply: the runtime's user may not
        redis_us = int(clock[0]) * 1_000_000 + int(clock[1])
        skew_us = redis_us - (began + ended) // 2000
        if abs(skew_us) <= (ended - began) // 1000:  # within what one round trip can tell: the same clock
            skew_us = 0
        return entries, (redis_us - skew_us) // 1000

    async def _client_info(self, link: BackendLink, command: bytes, user: str) -> bytes:
        """The client's line in the backing Redis' CLIENT LIST (its link there), as ACL LOG's `client-info`.

        Read on the runtime's own link: the client's user may have no right to CLIENT INFO, and
        asking on its link would log that refusal too. A short line stands in where it cannot be read.
        """
        address = link.listed_address.encode()
        try:
            own = await self._link.get()
            if link.backend_id is None:
                listing = await own.call(b"CLIENT", b"LIST")
            else:
                listing = await own.call(b"CLIENT", b"LIST", b"ID", link.backend_id)
        except (ErrorReply, NetworkError, OSError):
            listing = b""
        for line in bytes(listing).splitlines():
            if f" addr={address.decode()} ".encode() in b" " + line + b" ":
                words = dict(word.partition(b"=")[::2] for word in line.split())
                if words.get(b"id", b"").isdigit():
                    link.backend_id = int(words[b"id"])
                return _as_refused(line, command, user.encode())
        return b"addr=%s cmd=%s user=%s" % (address, command, user.encode())
