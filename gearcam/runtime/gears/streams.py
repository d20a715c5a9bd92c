"""StreamReader registrations: one worker per (registration, stream), reading through a consumer group.

The position of each registration lives in the stream itself, as a consumer group,
so it is kept by the backing Redis (RDB/AOF) and survives a runtime restart: a
worker first re-reads the entries delivered but not acknowledged (a batch that was
in flight), then new ones. Entries are acknowledged only once their execution
ended, so none is skipped; one batch runs at a time per stream, in order.

When an execution runs is RedisGears 1.2's bookkeeping (its streams_reader.c), so that
the counts an operator reads in RG.DUMPREGISTRATIONS and the executions in
RG.DUMPEXECUTIONS are the module's: a reader that starts following a stream first runs
one execution over the pending entries (even when there are none), then counts the
stream's length and every XADD as entries to run, and triggers an execution when a
batch is full, when `duration` has passed since its first entry, or straight away when
it cannot know when that was (a stream found by a scan). An execution that found
nothing while no XADD came since ends the count. The XADD events come over a connection, not in
Redis' thread: each look at the stream (the start count, an idle look) publishes a mark that comes
back behind the events of the XADDs the look saw, so none is counted twice (see _look). What to
do when a batch fails or the registration pauses is the service's (it stops all the
registration's streams at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from gearcam.cancel import wait_for
from gearcam.errors import NetworkError
from gearcam.logs import Every
from gearcam.runtime.gears.link import CommandError, LinkPool
from gearcam.runtime.gears.readers import key_type
from gearcam.runtime.gears.records import stream_records
from gearcam.runtime.gears.registrations import Registration
from gearcam.runtime.keyevents import FENCE_CHANNEL

__all__ = ["GROUP_PREFIX", "IDLE_RECHECK_S", "BackingLost", "Outcome", "StreamWorker", "group_name"]

logger = logging.getLogger(__name__)

GROUP_PREFIX = "__gears_consumer_group__"
# An idle reader looks at its stream again after this long even if no key event woke it. Inside
# Redis a StreamReader cannot miss a write; here the events come over a connection that a Redis
# restart drops, and a write can fall between its loss and the catch-up that follows: one
# XINFO GROUPS a second per idle stream bounds what such a gap can cost to a second's delay (an
# entry counts as missed when the look's mark came back without its event; without the mark,
# two looks in a row must find it: two seconds. See StreamWorker._catch_up).
IDLE_RECHECK_S = 1.0
CONSUMER = "__gears_client__"
_OUTAGE_WARN_S = 30.0  # a reader waiting for the backing Redis says so this often, not at every retry
# How long a reader waits for the mark published with a look at its stream to come back with the key
# events (a round trip; longer only when the subscription is being lost) before counting another way.
_MARK_WAIT_S = 2.0
_T = TypeVar("_T")


class Outcome(NamedTuple):
    """How a batch's execution ended: its errors (none: success), and whether it was aborted; `release` lets
    the registration's next execution start, once what this end calls for (a halt) is done."""

    errors: list[str]
    aborted: bool
    release: Callable[[], None]


# Creates an execution of the registration (counted as triggered, `created` in RG.DUMPEXECUTIONS),
# has it read its records with the given call, runs the steps on them and returns how it ended.
Execute = Callable[[Registration, Callable[[], Awaitable[list[Any]]]], Awaitable[Outcome]]
# The registration must stop reading every stream (its status says why): a failed batch or a pause.
Halt = Callable[[Registration, str], None]
InPool = Callable[..., Awaitable[Any]]
Peers = Callable[[bytes], set[str]]
# A token to publish on the fence channel; the worker's marked() is called when it comes back with the key
# events, after the events of every write before it (None: key events are down, there is nothing to mark).
Mark = Callable[["StreamWorker"], bytes | None]


class BackingLost(Exception):  # noqa: N818 - what happened, as NetworkError
    """A batch's Gears calls lost the backing Redis (it restarted): the batch stays pending and runs again.

    Inside Redis a Gears step can never lose Redis; here the script cannot tell, so it counts the
    frame as failed and goes on, and acknowledging that batch would lose frames. Run again, the
    batch's frames are processed at least once (some of them twice: docs/gears.md).
    """


def _deleted(exc: CommandError) -> bool:
    """The stream is gone, or was created again without the groups (XREADGROUP's NOGROUP, XINFO's no such key)."""
    text = str(exc)
    return text.startswith("NOGROUP") or text == "ERR no such key"


def group_name(reg: Registration) -> str:
    """Per session and StreamReader ordinal: each registration sees every entry, an UPGRADE continues."""
    return f"{GROUP_PREFIX}:{reg.session_id}:{reg.ordinal}"


def _next_id(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def trim_point(links: LinkPool, key: bytes, live: set[str]) -> str | None:
    """The lowest id a consumer group of `key` still needs: entries below it were processed by all.

    Groups of the runtime's own registrations count only while they are registered (`live`);
    other consumer groups (an application's own) always count.
    """
    groups = links.call("XINFO", "GROUPS", key)
    bounds: list[str] = []
    for info in groups:
        fields = {info[i].decode(): info[i + 1] for i in range(0, len(info), 2)}
        name, pending, last = fields["name"], int(fields["pending"]), fields["last-delivered-id"].decode()
        group = name.decode("utf-8", "replace")
        if group.startswith(GROUP_PREFIX) and group not in live:
            continue
        oldest = links.call("XPENDING", key, name)[1] if pending else None
        # None also when acknowledged since XINFO: everything delivered until then is done.
        bounds.append(oldest.decode() if isinstance(oldest, bytes) else _next_id(last))
    return min(bounds, key=_id_key) if bounds else None


class StreamWorker:
    def __init__(
        self, reg: Registration, key: bytes, links: LinkPool, in_pool: InPool, execute: Execute, peers: Peers,
        halt: Halt, on_replica: Callable[[], None], stamped: bool, mark: Mark,
    ) -> None:  # fmt: skip
        self.reg = reg
        # Group names of every registration reading this stream: created before the first trim, so
        # a registration whose worker has not started yet cannot lose entries to another's trimming.
        self._peers = peers
        self._created: set[str] = set()
        self.key = key
        self._links = links
        self._in_pool = in_pool
        self._execute = execute
        self._halt = halt
        self._on_replica = on_replica  # the backing Redis refused a write as a replica (StreamReaders stop there)
        # Started by an XADD (its entries' start time is now) or found by a scan (unknown: run at once).
        self._stamped = stamped
        self._mark = mark
        # The mark published with a look at the stream, not back yet, and what learns self.added when it comes.
        self._awaited_mark: tuple[bytes, asyncio.Future[int]] | None = None
        self.wake = asyncio.Event()
        self.wake.set()
        self.added = 0  # XADD events not counted yet (see add())
        # Set while every XADD seen is counted and what it triggers exists (see GearsService.triggered).
        self.quiet = asyncio.Event()
        self.recheck = False  # look for entries whose events were missed (a scan found the stream again)
        self.task: asyncio.Task[None] | None = None
        # Set on shutdown, on a failed batch and on a pause: finish the batch in flight
        # (acknowledged if it succeeded), then stop.
        self.stopping = False
        # mode='sync' writers waiting for this reader to run what it has (see settled()).
        self._settle_waiters: list[asyncio.Future[None]] = []
        # RedisGears' per-stream counts: entries not run yet as far as XLEN and the XADDs tell
        # (an estimate: it may count entries that are gone), entries into the batch being filled,
        # and when each batch's first entry came (0.0: unknown).
        self.pending = 0
        self._next_batch = 0
        self._starts: deque[float] = deque()
        self._deadline: float | None = None  # when `duration` runs out for the batch being filled
        self._unacked = False  # a batch that was read ran no steps to the end: read the pending entries first
        self._missing = 0  # entries the last idle look found not counted (see _catch_up)

    def add(self) -> None:
        """An XADD to the stream (key event): one more entry to run."""
        self.added += 1
        self.quiet.clear()
        self.wake.set()

    def marked(self, token: bytes) -> None:
        """The mark published with a look at the stream came back: the events until now were of XADDs the look
        saw; each one from here is a new entry."""
        awaited = self._awaited_mark
        if awaited is not None and awaited[0] == token and not awaited[1].done():
            awaited[1].set_result(self.added)

    async def settled(self) -> None:
        """Return once the reader has run every batch it can run now (the rest waits for `batch`/`duration`),
        or stopped: what a mode='sync' writer waits for before its reply."""
        if self.task is not None and self.task.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settle_waiters.append(waiter)
        self.wake.set()
        await waiter

    def _settle(self) -> None:
        waiters, self._settle_waiters = self._settle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _read(self, start: str, count: int | None) -> list[Any]:
        limit = ("COUNT", count) if count else ()
        reply = self._links.call(
            "XREADGROUP", "GROUP", group_name(self.reg), CONSUMER, *limit, "STREAMS", self.key, start, own=False
        )
        return reply[0][1] if reply else []

    def _length(self) -> int:
        self._ensure_groups()
        return int(self._links.call("XLEN", self.key))

    def _xadds(self, fields: dict[bytes, Any]) -> int | None:
        """The stream's XADDs so far as the group's XINFO GROUPS entry counts them (lag + entries-read);
        None when Redis cannot count the lag (entries deleted in between)."""
        lag, read = fields.get(b"lag"), fields.get(b"entries-read")
        if read is None and fields.get(b"last-delivered-id") == b"0-0":
            read = 0  # a group created at 0 that was given nothing yet: Redis leaves the count unset
        if lag is None or read is None:
            return None
        return int(lag) + int(read)

    def _group(self, reply: list[Any]) -> dict[bytes, Any]:
        for info in reply:
            fields = {info[i]: info[i + 1] for i in range(0, len(info), 2)}
            if fields.get(b"name", b"").decode("utf-8", "replace") == group_name(self.reg):
                return fields
        return {}

    def _with_mark(self, commands: list[tuple[Any, ...]], token: bytes | None) -> tuple[list[Any] | None, bool]:
        """`commands` in one transaction, the mark `token` published after them: their replies (None when the
        transaction or one of them failed: ask again plainly for the error) and whether the mark went out."""
        mark = [("PUBLISH", FENCE_CHANNEL, token)] if token is not None else []
        done = self._links.pipeline([("MULTI",), *commands, *mark, ("EXEC",)])[-1]
        if not isinstance(done, list) or len(done) != len(commands) + len(mark):
            return None, False
        replies = done[: len(commands)]
        if any(isinstance(reply, Exception) for reply in replies):
            return None, False
        return replies, bool(mark) and not isinstance(done[-1], Exception)

    def _start_count(self, token: bytes | None) -> tuple[tuple[int, int | None], bool]:
        """XLEN and the XADDs counted so far, read together, and whether the mark `token` went out after them:
        the events of XADDs already in XLEN may still be on their way, and must not be counted a second
        time. Those are the events that come before the mark (see _loop)."""
        self._ensure_groups()
        replies, published = self._with_mark([("XLEN", self.key), ("XINFO", "GROUPS", self.key)], token)
        if replies is None:
            return (self._length(), None), False
        return (int(replies[0]), self._xadds(self._group(replies[1]))), published

    async def _look(self, look: Callable[[bytes | None], tuple[_T, bool]]) -> tuple[_T, int | None]:
        """What `look` (run in the pool with a mark to publish) found, and how many key events came before its
        mark: those of XADDs the look saw. None when the mark did not come back (key events down or late)."""
        token = self._mark(self)
        came: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._awaited_mark = (token, came) if token is not None else None
        try:
            found, published = await self._in_pool(look, token)
            if published:
                with contextlib.suppress(TimeoutError):
                    return found, await wait_for(came, _MARK_WAIT_S)
            return found, None  # not back in time: the caller counts another way
        finally:
            self._awaited_mark = None  # a mark that comes later is ignored

    def _added_since(self, before: int | None) -> int | None:
        """XADDs to the stream since `before` (from _start_count); None when Redis cannot count them."""
        if before is None:
            return None
        now = self._xadds(self._group(self._links.call("XINFO", "GROUPS", self.key)))
        return None if now is None else max(0, now - before)

    def _undelivered(self, token: bytes | None) -> tuple[int, bool]:
        """Entries the registration's group was not given yet (XINFO GROUPS' lag), and whether the mark `token`
        went out after that look. When Redis cannot count the lag (entries deleted in between): 1 if the
        stream's newest id is past the group's, and no mark (not a count to compare events with)."""
        replies, published = self._with_mark([("XINFO", "GROUPS", self.key)], token)
        fields = self._group(replies[0] if replies is not None else self._links.call("XINFO", "GROUPS", self.key))
        if not fields:
            return 0, False
        if fields.get(b"lag") is not None:
            return int(fields[b"lag"]), published
        stream = self._links.call("XINFO", "STREAM", self.key)
        newest = dict(zip(stream[::2], stream[1::2], strict=False)).get(b"last-generated-id", b"0-0")
        return int(_id_key(newest.decode()) > _id_key(fields[b"last-delivered-id"].decode())), False

    def _ensure_groups(self) -> set[str]:
        live = self._peers(self.key) | {group_name(self.reg)}
        for group in live - self._created:
            try:
                self._links.call("XGROUP", "CREATE", self.key, group, "0", own=False)
            except CommandError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise
            self._created.add(group)
        return live

    def _ack(self, ids: list[bytes]) -> None:
        if ids:
            self._links.call("XACK", self.key, group_name(self.reg), *ids, own=False)
        if self.reg.args["trimStream"]:
            point = trim_point(self._links, self.key, self._ensure_groups())
            if point is not None:
                self._links.call("XTRIM", self.key, "MINID", point, own=False)

    def _is_stream(self) -> bool:
        return key_type(self._links, self.key) == "stream"

    def _reading(self) -> bool:
        return self.reg.active and not self.stopping and self.reg.status == "OK"

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.quiet.set()
            self._settle()

    async def _run(self) -> None:
        say = Every(_OUTAGE_WARN_S)
        while self._reading():
            try:
                await self._loop()
                return
            except asyncio.CancelledError:
                raise
            except CommandError as exc:  # the stream was deleted (NOGROUP) or the key holds another type
                if _deleted(exc):
                    seen = self.added
                    try:
                        again = await self._in_pool(self._is_stream) or self.added != seen
                    except NetworkError:
                        again = True  # the loop waits for the backing Redis, then looks again
                    except CommandError:
                        again = False
                    if again:
                        # Deleted (DEL, FLUSHALL) and written again since: as RedisGears, which creates its
                        # group again when XREADGROUP fails and reads on, the new stream is read from its start.
                        logger.info("StreamReader %s reads %r again from its start: it was deleted and written "
                                    "again", self.reg.id, self.key)  # fmt: skip
                        self._created.clear()
                        self._unacked = False
                        continue
                    self.stopping = True  # set in the same turn of the loop: the next XADD starts another reader
                logger.info("StreamReader %s stops reading %r: %s", self.reg.id, self.key, exc)
                if str(exc).startswith("READONLY"):  # Redis is a replica now: read again once it is a master
                    self._on_replica()
                return
            except BackingLost as exc:
                logger.warning("StreamReader %s runs its batch on %r again: %s", self.reg.id, self.key, exc)
                self._unacked = True
                await asyncio.sleep(1.0)
            except NetworkError as exc:  # restarting, or loading its data: no traceback, one line every 30 s
                if say.due():
                    logger.warning("StreamReader %s reads %r again once the backing Redis serves: %s",
                                   self.reg.id, self.key, exc)  # fmt: skip
                await asyncio.sleep(1.0)
            except Exception:  # a bug: start over from the pending entries
                logger.exception("StreamReader %s failed on %r; resuming in 1s", self.reg.id, self.key)
                await asyncio.sleep(1.0)

    def _count(self, entries: int, start: float) -> None:
        """RedisGears' count of XADDs: each one more pending entry, and the first of a batch notes its time."""
        batch = self.reg.args["batch"]
        self._missing = 0  # what the last idle look found missing may have been these (see _catch_up)
        for _ in range(entries):
            self.pending += 1
            self._next_batch += 1
            if self._next_batch == 1:
                self._starts.append(start)
            if self._next_batch == batch:
                self._next_batch = 0

    async def _loop(self) -> None:
        reg = self.reg
        batch, duration_s = reg.args["batch"], reg.args["duration"] / 1000
        self.added = 0
        (self.pending, counted), before = await self._look(self._start_count)
        if before is not None:  # the events after the mark are the XADDs after the count
            self.added -= before
            counted = None
        first = time.monotonic() if self._stamped else 0.0
        self._starts = deque([first] * -(-self.pending // batch))
        self._next_batch = 0
        self._deadline = None
        read_pending: bool | None = True  # the next execution's read: pending entries, new ones, or none due
        while self._reading():
            self.wake.clear()
            now = time.monotonic()
            if read_pending is None:
                read_pending = await self._due(now, batch, duration_s)
                if read_pending is None:
                    self.quiet.set()
                    self._settle()  # nothing more to run now: sync writers get their reply
                    timeout = self._deadline - now if self._deadline is not None else IDLE_RECHECK_S
                    try:
                        await wait_for(self.wake.wait(), max(timeout, 0.0))
                    except TimeoutError:
                        self.recheck = self._deadline is None
                    continue
            self._deadline = None
            ran = await self._process(read_pending, batch)
            if ran is None:  # failed, aborted or stopping: the batch's entries stay pending
                self._unacked = True
                if self.stopping or not self._reading():
                    return
                read_pending = None
                continue
            if counted is not None:
                # Without the mark (key events down or late), the XADDs since the start are counted by Redis
                # once the first batch ran, not by their events (some of those were for entries XLEN had
                # counted already; one still on its way counts twice); from here on the events count.
                exact = await self._in_pool(self._added_since, counted)
                counted, self.added = None, (exact if exact is not None else self.added)
            if self.added:  # XADDs while the batch ran: counted before deciding what comes next
                added, self.added = self.added, 0
                self._count(added, time.monotonic())
            read_pending = self._next(ran, read_pending, batch, duration_s)

    async def _due(self, now: float, batch: int, duration_s: float) -> bool | None:
        """While idle: count the XADDs that came (RedisGears' OnKeyTouched), and say whether a batch is due
        (False: read new entries) because it is full or its `duration` ran out; None: not yet."""
        if self.added:
            added, self.added = self.added, 0
            self._count(added, now)
            if self.pending < batch and self._deadline is None and duration_s:
                self._deadline = now + duration_s
        if self.recheck:
            self.recheck = False
            await self._catch_up(now, duration_s)
        if self.pending >= batch:
            return False
        if self._deadline is not None and now >= self._deadline:
            self._next_batch = 0  # a batch run before it filled starts anew
            return False
        return None

    async def _catch_up(self, now: float, duration_s: float) -> None:
        """Entries added while no key event could reach the runtime (a Redis restart drops them): counted.

        An entry whose event is still on its way looks missing too, and its event would count it
        again (one empty execution more than RedisGears runs). The look's mark tells them apart: the
        events that come before it are of entries the look saw. Without the mark (key events down or
        late), entries count as missed when two idle looks in a row, with no event between them, find them.
        """
        undelivered, before = await self._look(self._undelivered)
        missing = max(0, undelivered - self.pending - (before or 0))
        if before is None:
            missing, self._missing = min(missing, self._missing), missing
        else:
            self._missing = 0  # an exact look: what an earlier one found missing is counted or came
        if not missing:
            return
        self._count(missing, 0.0)
        if self._deadline is None and duration_s:
            self._deadline = now + duration_s

    def _next(self, had_data: bool, read_pending: bool, batch: int, duration_s: float) -> bool | None:
        """What RedisGears triggers when an execution ends: another one now (False: reading new entries), or
        none until an XADD or `duration` (None)."""
        if self.pending <= 0:
            return None
        if not had_data and not read_pending and self._next_batch == 0:
            self.pending = 0  # nothing was there and nothing came: the stream is read to its end
            return None
        if batch <= self.pending:
            return False
        first = self._starts[0] if self._starts else 0.0
        if not first:
            self._next_batch = 0  # a batch run before it filled starts anew
            return False
        if duration_s:
            now = time.monotonic()
            if now - first >= duration_s:
                self._next_batch = 0
                return False
            self._deadline = first + duration_s
        return None

    def _goes_on(self, outcome: Outcome) -> bool:
        """Whether the batch's entries are done with (acknowledged); if not, they stay pending, and a failure
        or a pause stops the registration as its policy says."""
        reg = self.reg
        if outcome.aborted:
            return False
        if not outcome.errors:
            return True
        if outcome.errors[0].startswith("PAUSE"):
            # RedisGears: a batch that fails with an error starting 'PAUSE' pauses the registration;
            # its entries stay pending and are read first after RG.UNPAUSEREGISTRATIONS.
            self._halt(reg, "PAUSED")
            return False
        policy = reg.args["onFailedPolicy"]
        if policy == "abort":
            logger.warning("StreamReader %s aborted on %r: %s", reg.id, self.key, outcome.errors[0])
            self._halt(reg, "ABORTED")
            return False
        if policy == "retry":
            self._halt(reg, "WAITING_FOR_RETRY_ON_FAILURE")
            return False
        return True  # 'continue': counted as a failure, and done with

    async def _process(self, read_pending: bool, batch: int) -> bool | None:
        """Run one execution; whether it read any entry, or None when they stay pending (failed, aborted)."""
        reg = self.reg
        got: list[Any] = []

        async def read() -> list[Any]:
            if not self.added:
                self.quiet.set()  # the execution exists (triggered): what an XADD's reply promises
            if read_pending:
                entries = await self._in_pool(self._read, "0", None)
            elif self._unacked:
                entries = await self._in_pool(self._read, "0", batch)
                if not entries:
                    self._unacked = False
                    entries = await self._in_pool(self._read, ">", batch)
            else:
                entries = await self._in_pool(self._read, ">", batch)
            got.extend(entries)
            live = [e for e in entries if e[1] is not None]  # deleted entries still pending: only acknowledged
            return stream_records(self.key.decode("utf-8", "replace"), live) if live else []

        outcome = await self._execute(reg, read)
        try:
            if not self._goes_on(outcome):
                return None
        finally:
            outcome.release()
        ids = [e[0] for e in got]
        if read_pending:
            self._unacked = False
        elif self._starts:
            self._starts.popleft()
        else:  # the count went wrong (someone trimmed or deleted entries): count the stream again
            self.pending = await self._in_pool(self._length)
        if got:
            records = [e for e in got if e[1] is not None]
            if records:
                oldest = got[0][0].decode() if isinstance(got[0][0], bytes) else str(got[0][0])
                reg.last_lag_ms = max(0, int(time.time() * 1000) - int(oldest.split("-")[0]))
                reg.total_lag_ms += reg.last_lag_ms
            self.pending = max(0, self.pending - len(ids))
        await self._in_pool(self._ack, ids)
        return bool(got)
