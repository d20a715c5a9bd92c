"""StreamReader registrations: one worker per (registration, stream), reading through a consumer group.

The position of each registration lives in the stream itself, as a consumer group,
so it is kept by the backing Redis (RDB/AOF) and survives a runtime restart: a
worker first re-reads the entries delivered but not acknowledged (a batch that was
in flight), then new ones. Entries are acknowledged only once their execution
ended, so none is skipped; one batch runs at a time per stream, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gearcam.runtime.gears.link import CommandError, LinkPool
from gearcam.runtime.gears.records import stream_records
from gearcam.runtime.gears.registrations import Registration

__all__ = ["GROUP_PREFIX", "IDLE_RECHECK_S", "BackingLost", "StreamWorker", "group_name"]

logger = logging.getLogger(__name__)

GROUP_PREFIX = "__gears_consumer_group__"
# An idle reader looks at its stream again after this long even if no key event woke it. Inside
# Redis a StreamReader cannot miss a write; here the events come over a connection that a Redis
# restart drops, and a write can fall between its loss and the catch-up that follows: one
# XREADGROUP a second per idle stream bounds what such a gap can cost to a second's delay.
IDLE_RECHECK_S = 1.0
CONSUMER = "__gears_client__"

# Runs the registration's steps on a batch; returns the errors (empty: success).
Execute = Callable[[Registration, list[Any]], Awaitable[list[str]]]
InPool = Callable[..., Awaitable[Any]]
Peers = Callable[[bytes], set[str]]


class BackingLost(Exception):  # noqa: N818 - what happened, as NetworkError
    """A batch's Gears calls lost the backing Redis (it restarted): the batch stays pending and runs again.

    Inside Redis a Gears step can never lose Redis; here the script cannot tell, so it counts the
    frame as failed and goes on, and acknowledging that batch would lose frames. Run again, the
    batch's frames are processed at least once (some of them twice: docs/gears.md).
    """


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
        self, reg: Registration, key: bytes, links: LinkPool, in_pool: InPool, execute: Execute, peers: Peers
    ) -> None:
        self.reg = reg
        # Group names of every registration reading this stream: created before the first trim, so
        # a registration whose worker has not started yet cannot lose entries to another's trimming.
        self._peers = peers
        self._created: set[str] = set()
        self.key = key
        self._links = links
        self._in_pool = in_pool
        self._execute = execute
        self.wake = asyncio.Event()
        self.wake.set()
        self.task: asyncio.Task[None] | None = None
        # Set on shutdown: finish the batch in flight (so it is acknowledged), then stop.
        self.stopping = False
        # mode='sync' writers waiting for this reader to run what it has (see settled()).
        self._settle_waiters: list[asyncio.Future[None]] = []

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

    def _read(self, start: str, count: int) -> list[Any]:
        reply = self._links.call(
            "XREADGROUP", "GROUP", group_name(self.reg), CONSUMER, "COUNT", count, "STREAMS", self.key, start
        )
        return reply[0][1] if reply else []

    def _ensure_groups(self) -> set[str]:
        live = self._peers(self.key) | {group_name(self.reg)}
        for group in live - self._created:
            try:
                self._links.call("XGROUP", "CREATE", self.key, group, "0")
            except CommandError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise
            self._created.add(group)
        return live

    def _ack(self, ids: list[bytes]) -> None:
        if ids:
            self._links.call("XACK", self.key, group_name(self.reg), *ids)
        if self.reg.args["trimStream"]:
            point = trim_point(self._links, self.key, self._ensure_groups())
            if point is not None:
                self._links.call("XTRIM", self.key, "MINID", point)

    def _reading(self) -> bool:
        return self.reg.active and not self.stopping and self.reg.status != "PAUSED"

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self._settle()

    async def _run(self) -> None:
        while self._reading():
            try:
                await self._in_pool(self._ensure_groups)
                await self._loop()
                return
            except asyncio.CancelledError:
                raise
            except CommandError as exc:  # the stream was deleted (NOGROUP) or the key holds another type
                logger.info("StreamReader %s stops reading %r: %s", self.reg.id, self.key, exc)
                return
            except BackingLost as exc:
                logger.warning("StreamReader %s runs its batch on %r again: %s", self.reg.id, self.key, exc)
                await asyncio.sleep(1.0)
            except Exception:  # the backing Redis went away, or a bug: start over from the pending entries
                logger.exception("StreamReader %s failed on %r; resuming in 1s", self.reg.id, self.key)
                await asyncio.sleep(1.0)

    async def _loop(self) -> None:
        reg = self.reg
        batch, duration = reg.args["batch"], reg.args["duration"]
        pending_first = True
        buffer: list[Any] = []
        first_arrival = 0.0
        while self._reading():
            self.wake.clear()
            if pending_first:
                entries = await self._in_pool(self._read, "0", batch)
                if not entries:
                    pending_first = False
                    continue
                if not await self._process(entries):
                    pending_first = True
                continue
            new = await self._in_pool(self._read, ">", batch - len(buffer))
            if new and not buffer:
                first_arrival = time.monotonic()
            buffer += new
            elapsed_ms = (time.monotonic() - first_arrival) * 1000
            if buffer and (len(buffer) >= batch or (duration and elapsed_ms >= duration)):
                entries, buffer = buffer, []
                if not await self._process(entries):
                    pending_first = True  # retry: the batch is still pending in the group
                continue
            if new:
                continue
            if not self.wake.is_set():
                self._settle()  # nothing more to run now: sync writers get their reply
            timeout = (duration - elapsed_ms) / 1000 if buffer and duration else IDLE_RECHECK_S
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _process(self, entries: list[Any]) -> bool:
        """Run one batch; False when it must be retried later (policy 'retry') or reading must stop ('abort')."""
        reg = self.reg
        live = [e for e in entries if e[1] is not None]  # deleted entries still pending: just acknowledge them
        ids = [e[0] for e in entries]
        if not live:
            await self._in_pool(self._ack, ids)
            return True
        records = stream_records(self.key.decode("utf-8", "replace"), live)
        errors = await self._execute(reg, records)
        if errors and errors[0].startswith("PAUSE"):
            # RedisGears: a batch that fails with an error starting 'PAUSE' pauses the registration;
            # its entries stay pending and are read first after RG.UNPAUSEREGISTRATIONS.
            reg.status = "PAUSED"
            return False
        if errors and reg.args["onFailedPolicy"] == "abort":
            reg.status = "ABORTED"
            reg.active = False
            logger.warning("StreamReader %s aborted on %r: %s", reg.id, self.key, errors[0])
            return False
        if errors and reg.args["onFailedPolicy"] == "retry":
            reg.status = "WAITING_FOR_RETRY_ON_FAILURE"
            await asyncio.sleep(reg.args["onFailedRetryInterval"])
            reg.status = "OK"
            return False
        reg.last_lag_ms = max(0, int(time.time() * 1000) - int(records[0]["id"].split("-")[0]))
        reg.total_lag_ms += reg.last_lag_ms
        await self._in_pool(self._ack, ids)
        return True
