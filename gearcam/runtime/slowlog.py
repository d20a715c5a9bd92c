"""SLOWLOG as one log: the backing Redis' entries and those of the commands the runtime runs itself.

Redis logs each command that ran for at least `slowlog-log-slower-than` µs, RedisAI's and
RedisGears' commands too (a blocked module command, with the time it was blocked). The
runtime's own commands (AI.*, RG.*) never reach the backing Redis, so the runtime keeps one
log for both, of at most `slowlog-max-len` entries. When one of its commands was slow enough,
it looks at the backing Redis' log on the client's own link, after the command and before the
client's next one (a Lua script, `_LOOK`), takes in the entries made since the last look, then
adds its own: so a client's commands keep the order they ran in, and ids count up in that
order, one sequence for both. Where a look cannot go on the client's link it is made on the
runtime's own link (`SlowLog.catch_up`), as for `SLOWLOG GET`/`LEN`/`RESET`, which answer from
this log. What the runtime sent the backing Redis to serve its commands is left out (`internal`),
as RedisAI's own work inside Redis (module API calls, not commands) is not in its log.

The thresholds are the backing Redis' own: read again after a second, and taken at once from a
`CONFIG SET` relayed through the runtime. docs/runtime.md ("SLOWLOG") has the whole rule.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gearcam.errors import NetworkError
from gearcam.runtime.ai.store import KIND_TENSOR, own_read
from gearcam.runtime.keyevents import FENCE_CHANNEL, PRIVATE_PREFIX
from gearcam.runtime.relay import CODE_NAME, INTERNAL_NAME, SCRIPTS, Address, BackendLink, OwnLink, Script
from gearcam.runtime.resp import MODULE_CLIENT, ErrorReply

__all__ = ["SlowLog", "internal", "shown"]

logger = logging.getLogger(__name__)

_AI_VALUE = KIND_TENSOR[:4]  # how every stored tensor, model and script value starts
_IN_SCRIPT = MODULE_CLIENT.encode()  # the client address Redis gives a command a Lua script or RM_Call ran
_FRESH_S = 1.0  # how long thresholds read from the backing Redis are trusted before a look reads them again
_FIRST_LOOK = 16  # entries a look asks for; all of them when more are new
_KNOWN = 1024  # backing entries remembered, to tell a look that ran before the last one from a restart
_LOOK_WAIT_S = 1.0  # how long SLOWLOG GET waits for looks in flight on clients' links
# A look at the log on a client's link: the script keeps it out of the log (see `internal`).
_LOOK = Script("return redis.call('SLOWLOG', 'GET', ARGV[1])", lambda args, frame: (b"slowlog|get",))
_MAX_ARGS = 32  # Redis' SLOWLOG_ENTRY_MAX_ARGC
_MAX_STRING = 128  # Redis' SLOWLOG_ENTRY_MAX_STRING


def shown(args: list[bytes]) -> list[bytes]:
    """A command's arguments as Redis keeps them in an entry: at most 32, each at most 128 bytes."""
    kept = [bytes(a[:_MAX_STRING]) for a in args[:_MAX_ARGS]]
    for i, arg in enumerate(args[:_MAX_ARGS]):
        if len(arg) > _MAX_STRING:
            kept[i] += f"... ({len(arg) - _MAX_STRING} more bytes)".encode()
    if len(args) > _MAX_ARGS:
        kept[-1] = f"... ({len(args) - _MAX_ARGS + 1} more arguments)".encode()
    return kept


def internal(argv: list[bytes], name: bytes) -> bool:
    """An entry of what the runtime sent the backing Redis for its own commands, not a client's command.

    RedisAI stores and reads values through the module API, which Redis does not log, so SLOWLOG
    leaves these out: all that the runtime's own links ran, and on a client's link the writes of AI
    values, the reads of them and of their heads, the runtime's Lua scripts and its key-event fences (see
    ai/store.py, keyevents.py). A client's GETRANGE of the same shape is left out too.
    """
    if name == INTERNAL_NAME:
        return True
    command = argv[0].upper() if argv else b""
    if command == b"SET":
        return len(argv) > 2 and (argv[1].startswith(PRIVATE_PREFIX) or argv[2].startswith(_AI_VALUE))
    if command == b"GETRANGE":  # an AI value, or its head to check it against what the runtime holds
        return own_read(argv)
    if command == b"EVALSHA":
        return len(argv) > 1 and argv[1].lower() in SCRIPTS
    loads = command == b"SCRIPT" and len(argv) > 2 and argv[1].upper() == b"LOAD"
    if (command == b"EVAL" and len(argv) > 1) or loads:
        source = argv[2] if loads else argv[1]
        return source in {shown([known])[0] for known in SCRIPTS.values()}  # as cut in the entry
    return command == b"PUBLISH" and len(argv) > 1 and argv[1] == FENCE_CHANNEL


def _from_gears_code(entry: list[Any]) -> bool:
    """An entry of a command a Gears worker's link sent (named CODE_NAME): Gears code's or its reader's, over TCP
    or a unix socket alike (where every client has the socket's address)."""
    return len(entry) > 5 and entry[5] == CODE_NAME


def _fingerprint(entry: list[Any]) -> int:
    """An entry's fields but its id: the same entry seen again, or another that took its id after a restart."""
    return hash((entry[1], entry[2], tuple(entry[3]), *entry[4:]))


@dataclass(frozen=True)
class _Own:
    """One of the runtime's commands, waiting for the look that puts it in the log."""

    at: int
    duration_us: int
    args: list[bytes]
    client: bytes
    name: bytes


class SlowLog:
    def __init__(self, backing: Address, timeout: float, as_listed: Callable[[bytes], bytes]) -> None:
        """`as_listed`: a backing entry's client address as the runtime lists that client (clients.py)."""
        self._as_listed = as_listed
        self._entries: deque[list[Any]] = deque()  # newest first: [id, time, µs, args, client, name]
        self._next_id = 0
        self._pending: list[_Own] = []  # waiting for a look on the runtime's own link
        self._looks: dict[asyncio.Future[Any], float] = {}  # looks in flight on clients' links: when sent
        self.slower_than_us, self.max_len = 10000, 128  # Redis' defaults until the backing Redis is asked
        self._fresh_until = float("-inf")
        self._configured = 0  # CONFIG SETs seen: a look that read the thresholds before one leaves them
        self._seen: int | None = None  # the newest backing entry taken in (None: none looked at yet)
        self._known: dict[int, int] = {}  # the backing entries looked at last, by id (see _fingerprint)
        self._script_loaded = False  # _LOOK, as far as the last look on the runtime's own link knows
        self._link = OwnLink(backing, timeout)
        self._lock = asyncio.Lock()
        self._draining: asyncio.Task[None] | None = None

    def observe(
        self,
        args: list[bytes],
        duration_us: int,
        client: Callable[[], tuple[bytes, bytes]],
        link: BackendLink | None = None,
    ) -> None:
        """One of the runtime's commands finished, after `duration_us`.

        Costs a clock read when it was fast (and, once a second, starts a reading of the
        thresholds in the background). Otherwise the backing Redis' log is looked at, never before
        the reply: on the client's `link` when given (sent now, the look runs before the client's
        next command, so it sees what Redis ran up to this one, in this client's order), else on the
        runtime's own link in the background.
        """
        now = time.monotonic()
        if now >= self._fresh_until:  # read the thresholds again; this command is judged by the last ones read
            self._fresh_until = now + _FRESH_S
            self._kick()
        if self.slower_than_us < 0 or duration_us < self.slower_than_us:
            return
        address, name = client()
        own = _Own(int(time.time()), duration_us, shown(args), address, name)
        if link is not None and self._script_loaded and not link.closed.is_set():
            look = link.send((b"EVALSHA", _LOOK.sha, b"0", _FIRST_LOOK), raw=False)
            self._looks[look] = now
            look.add_done_callback(functools.partial(self._looked, own))
            return
        self._wait(own)

    def _wait(self, own: _Own) -> None:
        self._pending.append(own)
        self._kick()

    def _kick(self) -> None:
        """A look on the runtime's own link soon (it also reads the thresholds), unless one is under way."""
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    def _looked(self, own: _Own, look: asyncio.Future[Any]) -> None:
        """A look on a client's link answered: its entries, then `own`; or `own` waits for the own link's."""
        self._looks.pop(look, None)
        newest = None if look.cancelled() or look.exception() is not None else look.result()
        try:
            taken = isinstance(newest, list) and self._take(newest, whole=False)
        except (TypeError, ValueError, IndexError) as exc:  # not SLOWLOG's reply shape: the own link's look then
            logger.warning("unexpected SLOWLOG GET reply from the backing Redis (%s): %r", exc, newest)
            taken = False
        if taken:
            self._add_own(own)
        else:  # NOSCRIPT after a restart, an ACL refusal, more new entries than it asked for, the link lost
            if isinstance(newest, ErrorReply) and newest.message.startswith("NOSCRIPT"):
                self._script_loaded = False  # until the next look on the own link loads it again
            self._wait(own)

    async def _drain(self) -> None:
        try:
            await self.catch_up()
            while self._pending:
                await self.catch_up()
        finally:
            self._draining = None

    async def catch_up(self) -> None:
        """Take in the backing Redis' new entries, then the runtime's own that waited, in that order."""
        # Looks in flight on clients' links come first; one sent over a second ago (queued behind a
        # blocked BLPOP on its link, say) is not waited for again.
        now = time.monotonic()
        recent = [look for look, sent in self._looks.items() if now - sent < _LOOK_WAIT_S]
        if recent:
            await asyncio.wait(recent, timeout=_LOOK_WAIT_S - (now - min(self._looks[look] for look in recent)))
        async with self._lock:
            pending, self._pending = self._pending, []
            try:
                await self._look()
            except (ErrorReply, NetworkError, ConnectionError, OSError, TimeoutError) as exc:
                # Its entries are missed until it answers again; the runtime's own are kept.
                logger.debug("could not read the backing Redis' SLOWLOG: %s", exc)
            for own in pending:
                self._add_own(own)

    async def _look(self) -> None:
        link = await self._link.get()
        configured = self._configured
        config, loaded, newest = await link.pipeline([
            (b"CONFIG", b"GET", b"slowlog-*"),
            (b"SCRIPT", b"LOAD", _LOOK.source),  # again after a restart; refused by an ACL: clients' looks are off
            (b"SLOWLOG", b"GET", b"-1" if self._seen is None else _FIRST_LOOK),
        ])  # fmt: skip
        for reply in (config, newest):
            if isinstance(reply, ErrorReply):
                raise reply
        if configured == self._configured:  # else a CONFIG SET answered meanwhile: this reading may predate it
            self._limits(config)
        self._script_loaded = not isinstance(loaded, ErrorReply)
        if not self._take(newest, whole=self._seen is None):
            self._take(await link.call(b"SLOWLOG", b"GET", b"-1"), whole=True)

    def _take(self, newest: list[Any], whole: bool) -> bool:
        """Take in the entries newer than the last taken; False (none taken) if older new ones may be missing."""
        seen = -1 if self._seen is None else self._seen
        if newest and int(newest[0][0]) < seen and self._known.get(int(newest[0][0])) != _fingerprint(newest[0]):
            seen = -1  # its ids start from 0 again: it restarted (not a look that ran before the last one taken)
        if not whole and len(newest) >= _FIRST_LOOK and int(newest[-1][0]) > seen + 1:
            return False
        in_script: list[list[Any]] = []  # what a script ran is logged before the script: kept with it, or not
        for entry in reversed(newest):
            if int(entry[0]) <= seen:
                continue
            if len(entry) > 4 and entry[4] == _IN_SCRIPT:
                in_script.append(entry)
                continue
            code = _from_gears_code(entry)  # RedisGears runs it with RM_Call: Redis logs it under "?:0", no name
            if code or not internal(entry[3], entry[5] if len(entry) > 5 else b""):
                for kept in in_script:
                    self._add(self._listed(kept))
                self._add([*entry[1:4], _IN_SCRIPT, b""] if code else self._listed(entry))
            in_script = []
        for kept in in_script:
            self._add(self._listed(kept))
        for entry in newest:
            self._known[int(entry[0])] = _fingerprint(entry)
        while len(self._known) > _KNOWN:
            del self._known[next(iter(self._known))]
        self._seen = max(seen, int(newest[0][0])) if newest else seen
        return True

    def _listed(self, entry: list[Any]) -> list[Any]:
        """A backing entry's fields (its id left for the log's own), its client named as CLIENT LIST names it."""
        fields = list(entry[1:])
        if len(fields) > 3 and isinstance(fields[3], bytes):
            fields[3] = self._as_listed(fields[3])
        return fields

    def _add_own(self, own: _Own) -> None:
        if 0 <= self.slower_than_us <= own.duration_us:
            self._add([own.at, own.duration_us, own.args, own.client, own.name])

    def _limits(self, config: list[Any]) -> None:
        values = dict(zip(config[::2], config[1::2], strict=False))
        self.slower_than_us = int(values.get(b"slowlog-log-slower-than", self.slower_than_us))
        self.max_len = int(values.get(b"slowlog-max-len", self.max_len))
        self._fresh_until = time.monotonic() + _FRESH_S
        self._trim()

    def configured(self, args: list[bytes]) -> None:
        """A `CONFIG SET` the backing Redis accepted: its slowlog settings hold from now on."""
        self._configured += 1
        for name, value in zip(args[2::2], args[3::2], strict=False):
            setting = name.lower()
            if setting not in (b"slowlog-log-slower-than", b"slowlog-max-len"):
                continue
            try:
                number = int(value)
            except ValueError:  # a form Redis reads and int() does not: ask it at the next look
                self._fresh_until = float("-inf")
                continue
            if setting == b"slowlog-max-len":
                self.max_len = number
                self._trim()
            else:
                self.slower_than_us = number

    def _add(self, fields: list[Any]) -> None:
        self._entries.appendleft([self._next_id, *fields])
        self._next_id += 1
        self._trim()

    def _trim(self) -> None:
        while len(self._entries) > max(self.max_len, 0):
            self._entries.pop()

    def newest(self, count: int) -> list[list[Any]]:
        """SLOWLOG GET: up to `count` entries, newest first (-1: all)."""
        entries = list(self._entries)
        return entries if count < 0 else entries[:count]

    def __len__(self) -> int:
        return len(self._entries)

    def reset(self) -> None:
        self._entries.clear()

    async def close(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
        await self._link.close()
