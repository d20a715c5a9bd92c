"""One client of the runtime: parse its commands, serve or relay each, answer in order.

Relayed commands are written to the client's backend link at once, so a pipeline of
plain commands stays a pipeline. A command the runtime owns runs after everything
before it was sent and before anything after it, on the same link (so it sees the
client's DB and ACL user). Each command takes a slot in an ordered output; a slot
is written as soon as it and every slot before it are filled, from whichever
callback filled it, so a relayed reply costs no extra task switch. Reading pauses
while too many slots are unanswered or the client does not read its replies.

Plain data commands that arrive while the connection has nothing else to do are relayed
in the bytes the client sent, from the transport's callback (`_take_plain`): no task
wakes, nothing is parsed into arguments or encoded again. One larger than a read is relayed
as its bytes arrive, its bulk headers checked on the way (request.continue_command).

CLIENT REPLY OFF/SKIP is the connection's, not the backing Redis': the link must get a reply
for every command it sends to pair replies with slots, so the mode silences slots instead
(`_Slot.silent`), owned commands' replies included, as Redis silences modules' replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from gearcam.cancel import wait_for
from gearcam.errors import GearcamError, NetworkError
from gearcam.runtime.acl import AclRefused, explain_refused_rule, is_stood_for
from gearcam.runtime.ai.errors import AIError, RunTimedOut
from gearcam.runtime.ai.store import STEP_COMMANDS, step_rights
from gearcam.runtime.chunks import ChunkReader
from gearcam.runtime.clients import Listed, listed_address
from gearcam.runtime.commands.base import Command, Context, Later, Queued, upper
from gearcam.runtime.commands.core import loaded_modules
from gearcam.runtime.commands.module_call import TIMEDOUT, module_call
from gearcam.runtime.commandstats import OWN, error_code
from gearcam.runtime.keyevents import keep_required_flags, private_notification
from gearcam.runtime.lua import LuaScripts, Script
from gearcam.runtime.monitor_feed import MonitorFeed
from gearcam.runtime.protected import DENIED, refuses
from gearcam.runtime.relay import BackendLink
from gearcam.runtime.request import RequestParser, Unfinished, complete_commands, continue_command, unfinished_command
from gearcam.runtime.resp import (
    Encoded,
    ErrorReply,
    ProtocolError,
    SimpleString,
    Verbatim,
    coalesce,
    encode,
    is_monitor_line,
    parse_reply,
)
from gearcam.runtime.writes import socket_fd, write_chunks

if TYPE_CHECKING:
    from gearcam.runtime.gears.service import Terminal
    from gearcam.runtime.state import RuntimeState

__all__ = ["ClientConnection"]

logger = logging.getLogger(__name__)

_SUBSCRIBE = {"SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"}
_SUBSCRIBED_OK = {"PING", "QUIT", "RESET"} | _SUBSCRIBE
# A monitor's keyspace commands are refused by Redis 7.0 itself; the commands the runtime serves are all
# keyspace ones in their modules (RedisAI's and RedisGears' are flagged readonly or write).
_MONITOR_REFUSAL = "ERR Replica can't interact with the keyspace"
_SETTLE_TOKEN = b"__gearcam_settle__"
# Its PING's reply in subscribe mode (RESP2), after leaving it, and after a RESET logged the link out
# (nothing else relayed then can be refused for want of AUTH: the client was logged in until the RESET).
_SETTLED = (
    b"*2\r\n$4\r\npong\r\n$18\r\n" + _SETTLE_TOKEN + b"\r\n",
    b"$18\r\n" + _SETTLE_TOKEN + b"\r\n",
    b"-NOAUTH Authentication required.\r\n",
)
_LAST_WORDS_S = 1.0  # how long a connection closed for a protocol error waits for the replies due before it
# Commands that change keys without key events (or replace the whole dataset): the AI store forgets what it knew.
_FORGETS_AI_MEMORY = {"FLUSHALL", "FLUSHDB", "SWAPDB", "REPLICAOF", "SLAVEOF"}  # and DEBUG RELOAD: commands/core.py
# Commands that run or load a Lua script: what it names is looked at (lua.py).
_SCRIPTED = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "SCRIPT"}
# Commands that may change what Redis' reply to a write promises (ai/write_ack.py): AI writes wait for
# Redis from the moment one is sent until the settings are read again after its reply.
_CHANGES_WRITE_ACK = {"CONFIG", "REPLICAOF", "SLAVEOF", "FAILOVER"}  # CONFIG SET only: see _changes_write_ack
# Commands that wait for data: a client blocked in one is idle, and shutdown does not wait for it.
_BLOCKING = {"BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF"}
_CLIENT_LISTING = {"LIST", "INFO", "KILL"}  # CLIENT subcommands that name clients by address (clients.py)
# Relayed commands whose success changes who the client is, or what ACLs say (see _learn).
_IDENTITY = {"AUTH", "HELLO", "SELECT", "RESET", "ACL", "CLIENT"}  # CLIENT SETNAME: SLOWLOG's client name
_LEARNT = _IDENTITY | _CHANGES_WRITE_ACK  # followed through their replies (_learn)
# Of those, the ones whose reply the client's next owned command waits for: it is checked as the user they
# log in as, against the rules they set (_acl_settled).
_AWAITED = {"AUTH", "HELLO", "ACL"}
# Unknown to Redis (owned commands are never relayed), so queueing it fails the transaction.
_ABORT_TRANSACTION = b"GEARCAM.DISCARD-TRANSACTION"
# What a detached command that lost its backing link counts as (a failed call): the client gets no reply.
_LOST = ErrorReply("ERR the backing Redis connection was lost")
_WINDOW = 1024  # unanswered replies per client before reading pauses
# Commands that mean nothing to the runtime beyond their bytes: no owned name, no identity, DB or
# transaction to follow, nothing that blocks, no key-event bookkeeping beyond the relayed count. While
# the read loop waits with nothing buffered, they are relayed as they came (see _take_plain).
_PLAIN = frozenset(
    b"""
    GET SET SETEX PSETEX SETNX GETSET GETDEL GETEX MGET MSET MSETNX INCR INCRBY INCRBYFLOAT DECR DECRBY
    APPEND STRLEN GETRANGE SETRANGE DEL UNLINK EXISTS TYPE EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL PERSIST
    TOUCH HSET HSETNX HGET HMGET HMSET HGETALL HDEL HEXISTS HLEN HKEYS HVALS HINCRBY HINCRBYFLOAT LPUSH RPUSH
    LPOP RPOP LLEN LRANGE LINDEX LSET LTRIM LREM SADD SREM SMEMBERS SISMEMBER SCARD ZADD ZREM ZSCORE ZCARD
    ZRANGE ZRANGEBYSCORE ZREVRANGE ZINCRBY ZRANK XADD XLEN XRANGE XREVRANGE XTRIM XDEL XACK XPENDING XINFO
    PUBLISH ECHO
""".split()
)
_PLAIN_BACKLOG = 64 * 1024  # asyncio's high-water mark: past it the read loop's flow control takes over
_UNFINISHED_BACKLOG = 1024 * 1024  # a command relayed as it arrives: reading pauses past this much unsent
_READ_SIZE = 1024 * 1024


@dataclass
class _Transaction:
    """What the runtime keeps of a client's open MULTI until its EXEC's reply: each entry by its position among
    the commands queued in the backing Redis' transaction. One per transaction, so that a pipelined next
    MULTI never takes what the EXEC before it still has to learn from."""

    count: int = 0  # commands queued in the backing Redis' transaction
    # Owned commands to run at EXEC (Command.in_transaction): (position, what to run).
    local: list[tuple[int, Any]] = field(default_factory=list)
    # AUTH/HELLO/SELECT/ACL: (position, arguments), learnt from their replies in EXEC's.
    learn: list[tuple[int, list[bytes]]] = field(default_factory=list)
    # Commands KeysReader(commands=[...]) registrations hook: (position, arguments).
    hooked: list[tuple[int, list[bytes]]] = field(default_factory=list)
    # Owned commands queued in their place (Command.queued): (position, name, how its reply becomes theirs).
    queued: list[tuple[int, str, Callable[[Any], Any]]] = field(default_factory=list)
    # The keys those write or delete, announced at EXEC as the runtime's own writes: (position, DB, key).
    writes: list[tuple[int, int, bytes]] = field(default_factory=list)
    # A command (or script) queued that changes keys without key events / may flush: see _Relayed.
    forgets: bool = False
    flushes: bool = False


@dataclass(frozen=True)
class _Relayed:
    """What a relayed command means beyond its bytes: the module commands its Lua script names (their error
    text is rewritten), whether it changes keys without key events (the AI store forgets what it held), and
    whether it may flush the data (the Gears sessions are written again: RedisGears' are no keys)."""

    script: Script = Script()
    forgets: bool = False
    flushes: bool = False


_PLAIN_RELAY = _Relayed()


class _Slot:
    """A place in the client's output for one reply, filled when the reply is known; a silent one is
    dropped when its turn comes (CLIENT REPLY OFF or SKIP)."""

    __slots__ = ("chunks", "blocking", "silent")

    def __init__(self, chunks: list[bytes] | None = None, silent: bool = False) -> None:
        self.chunks = chunks
        self.blocking = False
        self.silent = silent


def _changes_write_ack(args: list[bytes]) -> bool:
    name = upper(args[0])
    return name in _CHANGES_WRITE_ACK and (name != "CONFIG" or (len(args) > 1 and upper(args[1]) == "SET"))


def _dryrun_of_owned(args: list[bytes]) -> bool:
    """`ACL DRYRUN user <command> ...` of a command the runtime serves in the modules' place."""
    return len(args) > 3 and upper(args[1]) == "DRYRUN" and is_stood_for(upper(args[3]))


def _acl_log(args: list[bytes]) -> bool:
    """`ACL LOG [count | RESET]`: answered with the runtime's refusals too (acllog.py)."""
    return len(args) in (2, 3) and upper(args[1]) == "LOG"


def _reply_mode(args: list[bytes]) -> str | None:
    """ON, OFF or SKIP for a well-formed CLIENT REPLY (others go to Redis, for its own error)."""
    if len(args) == 3 and upper(args[0]) == "CLIENT" and upper(args[1]) == "REPLY":
        mode = upper(args[2])
        if mode in ("ON", "OFF", "SKIP"):
            return mode
    return None


class ClientConnection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: RuntimeState, client_id: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._fd = socket_fd(writer)  # see gearcam.runtime.writes
        self._loop = asyncio.get_running_loop()  # kept: each get_running_loop() is a getpid() system call
        self._state = state
        self._id = client_id
        self._peer = writer.get_extra_info("peername") or writer.get_extra_info("sockname")
        family = writer.get_extra_info("socket").family
        self._listed = Listed(
            listed_address(self._peer, family), listed_address(writer.get_extra_info("sockname"), family)
        )  # CLIENT LIST's addr and laddr
        self._parser = RequestParser(state.settings.max_request_size, state.max_bulk_len)
        self._parser.on_big_argument = self._big_argument_coming
        # A large argument is received straight into its bytes (chunks.py) when the reader can.
        self._in_place = reader if isinstance(reader, ChunkReader) else None
        if self._in_place is not None:
            self._in_place.filled = self._received_in_place
        self._out: deque[_Slot] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._monitor = False
        self._feed = MonitorFeed(state.clients.as_listed)  # what of Redis' MONITOR lines it sees, in MONITOR
        self._tx = _Transaction()  # the open MULTI's bookkeeping (a fresh one when none is open)
        # The runtime's own link for this client's owned commands when its ACL user is restricted (see _access).
        self._own: BackendLink | None = None
        self._own_seen = 0  # the client link's `relayed` count when the own link was last used
        # A command that changes who the client is or what ACL rules say (_AWAITED), or a transaction holding
        # one, was relayed: the client's next owned command waits for its reply (_acl_settled).
        self._identity_due = False
        self._dispatching = False
        self._started: set[asyncio.Future[Any]] = set()
        self._flush_soon = False
        self.ctx: Context | None = None
        # The plain relay (_take_plain): on while the read loop waits with nothing buffered.
        self._waiting = False
        # A plain command relayed as it arrives (larger than a read, or cut by one): what is still to
        # come of it, its slot, the start of a bulk header the last read cut, and whether reading waits
        # for its bytes to leave; `_broken` once its framing broke (what the client sends then is dropped).
        self._unfinished: Unfinished | None = None
        self._unfinished_slot: _Slot | None = None
        self._unfinished_bytes = 0
        self._carry = b""
        self._held_back = False
        self._broken = False
        self._plain = frozenset(n for n in _PLAIN if n.decode() not in state.commands)
        # CLIENT REPLY: every reply silenced (OFF), or the next command's (SKIP); see _slot.
        self._replies_off = False
        self._skip_next = False
        self._quiet_ok = False  # QUIT relayed in subscribe mode while replies are off: its +OK is dropped
        self._lines_off = False  # a monitor's lines stay dropped until the RESET that turned replies on answers
        self._pushes_due = False  # commands relayed in RESP2 subscribe mode since Redis last answered them all
        self._settling: asyncio.Future[None] | None = None  # see _settle_subscriptions
        if isinstance(reader, ChunkReader):
            reader.take = self._take_plain

    @property
    def peer(self) -> Any:
        return self._peer

    @property
    def busy(self) -> bool:
        """True while a command of this client is being served or answered: shutdown waits for it.

        A client waiting in a blocking read (BLPOP, XREAD BLOCK) is idle."""
        return self._dispatching or any(not slot.blocking for slot in self._out)

    def evict(self) -> None:
        """Disconnect now and drop what the client had sent (the clients' memory budget is exceeded)."""
        logger.warning(
            "disconnecting client %s: it holds %d bytes of unfinished requests and all clients together are over "
            "runtime.maxmemory_clients (%d bytes); raise it (or CONFIG SET maxmemory-clients) if such requests "
            "are expected",
            self._peer, self._holding, self._state.budget.limit,
        )  # fmt: skip
        self._parser.release()
        self._state.budget.forget(self)
        self._writer.transport.abort()

    async def serve(self) -> None:
        try:
            link = await BackendLink.open(self._state.backing, self._state.settings.connect_timeout, self._on_push)
        except NetworkError as exc:
            logger.warning("client %s refused: %s", self._peer, exc)
            self._writer.write(b"-ERR %s\r\n" % str(exc).encode())
            await self._close()
            return
        self.ctx = Context(link=link, state=self._state, client_id=self._id)
        self._state.clients.linked(link.client_address, self._listed)
        try:
            password_set = not await self._authenticated(link)
        except (NetworkError, ConnectionError):
            await link.close()
            await self._close()
            return
        self._parser.authenticated = not password_set
        if refuses(self._state.settings.protected_mode, password_set, self._peer):
            logger.info("client %s refused: protected mode (the backing Redis has no password)", self._peer)
            self._writer.write(b"-%s\r\n" % DENIED.encode())
            await link.close()
            await self._close()
            return
        # The connection ends when the client hangs up or the backing Redis goes away.
        tasks = {asyncio.create_task(self._read_loop(link)), asyncio.create_task(link.closed.wait())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if link.unconfirmed and not link.closed.is_set():
                # Writes answered before Redis replied (ai/write_ack.py): a link closed before Redis has read
                # them (paused, busy) would lose them, so their replies are awaited first, for a while.
                with contextlib.suppress(TimeoutError):
                    await wait_for(link.settled(), self._state.settings.connect_timeout)
            self._state.clients.remove(link.backend_id)
            await link.close()
            if self._own is not None:
                await self._own.close()
            self._parser.release()
            self._state.drop_monitor(self._id)
            self._state.budget.forget(self)
            await self._close()

    def _big_argument_coming(self, args: list[bytes]) -> None:
        """A large bulk string begins: its rest may be received in place, and if it is an AI.TENSORSET's
        blob, the tensor it replaces need not be held beside it."""
        if self._in_place is not None:
            self._in_place.into = self._parser.receive_into
        if len(args) >= 2 and self.ctx is not None and args[0].upper() == b"AI.TENSORSET":
            db = self.ctx.link.db
            if db is not None:
                self._state.ai.store.release_cached(db, args[1])

    def _received_in_place(self, nbytes: int) -> None:
        """Bytes of a large argument arrived in place (chunks.py): counted against the budget as if fed."""
        self._parser.received(nbytes)
        self._over_budget()

    async def _read_loop(self, link: BackendLink) -> None:
        try:
            parser = self._parser
            while True:
                self._waiting = parser.buffered == 0
                data = await self._reader.read(_READ_SIZE)
                self._waiting = False
                if not data:
                    return
                # A CONFIG SET of any client applies to every client at once.
                parser.max_bulk_len, parser.max_request_size = (
                    self._state.max_bulk_len,
                    self._state.settings.max_request_size,
                )
                try:
                    parser.feed(data)
                    if self._over_budget():
                        return
                    self._dispatching = True
                    while (args := parser.gets()) is not None or parser.has_more:
                        if args is None:
                            await asyncio.sleep(0)  # a huge command is parsed in slices; others are served between
                            continue
                        await self._dispatch(link, args)
                        if len(self._out) >= _WINDOW:
                            self._room.clear()
                            await self._room.wait()
                except ProtocolError as exc:
                    self._emit(self._reply(ErrorReply(f"ERR Protocol error: {exc}")))
                    await self._close_after_answers(link)  # Redis answers what came before, then the error
                    return
                self._dispatching = False
                if self._over_budget():
                    return
                await link.drain()
                await self._writer.drain()
        except (ConnectionError, NetworkError):
            return

    def _take_plain(self, data: bytes) -> bytes:
        """Transport callback: relay the plain commands at the start of `data` as they came; the rest is read.

        Only while the read loop waits with nothing buffered, the client is in no special state
        (a transaction, subscribe mode, MONITOR, before AUTH), no Gears registration hooks
        commands or runs in sync mode, and neither side's writes are backed up: then such
        commands are served exactly as the read loop would, without parsing or re-encoding them.
        A plain command that runs past `data` (a frame larger than one read, or cut by it) is
        relayed as its bytes arrive, to its end, whatever changes meanwhile.
        """
        if self._broken:
            return b""  # its framing broke: the connection closes once the replies due are written
        if self._unfinished is None and not self._plain_now():
            return data
        try:
            if self._unfinished is not None:
                data = self._pass_unfinished(data)
                if not data or not self._plain_now():
                    return data
            return self._relay_plain(data)
        except ProtocolError as exc:  # broken framing inside a command partly relayed: Redis' error, then close
            self._break_unfinished(exc)
            return b""
        except (ConnectionError, NetworkError):  # the backing Redis went away: so does this client
            self._writer.transport.abort()
            return b""
        except Exception:  # a transport callback must not raise; slots may be taken: this client cannot go on
            logger.exception("relaying plain commands of client %s failed", self._peer)
            self._writer.transport.abort()
            return b""

    def _plain_now(self) -> bool:
        ctx = self.ctx
        if not self._waiting or ctx is None or ctx.in_multi or self._monitor or not self._parser.authenticated:
            return False
        link, gears = ctx.link, self._state.gears
        return not (
            link.passthrough
            or link.closed.is_set()
            or (gears is not None and (gears.hooks or gears.key_hooks or gears.sync_registrations))
            or link.backlog > _PLAIN_BACKLOG
            or self._writer.transport.get_write_buffer_size() > _PLAIN_BACKLOG
        )

    def _relay_plain(self, data: bytes) -> bytes:
        assert self.ctx is not None
        link, limit = self.ctx.link, self._state.settings.max_request_size
        if len(data) > limit:
            return data  # the parser refuses it, as Redis would
        end = relayed = 0  # where the bytes left to the read loop begin, and where those handed on end
        callbacks = []
        room = _WINDOW - len(self._out)
        for stop, _name in complete_commands(data, self._state.max_bulk_len, room, self._plain):
            if stop < 0:  # not a plain command: it and what follows go to the read loop
                break
            slot = self._slot()
            callbacks.append(lambda frame, slot=slot: self._fill_relayed(link, slot, frame))
            end = relayed = stop
        else:  # every complete command was plain: the one that runs past `data` may be too
            started = unfinished_command(data, end, self._state.max_bulk_len, limit) if len(callbacks) < room else None
            if started is not None and started[0].upper() in self._plain:
                _name, self._unfinished, stop = started
                self._unfinished_slot = slot = self._slot()
                callbacks.append(lambda frame, slot=slot: self._fill_relayed(link, slot, frame))
                self._carry = data[stop:]
                self._unfinished_bytes = stop - end
                relayed = stop  # up to a bulk header cut by the read; the rest is carried
                end = len(data)
        if not callbacks:
            return data
        link.relayed += len(callbacks)
        self._listed.cmd = None  # CLIENT LIST's cmd= is Redis' own again
        link.relay_raw(data if relayed == len(data) else data[:relayed], callbacks)
        if self._unfinished is not None and not self._over_budget():
            self._hold_back(link)
        return data[end:]

    def _pass_unfinished(self, data: bytes) -> bytes:
        """Relay what `data` holds of the command being relayed as it arrives; the bytes after its end."""
        assert self.ctx is not None and self._unfinished is not None
        link, rest = self.ctx.link, self._unfinished
        if self._carry:
            data = self._carry + data
            self._carry = b""
        stop = continue_command(data, 0, rest, self._state.max_bulk_len, self._state.settings.max_request_size)
        if stop:
            link.relay_raw(data if stop == len(data) else data[:stop], ())
        if rest.done:
            self._unfinished = self._unfinished_slot = None
            self._unfinished_bytes = 0
            self._over_budget()
            return data[stop:]
        self._carry = data[stop:]  # a bulk header cut by the read: read again with the next bytes
        self._unfinished_bytes += stop
        if not self._over_budget():
            self._hold_back(link)
        return b""

    def _hold_back(self, link: BackendLink) -> None:
        """Stop reading this client while its command's bytes wait to leave for Redis (they are not buffered)."""
        if self._held_back or link.backlog <= _UNFINISHED_BACKLOG or self._in_place is None:
            return
        self._held_back = True
        self._in_place.hold()
        task = asyncio.get_running_loop().create_task(self._release_after(link, self._in_place))
        self._started.add(task)
        task.add_done_callback(self._started.discard)

    async def _release_after(self, link: BackendLink, reader: ChunkReader) -> None:
        try:
            await link.drain()
        except (ConnectionError, NetworkError):
            pass
        finally:
            self._held_back = False
            reader.release()

    def _break_unfinished(self, exc: ProtocolError) -> None:
        """The command being relayed as it arrives broke its framing: answer the parser's error for it, then close.

        Redis has part of it and waits for the rest; the connection closes instead, once the
        replies due before it are written, as when the parser finds the error.
        """
        assert self.ctx is not None and self._unfinished_slot is not None
        self._unfinished_slot.chunks = self._reply(ErrorReply(f"ERR Protocol error: {exc}"))
        self._unfinished = self._unfinished_slot = None
        self._unfinished_bytes = 0
        self._carry = b""
        self._broken = True
        task = asyncio.get_running_loop().create_task(self._close_after_answers(self.ctx.link))
        self._started.add(task)
        task.add_done_callback(self._started.discard)

    async def _close_after_answers(self, link: BackendLink) -> None:
        """Write the replies due (waiting for them at most _LAST_WORDS_S), then close: after a protocol error."""
        try:
            await self._answered(link, _LAST_WORDS_S)
            self._flush_now()
            await self._writer.drain()
        except (ConnectionError, NetworkError):
            pass
        finally:
            self._writer.transport.close()

    async def _answered(self, link: BackendLink, timeout: float) -> None:
        """Wait (at most `timeout` s) until every reply queued so far has arrived, so none is lost on closing."""
        await link.drain()
        deadline = asyncio.get_running_loop().time() + timeout
        while any(slot.chunks is None for slot in self._out) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)

    @property
    def _holding(self) -> int:
        """Bytes of this client's unfinished requests: what the parser holds, and what Redis holds of a
        command relayed as it arrives (there, not here, but held for this client all the same)."""
        return self._parser.buffered + self._unfinished_bytes

    def _over_budget(self) -> bool:
        """Report what this client holds; True if it was the one disconnected to keep the budget."""
        victim = self._state.budget.update(self, self._holding)
        if victim is None:
            return False
        assert isinstance(victim, ClientConnection)
        victim.evict()
        return victim is self

    # Ordered output -------------------------------------------------------------------------

    def _slot(self, chunks: list[bytes] | None = None) -> _Slot:
        """The next command's place in the output: silent while CLIENT REPLY is OFF, or after SKIP."""
        slot = _Slot(chunks, self._replies_off or self._skip_next)
        self._skip_next = False
        self._out.append(slot)
        return slot

    def _fill(self, slot: _Slot, chunks: list[bytes]) -> None:
        slot.chunks = chunks
        self._flush()

    def _fill_relayed(self, link: BackendLink, slot: _Slot, frame: bytes) -> None:
        """A relayed reply: written at once when no other reply is due on the link (none to share the write with)."""
        slot.chunks = [frame]
        if link.pending:
            self._flush()
        else:
            self._flush_now()

    def _emit(self, chunks: list[bytes]) -> None:
        """A command's reply known at once (QUEUED, an error before it runs)."""
        self._slot(chunks)
        self._flush()

    def _flush(self) -> None:
        """Write the replies that are ready at the end of this loop turn, so pipelined replies share one write."""
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_soon = False
        out = self._out
        closing = self._writer.is_closing()
        ready: list[bytes] = []
        while out and (chunks := out[0].chunks) is not None:
            if not out.popleft().silent:
                ready += chunks
        if ready and not closing:  # a client that hung up gets nothing more (uvloop raises on a closed transport)
            write_chunks(self._writer, self._fd, coalesce(ready))
        if len(out) < _WINDOW // 2:
            self._room.set()

    def _on_push(self, frame: bytes) -> None:
        if self._settling is not None and frame in _SETTLED:  # see _settle_subscriptions
            if not self._settling.done():
                self._settling.set_result(None)
            return
        link = self.ctx.link if self.ctx else None
        if self._quiet_ok and frame == b"+OK\r\n":
            self._quiet_ok = False
            return  # QUIT's reply in subscribe mode while replies are off
        if self._monitor:
            shown = self._feed.line(frame) if is_monitor_line(frame) else frame  # (a reply to a monitor's command)
            if shown is not None:
                self._monitor_line(shown)
            return
        if link is not None and link.passthrough:
            if frame == b"+RESET\r\n":
                link.passthrough = False
                self._replies_off = self._skip_next = False
                if self.ctx is not None:  # RESET from subscribe mode: logged out, DB 0 (see _learn)
                    self.ctx.user, self.ctx.authenticated, link.db = "default", False, 0
                    self.ctx.protocol = 2
            elif frame.startswith(b"*3\r\n$") and b"unsubscribe\r\n" in frame[:32]:
                reply = parse_reply(frame)
                if isinstance(reply, list) and reply[-1] == 0:
                    link.passthrough = False
        if private_notification(frame):  # the runtime's own keys' events: as no module's show on Redis
            return
        self._out.append(_Slot([frame]))  # not a command's reply: CLIENT REPLY OFF does not silence it (as in Redis)
        self._flush()

    def _start_monitor(self, link: BackendLink, args: list[bytes]) -> None:
        """MONITOR: relayed, its reply in order; Redis' lines come through `_on_push`, the runtime's own
        commands' lines through `RuntimeState.monitors`."""
        self._monitor = link.monitoring = True
        self._feed = MonitorFeed(self._state.clients.as_listed)
        self._state.add_monitor(self._id, self._monitor_line)
        slot = self._slot()

        def answered(frame: bytes) -> None:
            if frame[:1] == b"-":  # refused (an ACL rule): not a monitor after all
                self._stop_monitor(link)
            self._fill(slot, [frame])

        link.relay(args, answered)

    def _stop_monitor(self, link: BackendLink) -> None:
        self._monitor = link.monitoring = self._lines_off = False
        self._state.drop_monitor(self._id)

    async def _dispatch_monitoring(self, link: BackendLink, name: str, args: list[bytes], owned: bool) -> bool:
        """A command from a client in MONITOR: True if answered here, False to relay it as any other.

        Redis 7.0 runs a monitor's commands but those that touch the keyspace ("Replica can't interact
        with the keyspace"): relayed, Redis decides, and its replies keep their order among the lines.
        """
        assert self.ctx is not None
        if name == "MONITOR":
            self._skip_next = False  # Redis ignores it, reply and all; a SKIP before it is spent
            return True
        if name in _SUBSCRIBE:
            # Subscribe mode on top of MONITOR would mix unsolicited messages into the replies.
            self._emit(self._reply(ErrorReply(
                f"ERR the gearcam runtime cannot run {name} on a connection in MONITOR mode; "
                "subscribe on another connection (or RESET this one first)"
            )))  # fmt: skip
            return True
        if not owned:
            return False
        slot = self._slot()
        error = ErrorReply(_MONITOR_REFUSAL)
        if not self.ctx.authenticated and not await self._authenticated(link):
            error = ErrorReply("NOAUTH Authentication required.")
        else:
            try:
                await self._acl_unrestricted(name, args)
            except ErrorReply as exc:  # NOPERM comes before the keyspace refusal, as in Redis
                error = exc
        self._fill(slot, self._reply(error))
        return True

    def _monitor_line(self, line: bytes) -> None:
        """A line of the MONITOR feed, written ahead of the replies still due.

        Redis answered every command relayed before the command the line reports, so a reply not
        in yet comes after it in Redis' own stream; replies ready are written first.
        """
        if self._replies_off or self._lines_off:
            return  # Redis 7.0 sends a monitor nothing at all while its replies are off
        self._flush_now()
        if not self._writer.is_closing():
            self._writer.write(line)

    def _monitored(self, command: Command, args: list[bytes], ctx: Context) -> None:
        """An owned command about to run, in the other monitors' feeds under this client's address, as its relayed
        commands' lines show it (MonitorFeed)."""
        assert self.ctx is not None
        if self._state.monitors:
            shown = self._state.clients.as_listed(self.ctx.link.client_address.encode()).decode()
            self._state.monitored(command, args, ctx.link.db or 0, shown, self._id)

    async def _settle_subscriptions(self, link: BackendLink) -> None:
        """RESP2 subscribe mode: wait until Redis has answered every command relayed so far.

        Only the backing Redis knows whether an UNSUBSCRIBE left subscribe mode, and the runtime
        answers a command refused there itself: without this, a command pipelined after the last
        UNSUBSCRIBE was refused though Redis would run it, and a refusal overtook the confirmations
        of the commands before it. Redis answers in order, so once the reply of a PING sent now is
        back (dropped here, in either mode's form), so are theirs.
        """
        self._pushes_due = False
        self._settling = self._loop.create_future()
        try:
            link.send_passthrough([b"PING", _SETTLE_TOKEN], own=True)
            await link.drain()
            async with asyncio.timeout(self._state.settings.connect_timeout):
                await self._settling
        except (TimeoutError, ConnectionError, NetworkError):
            pass  # the link is gone or Redis does not answer: the command is answered as in subscribe mode
        finally:
            self._settling = None

    def _reply(self, value: Any) -> list[bytes]:
        return encode(value, self.ctx.protocol if self.ctx else 2)

    # Dispatch -------------------------------------------------------------------------------

    async def _dispatch(self, link: BackendLink, args: list[bytes]) -> None:
        assert self.ctx is not None
        name = upper(args[0])
        command = self._state.commands.get(name)
        if command is not None and command.takes is not None and not command.takes(args):
            command = None  # relayed as it is (a CONFIG of the backing Redis' own parameters)
        # CLIENT LIST's cmd= (clients.py): Redis names the command it saw before any check, queued ones too.
        self._listed.cmd = command.listed_name(args) if command is not None else None
        if link.passthrough and self._pushes_due and name not in _SUBSCRIBED_OK:
            await self._settle_subscriptions(link)  # the commands before it may have left subscribe mode
        if self._monitor:
            if await self._dispatch_monitoring(link, name, args, command is not None):
                return
            command = None
        elif link.passthrough:
            if name not in _SUBSCRIBED_OK:
                self._emit(self._reply(ErrorReply(
                    f"ERR Can't execute '{name.lower()}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / "
                    "PING / QUIT / RESET are allowed in this context"
                )))  # fmt: skip
                return
            # In RESP2 subscribe mode every reply comes back as a push, so the reply mode is applied here,
            # as Redis 7.0 applies it: PING's and QUIT's replies are silenced, RESET turns replies back on.
            silent, self._skip_next = self._replies_off or self._skip_next, False
            if name == "RESET":
                # Logged out (see _on_push): the commands after it are parsed with the limits Redis then applies.
                self._replies_off = False
                link.send_passthrough(args)
                await self._settle_subscriptions(link)
                if not link.passthrough:  # RESET answered (not when the link broke or Redis did not answer)
                    self._parser.authenticated = await self._authenticated(link)
                return
            if silent and name == "PING":
                return  # nothing to do in Redis: its only effect is the reply
            elif silent and name == "QUIT":
                self._quiet_ok = True
            self._pushes_due = True
            link.send_passthrough(args)
            return
        if name in _SUBSCRIBE and not self.ctx.in_multi:
            link.passthrough = self.ctx.protocol == 2
            self._skip_next = False  # spent on it; its confirmation is a push, which SKIP does not silence
            self._pushes_due = link.passthrough
            link.send_passthrough(args)
            return
        if name == "MONITOR" and not self.ctx.in_multi:
            self._start_monitor(link, args)
            return
        if command is not None and command.amends and self.ctx.in_multi:
            if command.queued is not None and await self._amends_in_transaction(command, args):
                await self._queue_in_transaction(link, command, args)  # e.g. TYPE answering RedisAI's type names
                return
            command = None  # queued in the backing Redis' transaction as it is
        if command is None:
            gears = self._state.gears
            hooks = (
                gears.hooks_for(name, args)
                if gears is not None and gears.hooks and not self.ctx.in_multi and not self._monitor
                else []
            )
            if hooks:
                await self._dispatch_hooked(link, name, args, hooks)
                return
            if gears is not None and gears.key_hooks and not self._monitor and gears.key_hooks_for(name):
                if not self.ctx.in_multi:
                    await self._dispatch_key_hooked(link, name, args)
                    return
                self._tx.hooked.append((self._tx.count, args))  # its registrations run at EXEC
            if name == "CLIENT" and (mode := _reply_mode(args)) is not None:
                await self._client_reply(link, mode)
                return
            if name == "ACL" and not self.ctx.in_multi and _dryrun_of_owned(args):
                await self._answer(name, self._slot(), self._acl_dryrun(link, args))
                return
            if name == "ACL" and not self.ctx.in_multi and _acl_log(args):
                await self._answer(name, self._slot(), self._acl_log(link, args))
                return
            if name == "CLIENT" and not self.ctx.in_multi and len(args) > 1 and upper(args[1]) in _CLIENT_LISTING:
                await self._answer(name, self._slot(), self._client_listing(link, args))
                return
            await self._dispatch_relayed(link, name, args)
            return
        if not self.ctx.authenticated and not self.ctx.in_multi and not await self._authenticated(link):
            # Commands the runtime serves itself (RG.* through its own link) must not bypass requirepass/ACLs.
            # Inside MULTI Redis answers for the link, and a PING would be queued there: MULTI needs the link
            # logged in, a step queued on it meets Redis' own check, and what the runtime runs at EXEC runs
            # only once EXEC's reply says the transaction ran.
            refusal = ErrorReply("NOAUTH Authentication required.")
            self._fill(self._slot(), self._reply(refusal))
            self._rejected(command, refusal)
            return
        if self.ctx.in_multi:
            if command.queued is not None:
                await self._queue_in_transaction(link, command, args)
                return
            if command.in_transaction is None:
                self._refuse_in_multi(link, command.name)
                return
            try:  # run at EXEC, its reply in its place among the transaction's (RG.TRIGGER of sync registrations)
                ctx = await self._access(link, name, args)
            except ErrorReply as exc:
                self._refuse_in_multi(link, command.name, exc)
                return
            self._queue_local((command.in_transaction, ctx, args))
            return
        gears = self._state.gears
        if gears is not None and gears.hooks and not command.amends:
            hooks = gears.hooks_for(name, args)
            if hooks:  # RedisGears hooks a module's command as any other (its command filter sees every command)
                await self._dispatch_hooked(link, name, args, hooks, partial(self._hooked_owned, link, command))
                return
        slot = self._slot()
        try:
            ctx = await self._access(link, name, args)
        except ErrorReply as exc:
            self._fill(slot, self._reply(exc))
            self._rejected(command, exc)
            return
        self._monitored(command, args, ctx)
        began = time.monotonic()
        if command.start is not None and ctx is self.ctx:
            try:
                started = command.start(ctx, args)
            except Exception as exc:  # a bug must cost this command, not the connection and what it pipelined
                value = self._error_reply(name, exc)
                if value is None:
                    raise
                self._fill(slot, self._reply(value))
                self._ran(command, args, began, link, value)
                return
            if isinstance(started, Later):
                self._answer_later(name, slot, started)
                self._ran(command, args, began, link, None)
            else:  # the client's next commands go on meanwhile: the log is looked at on the runtime's link
                task = self._detach(name, slot, started)
                task.add_done_callback(
                    lambda done: self._ran(command, args, began, None, _LOST if done.cancelled() else done.result())
                )
            return
        error = await self._answer(name, slot, command.handler(ctx, args))
        self._ran(command, args, began, link, error)

    def _ran(
        self, command: Command, args: list[bytes], began: float, link: BackendLink | None, error: ErrorReply | None
    ) -> None:
        """Count an owned command in INFO commandstats and put it in SLOWLOG if it was slow.

        Called once its reply is ready (the writes it waits for aside), and where `link` is given
        before the client's next command is dispatched, so a look at the backing Redis' log sent on
        it runs in this client's order (an owned command never runs here in a transaction, in
        subscribe mode or in MONITOR, where such a look could not be sent).
        """
        if not command.amends:  # (else the backing Redis counts and logs it)
            self._state.ran(command.name, args, began, error, self._slowlog_client, link)

    def _rejected(self, command: Command, refusal: ErrorReply) -> None:
        if not command.amends:
            self._state.commandstats.rejected(command.name, refusal)

    def _slowlog_client(self) -> tuple[bytes, bytes]:
        """This client in a SLOWLOG entry, as the backing Redis' entries for its link name it (clients.py)."""
        assert self.ctx is not None
        return self._state.clients.as_listed(self.ctx.link.listed_address.encode()), self.ctx.name

    async def _access(self, link: BackendLink, name: str, args: list[bytes]) -> Context:
        """The context to run an owned command in, or the NOPERM reply raised if the client's ACL user may not.

        An unrestricted user (`+@all ~*`) keeps its own link. For a restricted one, the backing
        Redis is asked what the command stands for (gearcam/runtime/acl.py); if allowed, it runs
        on the runtime's own link (its stored values are read and written with internal commands
        and keys the user has no rights to), after every command the client sent before it.
        """
        assert self.ctx is not None
        if await self._acl_unrestricted(name, args):
            return self.ctx
        await link.settled()
        db = link.db if link.db is not None else await self._current_db(link)
        if self._own is None or self._own.closed.is_set():
            backing = self._state.backing
            self._own = await BackendLink.open(backing, self._state.settings.connect_timeout, authenticate=True)
            self._own.trusts_memory = link.trusts_memory
        if self._own.db != db:
            await self._own.call(b"SELECT", db)
            self._own.db = db
        if link.relayed != self._own_seen:
            # Commands relayed since the last owned one: the AI store fences (on this link) before trusting memory.
            self._own.relayed += 1
            self._own_seen = link.relayed
        return replace(self.ctx, link=self._own)

    async def _acl_settled(self) -> None:
        """Wait for the reply of an AUTH, HELLO or ACL command this client relayed, so that its next owned
        commands are checked as the user it logged in as, against the rules it set, as in Redis (the user
        is learnt from that reply, _learn, which also forgets the cached answers after an ACL command;
        they are asked on the runtime's own link, which could pass it)."""
        assert self.ctx is not None
        if self._identity_due:
            await self.ctx.link.settled()
            self._identity_due = False

    async def _acl_unrestricted(self, name: str, args: list[bytes]) -> bool:
        """True for an unrestricted user; False for a restricted one the command is allowed to; else NOPERM."""
        assert self.ctx is not None
        await self._acl_settled()
        acl = self._state.acl
        try:
            if await acl.unrestricted(self.ctx.user):
                return True
            await acl.check(self.ctx.user, name, args)
            return False
        except NetworkError as exc:
            raise ErrorReply(f"ERR cannot check the ACL rules of user {self.ctx.user!r}: {exc}") from None
        except AclRefused as refused:  # in ACL LOG, as Redis logs the commands its rules refuse
            context = "multi" if self.ctx.in_multi else "toplevel"
            await self._state.acllog.record(refused, context, self.ctx.user, self.ctx.link)
            raise

    async def _unrestricted(self) -> bool:
        """Whether the client's ACL user may run everything (unknown: no), where a restricted one is not refused."""
        assert self.ctx is not None
        await self._acl_settled()
        try:
            return await self._state.acl.unrestricted(self.ctx.user)
        except (ErrorReply, NetworkError):
            return False

    async def _current_db(self, link: BackendLink) -> int:
        """The client's DB when a SELECT's outcome is unknown (queued in a transaction that failed)."""
        try:
            info = await link.call(b"CLIENT", b"INFO")
        except ErrorReply:
            raise ErrorReply(
                "ERR the gearcam runtime cannot tell which DB this connection is in after a SELECT inside a "
                "failed transaction; send SELECT again"
            ) from None
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(item.partition("=")[::2] for item in text.split())
        link.db = int(fields.get("db", "0"))
        return link.db

    def _learn(self, link: BackendLink, args: list[bytes], ok: bool) -> None:
        """Follow the client's user and DB through its AUTH/HELLO/SELECT/RESET (and ACL changes) that succeeded."""
        assert self.ctx is not None
        name = upper(args[0])
        if _changes_write_ack(args):
            self._state.ai.store.acks.recheck()  # whether it ran or not: the wait set when it was sent ends
            if ok and name == "CONFIG":
                self._state.configured(args)
            return
        if not ok:
            return
        if name == "CONFIG" and len(args) == 2 and upper(args[1]) == "RESETSTAT":
            self._state.commandstats.reset()  # with the backing Redis' own
            self._state.rejected_connections = self._state.connections_received = 0
        if name == "AUTH" and len(args) in (2, 3):
            self.ctx.user = args[1].decode("utf-8", "replace") if len(args) == 3 else "default"
        elif name == "HELLO":
            words = [upper(a) for a in args]
            if "AUTH" in words and words.index("AUTH") + 2 < len(args):
                self.ctx.user = args[words.index("AUTH") + 1].decode("utf-8", "replace")
            if "SETNAME" in words and words.index("SETNAME") + 1 < len(args):
                self.ctx.name = args[words.index("SETNAME") + 1]
        elif name == "CLIENT" and len(args) == 3 and upper(args[1]) == "SETNAME":
            self.ctx.name = args[2]
        elif name == "SELECT" and len(args) == 2 and args[1].isdigit():
            link.db = int(args[1])
        elif name == "RESET":
            self.ctx.user, link.db = "default", 0
        elif name == "ACL":
            self._state.acl.forget()

    def _learn_exec(self, link: BackendLink, result: Any, learn: list[tuple[int, list[bytes]]]) -> None:
        """AUTH/SELECT/... that ran inside the transaction just answered: learn from their replies in EXEC's."""
        if not isinstance(result, list):
            return
        for position, args in learn:
            if position < len(result):
                self._learn(link, args, not isinstance(result[position], ErrorReply))

    async def _dispatch_hooked(
        self, link: BackendLink, name: str, args: list[bytes], hooks: list[Any], terminal: Terminal | None = None
    ) -> None:
        """A command a Gears CommandReader hooks: its registration answers; call_next() reaches Redis, or
        `terminal` for a command the runtime serves itself.

        Answered in order: this client's next commands wait, so the hook sees the data as the
        command would have (RedisGears runs hooks inside the command).
        """
        assert self.ctx is not None and self._state.gears is not None
        link.relayed += 1
        slot = self._slot()
        if not self.ctx.authenticated and not await self._authenticated(link):
            self._fill(slot, self._reply(ErrorReply("NOAUTH Authentication required.")))
            return
        await self._answer(name, slot, self._state.gears.run_hook(link, hooks, args, terminal=terminal))

    async def _hooked_owned(self, link: BackendLink, command: Command, args: list[bytes], caller: str) -> Any:
        """call_next() of a hooked AI.* or RG.* command, past the last hook: the command as RM_Call runs it
        (RedisGears' call_next is one), with the client's ACL user's rights, counted as the command. `caller`:
        the hook's execution, which a trigger run here nests under (as inline in RedisGears: its atomic())."""
        try:
            ctx = replace(await self._access(link, command.name, args), caller=caller)
        except ErrorReply as exc:
            self._rejected(command, exc)
            raise
        self._monitored(command, args, ctx)
        began, error = time.monotonic(), None
        try:
            return await module_call(ctx, command, args)
        except ErrorReply as exc:
            error = exc
            raise
        finally:
            self._ran(command, args, began, None, error)

    async def _dispatch_key_hooked(self, link: BackendLink, name: str, args: list[bytes]) -> None:
        """A command KeysReader(commands=[...]) registrations hook: they run on its key events, before its reply."""
        assert self.ctx is not None and self._state.gears is not None
        gears = self._state.gears
        link.relayed += 1
        slot = self._slot()
        try:
            reply = await gears.run_key_hooks(link, gears.key_hooks_for(name), args, link.call_raw(args, own=False))
        except ErrorReply as exc:
            reply = exc
        except GearcamError as exc:
            reply = ErrorReply(f"ERR {exc}")
        self._fill(slot, [reply] if isinstance(reply, bytes) else self._reply(reply))

    async def _authenticated(self, link: BackendLink) -> bool:
        """Ask the backing Redis whether this client's link is logged in (CLIENT ID needs AUTH when a password
        is set); its answer is also the link's id, by which CLIENT LIST finds this client (clients.py)."""
        assert self.ctx is not None
        try:
            self._identified(link, await link.call(b"CLIENT", b"ID"))
        except ErrorReply as exc:
            if exc.message.startswith("NOAUTH"):
                return False
            # Refused to the user by an ACL rule: logged in; CLIENT LIST shows its link's address
        self.ctx.authenticated = True
        return True

    def _identified(self, link: BackendLink, link_id: Any) -> None:
        if isinstance(link_id, int):
            link.backend_id = link_id
            self._state.clients.add(link_id, self._listed)

    def _detach(self, name: str, slot: _Slot, reply: Awaitable[Any]) -> asyncio.Future[ErrorReply | None]:
        """Answer in `slot` when `reply` is ready, while this client's next commands are dispatched."""
        task = asyncio.ensure_future(self._answer(name, slot, reply, detached=True))
        self._started.add(task)
        task.add_done_callback(self._started.discard)
        return task

    def _answer_later(self, name: str, slot: _Slot, later: Later) -> None:
        """Fill `slot` once the writes `later` waits for are answered; no task, a callback."""

        def written(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                return
            error = future.exception()
            value = later.value if error is None else self._error_reply(name, error)
            if value is None:  # the link the write went on was lost: say so rather than leave the client waiting
                value = ErrorReply(f"ERR {name} did not complete: {error}; the backing Redis connection was lost")
            self._fill(slot, self._reply(value))

        if later.written.done():  # written behind (ai/write_ack.py): answered now, not an iteration later
            written(later.written)
        else:
            later.written.add_done_callback(written)

    def _error_reply(self, name: str, exc: BaseException) -> Any:
        """What the client gets for a command that raised `exc`; None if the backing link was lost."""
        if isinstance(exc, ErrorReply):
            return exc
        if isinstance(exc, RunTimedOut):
            return TIMEDOUT
        if isinstance(exc, AIError):
            return ErrorReply(exc.message)
        if isinstance(exc, NetworkError | ConnectionError):
            return None
        if isinstance(exc, GearcamError):
            return ErrorReply(f"ERR {exc}")
        logger.error("%s failed for client %s", name, self._peer, exc_info=exc)
        return ErrorReply(f"ERR internal error in {name}: {type(exc).__name__}: {exc}")

    async def _answer(self, name: str, slot: _Slot, reply: Awaitable[Any], detached: bool = False) -> ErrorReply | None:
        """Fill `slot` with the reply; the error it is, if one (INFO commandstats and errorstats count it).
        A lost backing link ends the connection (quietly when detached)."""
        try:
            value: Any = await reply
        except Exception as exc:
            value = self._error_reply(name, exc)
            if value is None:
                if detached:
                    return _LOST
                raise
        if isinstance(value, Later):
            self._answer_later(name, slot, value)
            return None
        self._fill(slot, self._reply(value))
        return value if isinstance(value, ErrorReply) else None

    async def _queue_in_transaction(self, link: BackendLink, command: Command, args: list[bytes]) -> None:
        """An owned command inside MULTI that the backing Redis can run in its place (Command.queued).

        Queued in the client's transaction, it is applied at EXEC in order and atomically with
        the rest, as RedisAI's commands are; its reply in EXEC's is turned into the command's.
        Arguments RedisAI refuses are its error in EXEC's reply, in its place, and the rest
        commits. The step runs as the client's user, so a user that ACL rules restrict needs,
        besides the rights its command is checked as, those of the step's own commands
        (store.step_rights: EVAL and the type check's reads); without them the command is refused
        and the transaction discarded, naming them (a command the runtime amends is then queued as
        it is instead: _amends_in_transaction).
        """
        assert self.ctx is not None and command.queued is not None
        try:
            unrestricted = await self._acl_unrestricted(command.name, args)
        except ErrorReply as exc:
            self._refuse_in_multi(link, command.name, exc)
            return
        try:
            queued = command.queued(self.ctx, args)
            if not isinstance(queued, Queued):  # a model or script to load first (AI.MODELSTORE, AI.SCRIPTSTORE)
                queued = await queued
        except Exception as exc:  # noqa: BLE001 - translated once, as any command's error (_error_reply)
            self._queue_local(self._error_reply(command.name, exc))
            return
        if not unrestricted and (lacking := await self._lacking(command.name, queued)) is not None:
            self._refuse_in_multi(link, command.name, lacking)
            return
        self._tx.queued.append((self._tx.count, command.name, queued.reply))
        if queued.writes is not None and link.db is not None:  # (unknown after a SELECT queued before it)
            self._tx.writes.append((self._tx.count, link.db, queued.writes))
        slot = self._slot()
        # A step the runtime queued (store.queued_step, queued_type) is its own command; a TYPE of the wrong arity,
        # queued as it came for Redis to refuse, is the client's.
        link.relay(queued.args, lambda frame: self._fill(slot, [frame]), own=queued.args[:1] == (b"EVAL",))
        self._tx.count += 1

    async def _amends_in_transaction(self, command: Command, args: list[bytes]) -> bool:
        """Whether a command the runtime amends (TYPE) is queued as its step, not as it is: for a user that ACL
        rules restrict, if it may run the step's commands (else Redis' own checks answer the command)."""
        assert self.ctx is not None and command.queued is not None
        if await self._unrestricted():
            return True
        queued = command.queued(self.ctx, args)
        return isinstance(queued, Queued) and await self._lacking(command.name, queued) is None

    async def _lacking(self, name: str, queued: Queued) -> ErrorReply | None:
        """Why the client's restricted user may not run `queued`'s step in its transaction, or None if it may."""
        assert self.ctx is not None
        rights = step_rights(queued.args)
        user = self.ctx.user
        try:
            refused = await self._state.acl.refused_plain(user, name, rights)
        except NetworkError as exc:
            return ErrorReply(f"ERR cannot check the ACL rules of user {user!r}: {exc}")
        if refused is None:
            return None
        return ErrorReply(
            f"ERR the gearcam runtime runs {name} inside MULTI as a script step with the rights of user {user!r}, "
            f"which Redis refuses ({refused}): the step needs {STEP_COMMANDS} on its key; grant them or send "
            f"{name} before MULTI or after EXEC; the transaction is discarded"
        )  # fmt: skip

    def _queue_local(self, value: Any) -> None:
        """An owned command inside MULTI answered by the runtime at EXEC, in its place (see _at_exec): QUEUED now."""
        self._tx.local.append((self._tx.count + len(self._tx.local), value))
        self._emit(self._reply(SimpleString("QUEUED")))

    def _apply_queued(self, result: Any, queued: list[tuple[int, str, Callable[[Any], Any]]]) -> None:
        """EXEC's replies of the commands queued for owned ones, turned into theirs (errors translated once)."""
        if not isinstance(result, list):  # not run: EXECABORT, or a WATCHed key changed
            return
        for position, name, reply in queued:
            if position < len(result):
                if isinstance(result[position], ErrorReply):  # the step the runtime queued for it failed
                    OWN.failed_call(b"EVAL", error_code(result[position]))
                try:
                    result[position] = reply(result[position])
                except Exception as exc:  # noqa: BLE001 - as _answer translates any command's error
                    result[position] = self._error_reply(name, exc)
                self._ran_in_transaction(name, 0, result[position])

    def _ran_in_transaction(self, name: str, duration_us: int, value: Any) -> None:
        """An owned command EXEC ran: counted in INFO commandstats, as Redis counts each command EXEC runs."""
        command = self._state.commands.get(name)
        if command is not None and not command.amends:
            self._state.commandstats.ran(command.name, duration_us, value if isinstance(value, ErrorReply) else None)

    def _is_execution(self, name: str) -> bool:
        command = self._state.commands.get(name)
        return command is not None and command.execution

    def _refuse_in_multi(self, link: BackendLink, name: str, error: ErrorReply | None = None) -> None:
        """An owned command inside MULTI: refused when queued, and the whole transaction with it.

        The runtime cannot run it inside the backing Redis' transaction, and answering it apart
        would commit the rest without it. So, as Redis does with a command it cannot queue, the
        client gets the reason now and EXEC answers EXECABORT: an unknown command is queued in
        the backing Redis' transaction to mark it failed, and its reply is replaced by the reason.
        """
        if error is None:  # (execution commands and RG.TRIGGER/RG.PYEXECUTE are queued: Command.in_transaction)
            error = ErrorReply(
                f"ERR the gearcam runtime cannot run {name} inside MULTI; the transaction is discarded: "
                "send it before MULTI or after EXEC"
            )
        slot = self._slot()
        link.relay((_ABORT_TRANSACTION,), lambda _: self._fill(slot, self._reply(error)))

    async def _client_reply(self, link: BackendLink, mode: str) -> None:
        """CLIENT REPLY ON/OFF/SKIP, kept here: the backing Redis keeps replying (see the module's doc).

        The backing Redis is asked `CLIENT REPLY ON` first, so AUTH and ACL rules refuse the
        command as Redis would (the refusal answered as any reply is). Inside MULTI it is
        refused, transaction and all: Redis itself would break the EXEC reply's framing.
        """
        assert self.ctx is not None
        if self.ctx.in_multi:
            self._refuse_in_multi(link, f"CLIENT REPLY {mode}")
            return
        slot = self._slot()
        frame = await link.call_raw([b"CLIENT", b"REPLY", b"ON"])
        if frame[:1] != b"-":
            if mode == "ON":
                self._replies_off = self._skip_next = slot.silent = False
            elif mode == "OFF":
                self._replies_off, self._skip_next, slot.silent = True, False, True
            else:
                self._skip_next, slot.silent = not self._replies_off, True
        self._fill(slot, [frame])

    async def _dispatch_relayed(self, link: BackendLink, name: str, args: list[bytes]) -> None:
        assert self.ctx is not None
        ctx = self.ctx
        link.relayed += 1  # its key events must reach the AI store before this client's next AI read
        if name == "CONFIG" and len(args) > 3 and upper(args[1]) == "SET":
            args = keep_required_flags(args, self._state.events.required)  # on, as they are for the modules
        tx = self._tx
        meant = self._meaning(name, args, tx)
        if meant.forgets:
            self._state.ai.store.withdraw_all()  # no key events for these: see ai/coherence.py
        if (name in _AWAITED and not ctx.in_multi) or (
            name == "EXEC" and any(upper(a[0]) in _AWAITED for _, a in tx.learn)
        ):
            self._identity_due = True
        if _changes_write_ack(args) or (name == "EXEC" and any(_changes_write_ack(a) for _, a in tx.learn)):
            self._state.ai.store.acks.suspend(f"{name} was sent to the backing Redis")
        if name == "SELECT":
            link.db = None  # unknown until Redis accepts it
        if name in ("SAVE", "BGSAVE") and not ctx.in_multi and self._state.gears is not None:
            await self._state.gears.streams_settled(self._state.settings.connect_timeout)
        if name == "EXEC" and ctx.in_multi and (tx.local or tx.hooked or tx.queued):
            slot = self._slot()
            ctx.in_multi, self._tx = False, _Transaction()
            gears, store = self._state.gears, self._state.ai.store
            for _, db, key in tx.writes:
                store.announce(db, key)
            result: Any = None
            try:
                if tx.hooked and gears is not None:
                    result = await gears.run_key_hooks_at_exec(link, tx.hooked, self._exec(link, args))
                else:
                    result = await self._exec(link, args)
            finally:
                applied = result if isinstance(result, list) else []
                for position, db, key in tx.writes:
                    if position >= len(applied) or isinstance(applied[position], ErrorReply):
                        store.unannounce(db, key)
            self._learn_exec(link, result, tx.learn)
            self._forget(meant)
            self._apply_queued(result, tx.queued)
            local = tx.local
            if isinstance(result, list):  # the transaction ran: so do the owned commands queued in it
                local = [(position, await self._at_exec(value)) for position, value in local]
            if gears is not None and gears.wants_sync(name, True, tx.count):
                await gears.sync_settle(link)  # as for any EXEC that wrote (see the relayed one below)
            self._fill(slot, self._reply(self._merge_exec(result, local)))
            return
        reply_mode = self._replies_off, self._skip_next
        if name == "RESET" and not ctx.in_multi:
            # Redis clears the reply mode before RESET answers; a monitor's lines before it stay dropped
            self._lines_off, self._replies_off = self._monitor and self._replies_off, False
        slot = self._slot()
        slot.blocking = name in _BLOCKING or (
            name in ("XREAD", "XREADGROUP") and any(upper(arg) == "BLOCK" for arg in args[1:-1])
        )
        if name == "RESET":
            ctx.authenticated = False  # logged out: asked again below (a failed AUTH or HELLO logs no one out)
        if name in ("HELLO", "RESET") or (name == "AUTH" and not self._parser.authenticated):
            # Redis lifts its limits on unauthenticated requests once AUTH succeeds (RESET logs out again):
            # the answer is awaited before the next command is parsed.
            frame = await link.call_raw(args, own=False)
            if name != "AUTH" and frame[:1] == b"%":
                ctx.protocol = 3
            elif name != "AUTH" and (frame[:1] == b"*" or frame == b"+RESET\r\n"):
                ctx.protocol = 2
            if name == "HELLO" and frame[:1] in (b"%", b"*"):
                frame = self._hello_with_modules(frame, ctx.protocol)
            if name == "RESET" and frame[:1] == b"-":  # refused (an ACL rule): the mode stays as it was
                self._replies_off, slot.silent, self._lines_off = reply_mode[0], any(reply_mode), False
            elif name == "RESET":
                link.db = 0
                self._stop_monitor(link)
                self._parser.authenticated = await self._authenticated(link)
            elif frame[:1] != b"-":
                self._parser.authenticated = ctx.authenticated = True
                if link.backend_id is None and not ctx.in_multi:  # logged in now: the link's id can be asked
                    with contextlib.suppress(ErrorReply):
                        self._identified(link, await link.call(b"CLIENT", b"ID"))
            if not ctx.in_multi:
                self._learn(link, args, frame[:1] != b"-")
            self._fill(slot, [frame])
        elif self._state.gears is not None and self._state.gears.wants_sync(name, ctx.in_multi, tx.count):
            # As inside Redis, the write's sync registrations (a script's or a transaction's writes too) run
            # before its reply and before the client's next command reaches Redis: this client's pipeline waits.
            frame = await link.call_raw(args, own=False)
            try:
                await self._state.gears.sync_settle(link)
            finally:
                self._after_relayed(link, name, args, slot, frame, tx.learn, meant)
        elif meant != _PLAIN_RELAY or self._learns(name, ctx.in_multi, tx):
            link.relay(args, lambda frame: self._after_relayed(link, name, args, slot, frame, tx.learn, meant))
        else:
            link.relay(args, lambda frame: self._fill(slot, [frame]))
        if name == "MULTI" and ctx.in_multi:
            pass  # Redis refuses a nested MULTI and the open transaction goes on
        elif name in ("MULTI", "EXEC", "DISCARD", "RESET"):  # an EXEC's reply learns from `tx`, kept by its callback
            ctx.in_multi, self._tx = name == "MULTI", _Transaction()
        elif ctx.in_multi:
            if name in _LEARNT:
                tx.learn.append((tx.count, args))
            tx.forgets, tx.flushes = tx.forgets or meant.forgets, tx.flushes or meant.flushes
            tx.count += 1

    def _hello_with_modules(self, frame: bytes, protocol: int) -> bytes:
        """HELLO's reply with the modules the runtime stands in for in its `modules` field, as Redis lists
        the modules it loaded there (MODULE LIST's entries)."""
        reply = parse_reply(frame)
        ours = loaded_modules(self._state)
        if isinstance(reply, dict):
            reply[b"modules"] = ours + list(reply.get(b"modules") or [])
        elif isinstance(reply, list) and b"modules" in reply[::2]:
            at = reply[::2].index(b"modules") * 2 + 1
            reply[at] = ours + list(reply[at] or [])
        return b"".join(encode(reply, protocol))

    async def _acl_dryrun(self, link: BackendLink, args: list[bytes]) -> Any:
        """`ACL DRYRUN user <AI.* or RG.* command> ...`, which the backing Redis cannot answer (it has no such command).

        First `ACL DRYRUN user PING` on the client's link, in its order: Redis refuses it as it would
        the client's (no right to ACL DRYRUN, no such user, its arguments' count); then the runtime's
        checks of the owned command answer (acl.py).
        """
        await link.call(b"ACL", b"DRYRUN", args[2], b"PING", own=False)
        answer = await self._state.acl.dryrun(args[2].decode("utf-8", "replace"), upper(args[3]), args[3:])
        return SimpleString(answer) if answer == "OK" else answer.encode()

    async def _client_listing(self, link: BackendLink, args: list[bytes]) -> Any:
        """CLIENT LIST and INFO, relayed on the client's link (Redis checks them and answers its lines), with
        each client where it connects to the runtime from; CLIENT KILL ADDR sent as the link's ID (clients.py)."""
        clients = self._state.clients
        if upper(args[1]) == "KILL":
            sent = clients.kill_arguments(args)
            if len(args) == 3 and len(sent) == 4:  # the older form, sent by ID: answered as that form is
                if not await link.call(*sent, own=False):
                    raise ErrorReply("ERR No such client")
                return SimpleString("OK")
            return Encoded(await link.call_raw(sent, own=False))
        text = await link.call(*args, own=False)
        return Verbatim(clients.rewrite(text if isinstance(text, bytes) else str(text).encode()))

    async def _acl_log(self, link: BackendLink, args: list[bytes]) -> Any:
        """`ACL LOG`, relayed on the client's link in its order (Redis checks its arguments and the client's
        rights, and answers its own entries), then answered with the runtime's refusals merged in."""
        return await self._state.acllog.answer(args, await link.call(*args, own=False))

    def _meaning(self, name: str, args: list[bytes], tx: _Transaction) -> _Relayed:
        """What a relayed command means beyond its bytes (_Relayed); most mean nothing more."""
        if name not in _SCRIPTED and name not in _FORGETS_AI_MEMORY and not (name == "EXEC" and tx.forgets):
            return _PLAIN_RELAY
        script = self._state.ai.lua.inspect(name, args) if name in _SCRIPTED else Script()
        runs = script.forgets and name != "SCRIPT"  # SCRIPT LOAD only keeps the source
        return _Relayed(
            script,
            forgets=name in _FORGETS_AI_MEMORY or runs or (name == "EXEC" and tx.forgets),
            flushes=name in ("FLUSHALL", "FLUSHDB") or runs or (name == "EXEC" and tx.flushes),
        )

    @staticmethod
    def _learns(name: str, in_multi: bool, tx: _Transaction) -> bool:
        """Whether the reply of a relayed command is learnt from (_after_relayed)."""
        return (name in _LEARNT and not in_multi) or (name == "EXEC" and bool(tx.learn))

    def _after_relayed(
        self, link: BackendLink, name: str, args: list[bytes], slot: _Slot, frame: bytes,
        learn: list[tuple[int, list[bytes]]], meant: _Relayed,
    ) -> None:  # fmt: skip
        """The reply of a command that changes what the AI store may know (a DB switched, keys gone unseen),
        or who the client is (see _learn), or of a Lua script that names module commands."""
        if name == "ACL" and len(args) > 1 and upper(args[1]) == "SETUSER":
            frame = explain_refused_rule(frame)
        if meant.script.names:
            frame = LuaScripts.reply(meant.script.names, frame, self._is_execution)
        if name == "EXEC":
            self._learn_exec(link, parse_reply(frame), learn)
        elif name in _LEARNT:
            self._learn(link, args, frame[:1] != b"-")
        self._forget(meant, refused=frame[:1] == b"-" and name in _FORGETS_AI_MEMORY)
        self._fill(slot, [frame])

    def _forget(self, meant: _Relayed, refused: bool = False) -> None:
        """After a command that changed keys without key events: the AI store forgets what it held in memory
        (again: reads sent meanwhile may have learnt what it removed), and after a flush the Gears sessions are
        written again (RedisGears' sessions are no keys: they outlive it). A flush Redis `refused` flushed
        nothing (a replica's READONLY, an ACL rule)."""
        if meant.forgets:
            self._state.ai.store.withdraw_all()
        if meant.flushes and not refused and self._state.gears is not None:
            self._state.gears.keep_sessions()

    @staticmethod
    async def _exec(link: BackendLink, args: list[bytes]) -> Any:
        (result,) = await link.pipeline([args], own=False)  # the client's EXEC
        return result

    async def _at_exec(self, queued: Any) -> Any:
        """An owned command queued inside MULTI: its error, or its reply once run now (Command.in_transaction);
        what it raises is translated as any command's is (_error_reply), a lost backing link raised on."""
        if not isinstance(queued, tuple):
            return queued
        handler, ctx, args = queued
        began = time.monotonic()
        try:
            value = await handler(ctx, args)
        except Exception as exc:
            value = self._error_reply(upper(args[0]), exc)
            if value is None:
                raise
        self._ran_in_transaction(upper(args[0]), int((time.monotonic() - began) * 1_000_000), value)
        return value

    @staticmethod
    def _merge_exec(result: Any, local: list[tuple[int, Any]]) -> Any:
        if not isinstance(result, list):
            return result
        merged = list(result)
        for position, value in local:
            merged.insert(position, value)
        return merged

    async def _close(self) -> None:
        try:
            self._flush_now()
            self._writer.close()
            await wait_for(self._writer.wait_closed(), 1.0)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass
