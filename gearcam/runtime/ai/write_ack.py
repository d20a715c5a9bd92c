"""When an AI write may be answered before the backing Redis has answered it (write-behind).

Redis' reply to a write says more than "it will be applied": with `appendonly yes` it says the
write is in the AOF (on disk with `appendfsync always`), and Redis may refuse it instead (OOM
under `maxmemory` without an all-keys eviction policy, READONLY on a replica, NOREPLICAS with
`min-replicas-to-write`, MISCONF after a failed background save, LOADING). Where none of that
applies, the reply only confirms what the runtime already knows once the write is on the
client's link: Redis applies it before anything the client sends next. Waiting for it then
costs each write a round trip to Redis (a third of the latency of the classic
TENSORSET/MODELEXECUTE/TENSORGET loop), so the runtime answers on sending. Everywhere else, and
whenever it is unsure, it waits, as it always did. docs/runtime.md states the rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gearcam.cancel import wait_for
from gearcam.errors import NetworkError
from gearcam.runtime.relay import Address, BackendLink
from gearcam.runtime.resp import ErrorReply

__all__ = ["WriteAck", "read", "wait_reason", "watch"]

logger = logging.getLogger(__name__)

# How often the backing Redis' settings are read again (changes made on it directly).
RECHECK_S = 5.0
# `INFO` fields the decision reads (sections persistence, replication, memory).
_EVICTS_ANY_KEY = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


def _fields(info: bytes | str) -> dict[str, str]:
    text = info.decode("utf-8", "replace") if isinstance(info, bytes) else info
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {name: value.strip() for name, value in pairs}


def wait_reason(info: bytes | str) -> str | None:
    """Why Redis' reply to a write promises more than its sending does (from `INFO`), or None if it does not."""
    fields = _fields(info)
    if fields.get("loading") == "1":
        return "the backing Redis is loading its data (LOADING)"
    if fields.get("aof_enabled", "0") != "0":
        return "the backing Redis logs writes to its AOF (appendonly yes)"
    if fields.get("role") != "master":
        return f"the backing Redis is not a master (role {fields.get('role', 'unknown')}): it may refuse writes"
    maxmemory, policy = fields.get("maxmemory", "0"), fields.get("maxmemory_policy", "noeviction")
    if maxmemory != "0" and policy not in _EVICTS_ANY_KEY:
        return f"maxmemory {maxmemory} with maxmemory-policy {policy} may refuse writes (OOM)"
    if "min_slaves_good_slaves" in fields:
        return "min-replicas-to-write is set: the backing Redis may refuse writes (NOREPLICAS)"
    if fields.get("rdb_last_bgsave_status", "ok") != "ok":
        return "the backing Redis' last background save failed: it may refuse writes (MISCONF)"
    return None


class WriteAck:
    """Whether AI writes are answered when sent (`behind`) or once Redis has them, and why.

    It starts waiting, and only `learn()` from the backing Redis' own `INFO` lets it answer on
    sending. Anything that may change Redis' promise (a relayed `CONFIG`, `REPLICAOF`,
    `FAILOVER`; the key events' reconnection; a write Redis refused) makes it wait until the
    next `INFO` is read.
    """

    def __init__(self, setting: str = "auto") -> None:
        self.setting = setting  # "auto": as the backing Redis allows; "stored": always wait for Redis
        self.behind = False
        self.refused = 0  # writes Redis refused after the runtime had answered them
        self.hold = False  # after a refusal, only the periodic check may lift the wait
        self.wanted = asyncio.Event()  # read INFO again now (the runtime's watcher waits on it)
        # Counts suspensions: an INFO asked for before the latest one may predate what caused it.
        self.epoch = 0

    def learn(self, info: bytes | str, asked_at: int, periodic: bool = False) -> None:
        """Take the backing Redis' `INFO`, asked for when `epoch` was `asked_at`."""
        if asked_at != self.epoch or (self.hold and not periodic):
            return
        self.hold = False
        reason = wait_reason(info) if self.setting == "auto" else "runtime.write_ack is 'stored'"
        self._set(reason)

    def suspend(self, reason: str) -> None:
        """Wait for Redis' replies until an `INFO` asked for after this is learnt."""
        self.epoch += 1
        self._set(reason)

    def recheck(self) -> None:
        """Ask the watcher to read the backing Redis' settings again now."""
        self.wanted.set()

    def refused_write(self, key: bytes, error: BaseException) -> None:
        """Redis refused a write the runtime had answered: say so, and wait from now on."""
        self.refused += 1
        logger.warning(
            "the backing Redis refused a write already acknowledged to its client (key %r: %s); the runtime "
            "forgets that tensor and waits for Redis' reply to every write until its settings are read again; "
            "set runtime.write_ack to 'stored' if a write must never be answered before Redis has it",
            key, error,
        )  # fmt: skip
        self.hold = True
        self.suspend(f"a write was refused: {error}")

    def _set(self, reason: str | None) -> None:
        behind = reason is None
        if behind != self.behind:
            if behind:
                logger.info("AI writes are acknowledged once sent to the backing Redis (write-behind)")
            else:
                logger.info("AI writes are acknowledged once the backing Redis has them: %s", reason)
        self.behind = behind


async def read(link: BackendLink, acks: WriteAck, periodic: bool = False) -> None:
    """Tell `acks` what the backing Redis' reply to a write promises now."""
    asked_at = acks.epoch
    try:
        info = await link.call(b"INFO")
    except ErrorReply as exc:  # INFO refused to the runtime's user, or renamed: keep waiting for Redis
        acks.suspend(f"INFO is refused to the runtime ({exc.message})")
        return
    acks.learn(info, asked_at, periodic)


async def watch(acks: WriteAck, backing: Address, timeout: float) -> None:
    """Keep `acks` in step with the backing Redis' settings: every RECHECK_S, and when asked (`recheck`)."""
    if acks.setting == "stored":
        return  # nothing Redis says changes it
    link: BackendLink | None = None
    try:
        while True:
            periodic = True
            with contextlib.suppress(TimeoutError):
                await wait_for(acks.wanted.wait(), RECHECK_S)
                periodic = False
            acks.wanted.clear()
            try:
                if link is None or link.closed.is_set():
                    link = await BackendLink.open(backing, timeout, authenticate=True)
                await read(link, acks, periodic)
            except (NetworkError, OSError, ErrorReply) as exc:
                acks.suspend(f"the backing Redis' settings could not be read: {exc}")
                if link is not None:
                    await link.close()
                link = None
    finally:
        if link is not None:
            await link.close()
