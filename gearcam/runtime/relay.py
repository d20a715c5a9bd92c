"""A connection to the backing redis-server: relay raw frames, or call and parse.

Each client of the runtime gets its own link, so SELECT, AUTH/ACL users, MULTI,
blocking reads and pub/sub keep their per-connection meaning. Replies come back in
the order commands were sent; a waiter either takes the raw frame (relayed verbatim
to the client) or the parsed value (used by the runtime's own commands). Frames no
command waits for (RESP3 pushes, pub/sub messages in RESP2 subscribe mode, MONITOR
lines) go to `on_push`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis

from gearcam.cancel import cancel_and_wait
from gearcam.errors import NetworkError
from gearcam.runtime import chunks
from gearcam.runtime.backing_tls import BackingTls, client_context
from gearcam.runtime.clients import listed_address
from gearcam.runtime.commandstats import OWN, Inner
from gearcam.runtime.own_traffic import OWN_TRAFFIC
from gearcam.runtime.resp import Arg, ErrorReply, coalesce, encode_command, is_monitor_line, parse_reply, reply_end
from gearcam.runtime.writes import socket_fd, write_chunks

__all__ = ["Address", "BackendLink", "OwnLink", "Script", "parse_address", "tune_link"]

logger = logging.getLogger(__name__)

_READ_SIZE = 1024 * 1024
_CLOSE_WAIT_S = 2.0  # how long close() waits for the transport to report the connection closed
_UNIX_SNDBUF = 4 * 1024 * 1024  # as TCP's largest (net.ipv4.tcp_wmem): see tune_link
# A backing Redis on another host that vanishes (power cut, cable, partition) sends no reset: without
# these a link would wait on it for TCP's retransmission limit (about 15 minutes on Linux) or, idle,
# forever. Probes after 10 s idle, 3 missed 5 s apart, and sent data unacknowledged for 30 s end it.
_KEEPALIVE = (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", 30_000))


@dataclass(frozen=True)
class Address:
    """Where the backing Redis listens, and the credentials the runtime itself uses."""

    host: str | None = None
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: BackingTls | None = None  # rediss://

    def describe(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}{' (TLS)' if self.tls else ''}"

    def as_dict(self) -> dict[str, Any]:
        """To hand it to another process (a Gears worker); from_dict makes it again there."""
        return asdict(self)  # BackingTls too, as a dict

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Address:
        tls = fields.get("tls")
        return cls(**{**fields, "tls": BackingTls(**tls) if tls else None})


def _tls_hint(exc: ssl.SSLError) -> str:
    """What to do about the TLS errors a rediss:// backing Redis gives (the others are OpenSSL's own words)."""
    if "CERTIFICATE_REQUIRED" in str(exc) or "HANDSHAKE_FAILURE" in str(exc):
        return ("; it wants a client certificate its CA signed: set runtime.tls_client_cert_file and "
                "tls_client_key_file (--tls-client-cert-file, --tls-client-key-file)")  # fmt: skip
    if "UNKNOWN_CA" in str(exc) or "BAD_CERTIFICATE" in str(exc):
        return ("; it does not trust the runtime's certificate: show one the CA of its tls-ca-cert-file signed "
                "(--tls-client-cert-file, --tls-client-key-file)")  # fmt: skip
    if "WRONG_VERSION_NUMBER" in str(exc):
        return "; it does not speak TLS on that port: use redis:// or its tls-port"
    return ""


def parse_address(url: str, tls: BackingTls | None = None) -> Address:
    """redis://[user:pass@]host:port[/db], rediss://… (TLS, by `tls`: by default the system's CAs) or
    unix:///path[?db=N]; the password is kept out of reprs."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    if parts.scheme == "unix":
        db = 0
        for item in parts.query.split("&"):
            if item.startswith("db="):
                db = int(item[3:])
        return Address(path=parts.path, username=user, password=password, db=db)
    if parts.scheme not in ("redis", "rediss", ""):
        raise ValueError(f"unsupported backing URL scheme {parts.scheme!r}; use redis://, rediss:// or unix://")
    db = int(parts.path.strip("/") or 0)
    return Address(
        host=parts.hostname or "127.0.0.1", port=parts.port or 6379, username=user, password=password, db=db,
        tls=(tls or BackingTls()) if parts.scheme == "rediss" else None,
    )  # fmt: skip


def tune_link(sock: Any) -> None:
    """A TCP link to the backing Redis fails within about 30 s of its host going silent; a unix one
    takes a whole tensor or frame in one write.

    A unix socket's peer is on this machine (its end is seen at once), but its send buffer is
    Linux' 208 KB default where TCP grows to 4 MB: a 600 KB tensor's write then waited a loop
    turn for Redis to read the first part, and a write answered behind (ai/write_ack.py) waited
    for Redis' reply. The kernel caps the size at net.core.wmem_max (twice it).
    """
    if sock.family == socket.AF_UNIX:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _UNIX_SNDBUF)
        return
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in _KEEPALIVE:
        option = getattr(socket, name, None)  # Linux names; other systems keep their defaults
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


# The name of the runtime's own connections to the backing Redis (CLIENT LIST shows which they are;
# SLOWLOG leaves their entries out: RedisAI's and RedisGears' own work is module API calls, not commands).
INTERNAL_NAME = b"gearcam-runtime"
# The name of the Gears workers' connections: Gears code's commands and its readers', which RedisGears runs with
# RM_Call (CLIENT LIST leaves them out too; SLOWLOG keeps their entries, under RM_Call's client "?:0").
CODE_NAME = b"gearcam-gears"
# The runtime's Lua scripts, by SHA1: SLOWLOG tells its own EVALSHA on a client's link by them.
SCRIPTS: dict[bytes, bytes] = {}


class Script:
    """A Lua script run with EVALSHA, falling back to EVAL when the server does not know it yet.

    `inner`: the commands it calls inside Redis, from its EVALSHA's arguments and reply, which INFO takes
    out of Redis' command statistics with the EVALSHA (commandstats.OwnCalls).
    """

    def __init__(self, source: str, inner: Inner = lambda args, frame: ()) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest().encode()
        SCRIPTS[self.sha] = self.source
        OWN.script(self.sha, self.source, inner)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _named(future: asyncio.Future[Any]) -> None:
    """CLIENT SETNAME's reply on an internal link: a refusal (an ACL rule) only leaves it unnamed."""
    if not future.cancelled() and future.exception() is None and isinstance(future.result(), ErrorReply):
        logger.debug("the backing Redis refused to name the runtime's link: %s", future.result())


@dataclass
class _Waiter:
    raw: bool
    future: asyncio.Future[Any] | None = None
    # Relayed replies skip the future: the frame goes straight to the client's ordered output.
    callback: Callable[[bytes], None] | None = None
    own: Any = None  # a command the runtime sent for itself, as OWN.sent counted it


class BackendLink:
    def __init__(
        self, reader: chunks.ChunkReader, writer: asyncio.StreamWriter, on_push: Callable[[bytes], None] | None
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._waiters: deque[_Waiter] = deque()
        self.on_push = on_push
        self.passthrough = False
        # MONITOR: replies keep their waiters and the monitor lines in between go to `on_push` (see _dispatch).
        self.monitoring = False
        self.closed = asyncio.Event()
        self.loaded_scripts: set[bytes] = set()
        # For the AI store (ai/coherence.py): the DB this link is in (None while unknown, e.g. after a
        # SELECT inside MULTI), whether its reads may be answered from memory at all, and how many client
        # commands it relayed (`relayed`) versus how many of those the key events are known to cover (`fenced`).
        self.db: int | None = 0
        self.trusts_memory = True
        self.backend_id: int | None = None  # its CLIENT ID, once looked up (ACL LOG's client-info)
        self.relayed = 0
        self.fenced = 0
        self.fencing: asyncio.Future[None] | None = None
        self._messages: hiredis.Reader | None = None  # see only_messages
        self._buf = bytearray()  # a reply not complete yet, from `_start` on
        self._start = 0
        self._on_message: Callable[[Any], None] | None = None
        # Commands written in one loop turn leave in one write (a pipeline costs one system call, not one each).
        self._corked: list[bytes | memoryview] = []
        self._handed: list[asyncio.Future[None]] = []  # see when_handed
        self.unconfirmed = 0  # writes answered before Redis' reply (ai/write_ack.py) that it has not replied to
        self._settled = asyncio.Event()  # set while no reply is due
        self._settled.set()
        # Kept: asyncio.get_running_loop() costs a getpid() system call on each call (CPython 3.11).
        self.loop = asyncio.get_running_loop()
        self._fd = socket_fd(writer)  # see gearcam.runtime.writes
        self._ended = "the backing Redis closed the connection"  # what its waiters are told once it ends
        self._ended_by: BaseException | None = None
        self._task = self.loop.create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        address: Address,
        timeout: float,
        on_push: Callable[[bytes], None] | None = None,
        authenticate: bool = False,
    ) -> BackendLink:
        try:
            async with asyncio.timeout(timeout):
                if address.path:
                    reader, writer = await chunks.open_unix_connection(address.path, _READ_SIZE)
                else:
                    reader, writer = await chunks.open_connection(
                        address.host or "127.0.0.1", address.port, _READ_SIZE,
                        client_context(address.tls) if address.tls else None,
                    )  # fmt: skip
        except ssl.SSLCertVerificationError as exc:
            raise NetworkError(
                f"the backing Redis at {address.describe()} is not the server its certificate vouches for: "
                f"{exc.verify_message}; set runtime.tls_ca_cert_file (--tls-ca-cert-file) to the CA that signed "
                f"its certificate, and name the host as the certificate does in the rediss:// URL"
            ) from exc
        except ssl.SSLError as exc:
            raise NetworkError(
                f"TLS with the backing Redis at {address.describe()} failed: {exc}{_tls_hint(exc)}"
            ) from exc
        except TimeoutError as exc:
            hint = (
                "; is that its tls-port? (a plain port never answers a TLS client: use redis:// there)"
                if address.tls else "; is redis-server running?"
            )  # fmt: skip
            raise NetworkError(
                f"cannot reach the backing Redis at {address.describe()}: no answer within {timeout:g} s{hint}"
            ) from exc
        except OSError as exc:
            raise NetworkError(
                f"cannot reach the backing Redis at {address.describe()}: {exc}; is redis-server running?"
            ) from exc
        tune_link(writer.get_extra_info("socket"))
        link = cls(reader, writer, on_push)
        if authenticate:
            if address.password is not None:
                if address.username:
                    await link.call(b"AUTH", address.username, address.password)
                else:
                    await link.call(b"AUTH", address.password)
            if address.db:
                await link.call(b"SELECT", address.db)
                link.db = address.db
            # One of the runtime's own links, named as such (a client's link keeps its client's name).
            link.send((b"CLIENT", b"SETNAME", INTERNAL_NAME), raw=False).add_done_callback(_named)
        return link

    @property
    def pending(self) -> int:
        return len(self._waiters)

    def send(self, args: Sequence[Arg], raw: bool, own: bool = True) -> asyncio.Future[Any]:
        """Write one command and return the future of its reply (raw frame or parsed value).

        `own`: the runtime sends it for itself (INFO leaves it out of Redis' command statistics), not for
        the client whose command it relays.
        """
        if self.closed.is_set():
            raise NetworkError("the backing Redis connection is closed")
        future: asyncio.Future[Any] = self.loop.create_future()
        self._waiters.append(_Waiter(raw, future=future, own=OWN.sent(args) if own else None))
        if own and OWN_TRAFFIC.watching:
            OWN_TRAFFIC.sent(self.client_address, args)
        self._settled.clear()
        self._write(encode_command(args))
        return future

    def relay(self, args: Sequence[bytes], callback: Callable[[bytes], None], own: bool = False) -> None:
        """Write one command whose raw reply frame is handed to `callback` when it arrives (`own`: see send)."""
        if self.closed.is_set():
            raise NetworkError("the backing Redis connection is closed")
        self._waiters.append(_Waiter(True, callback=callback, own=OWN.sent(args) if own else None))
        if own and OWN_TRAFFIC.watching:
            OWN_TRAFFIC.sent(self.client_address, args)
        self._settled.clear()
        self._write(encode_command(args))

    def relay_raw(self, data: bytes, callbacks: Sequence[Callable[[bytes], None]]) -> None:
        """Write commands already framed (as a client sent them); each raw reply frame goes to its callback.

        Written at once unless other writes of this loop turn wait to leave together (then after them):
        a one-at-a-time client's command costs no extra loop turn.
        """
        if self.closed.is_set():
            raise NetworkError("the backing Redis connection is closed")
        self._waiters.extend(_Waiter(True, callback=callback) for callback in callbacks)
        self._settled.clear()
        if self._corked:
            self._corked.append(data)
        elif not self._writer.is_closing():
            write_chunks(self._writer, self._fd, [data])

    @property
    def backlog(self) -> int:
        """Bytes written to the backing Redis that the transport has not sent yet."""
        return sum(len(chunk) for chunk in self._corked) + self._writer.transport.get_write_buffer_size()

    def send_passthrough(self, args: Sequence[bytes], own: bool = False) -> None:
        """Write a command whose replies arrive through `on_push` (subscribe mode, MONITOR); `own`: the runtime's
        (the key events' subscriptions, a settling PING), which MONITOR leaves out (own_traffic.py)."""
        if own and OWN_TRAFFIC.watching:
            OWN_TRAFFIC.sent(self.client_address, args)
        self._write(encode_command(args))

    def only_messages(self, on_message: Callable[[Any], None]) -> None:
        """From now on every reply is a pub/sub message, parsed in C (hiredis) and handed to `on_message`.

        For a link that only subscribes (the key events): each write to Redis sends the runtime
        a message, and framing plus parsing them in Python cost more than the write itself.
        Call it once every command sent so far has been answered.
        """
        self._messages = hiredis.Reader(replyError=ErrorReply)
        self._on_message = on_message

    def _write(self, chunks: list[bytes]) -> None:
        if not self._corked:
            self.loop.call_soon(self.uncork)
        self._corked += chunks

    def uncork(self) -> None:
        """Hand what was written this loop turn to the transport now."""
        if self._corked:
            chunks, self._corked = self._corked, []
            if not self._writer.is_closing():
                write_chunks(self._writer, self._fd, coalesce(chunks))
        if self._handed and not self._writer.transport.get_write_buffer_size():
            handed, self._handed = self._handed, []
            for future in handed:
                if not future.done():
                    future.set_result(None)

    def when_handed(self, future: asyncio.Future[None]) -> None:
        """Complete `future` once what was written so far is all in the kernel's socket buffer.

        From there Redis gets it even if the runtime dies at once. Only checked when this loop
        turn's writes leave: if the transport had to keep some back (Redis reads slower than it is
        sent), the future is left to the caller's other way of completing it (Redis' reply).
        """
        self._handed.append(future)
        if not self._corked:
            self.loop.call_soon(self.uncork)

    async def drain(self) -> None:
        self.uncork()
        await self._writer.drain()

    async def settled(self) -> None:
        """Wait until every command sent so far has been answered (Redis has run it)."""
        await self.drain()
        await self._settled.wait()

    async def call(self, *args: Arg, own: bool = True) -> Any:
        """Send a command and return its parsed reply; an error reply is raised as ErrorReply (`own`: see send)."""
        future = self.send(args, raw=False, own=own)
        await self.drain()
        value = await future
        if isinstance(value, ErrorReply):
            raise value
        return value

    async def call_raw(self, args: Sequence[Arg], own: bool = True) -> bytes:
        """Send a command and return its reply frame as Redis wrote it (an error reply too): to pass on (`own`: see
        send)."""
        future = self.send(args, raw=True, own=own)
        await self.drain()
        frame: bytes = await future
        return frame

    async def pipeline(self, commands: Iterable[Sequence[Arg]], raw: bool = False, own: bool = True) -> list[Any]:
        """Send several commands in one write; error replies are returned in place, not raised.

        With `raw`, each reply is its undecoded frame (see resp.bulk_payload); `own`: see send.
        """
        futures = [self.send(args, raw=raw, own=own) for args in commands]
        await self.drain()
        try:
            return [await f for f in futures]
        except BaseException:  # the link lost: the replies after the first failure are failures too
            for future in futures:
                future.add_done_callback(_retrieved)  # not left for asyncio to log as never retrieved
            raise

    async def eval(self, script: Script, keys: Sequence[bytes | str], args: Sequence[bytes | str | int]) -> Any:
        try:
            return await self.call(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except ErrorReply as exc:
            if not exc.message.startswith("NOSCRIPT"):
                raise
        return await self.call(b"EVAL", script.source, len(keys), *keys, *args)

    async def _read_loop(self) -> None:
        """Wait for the end of the stream; the chunks before it go to `_on_data` as they arrive."""
        self._reader.consumer = self._on_data
        try:
            while chunk := await self._reader.read(_READ_SIZE):
                self._on_data(chunk)  # queued before the consumer was set (then in order, before any new chunk)
        except ConnectionError as exc:  # Redis restarted or was killed: what waits gets NetworkError below
            logger.warning("backing Redis connection lost: %s", exc)
        except ssl.SSLError as exc:  # a TLS alert: what Redis refused, for the waiters' error
            self._ended = f"the backing Redis ended the TLS session: {exc}{_tls_hint(exc)}"
            self._ended_by = exc
            logger.warning("%s", self._ended)
        except Exception:
            logger.exception("backing Redis link failed")
        finally:
            self._fail_all()

    def _on_data(self, chunk: bytes) -> None:
        try:
            if self._messages is not None:
                buf, self._buf = self._buf, bytearray()
                self._read_messages(bytes(buf[self._start :]) + chunk if self._start < len(buf) else chunk)
                self._start = 0
            elif self._buf:
                self._on_replies(chunk)
            else:
                self._on_whole_replies(chunk)
        except Exception:
            logger.exception("backing Redis link failed")
            self._writer.transport.abort()  # the read loop sees the end, and every waiter gets the error

    def _on_whole_replies(self, chunk: bytes) -> None:
        """Nothing is left over from earlier chunks: frames are cut from this one (a frame that is the whole
        chunk, as a one-at-a-time client's reply usually is, without a copy)."""
        start, size = 0, len(chunk)
        while start < size:
            end = reply_end(chunk, start)
            if end < 0:
                break
            frame = chunk if start == 0 and end == size else chunk[start:end]
            start = end
            self._dispatch(frame)
        if start < size:
            self._buf += memoryview(chunk)[start:]

    def _on_replies(self, chunk: bytes) -> None:
        buf, start = self._buf, self._start
        if start and start * 2 > len(buf):
            del buf[:start]
            start = 0
        buf += chunk
        while start < len(buf):
            end = reply_end(buf, start)
            if end < 0:
                break
            with memoryview(buf) as view:
                frame = bytes(view[start:end])
            start = end
            self._dispatch(frame)
        if start == len(buf):
            buf.clear()
            start = 0
        self._start = start

    def _read_messages(self, data: bytes) -> None:
        assert self._messages is not None and self._on_message is not None
        self._messages.feed(data)
        while (message := self._messages.gets()) is not False:
            self._on_message(message)

    @property
    def client_address(self) -> str:
        """This link as the backing Redis names its client (CLIENT LIST's addr, MONITOR lines)."""
        family = self._writer.get_extra_info("socket").family
        if family == socket.AF_UNIX:
            return f"unix:{self._writer.get_extra_info('peername')}"
        return listed_address(self._writer.get_extra_info("sockname"), family)

    @property
    def listed_address(self) -> str:
        """This link as CLIENT LIST's `addr` and SLOWLOG entries name it: PATH:0 for a unix socket."""
        address = self.client_address
        return f"{address[5:]}:0" if address.startswith("unix:") else address

    def _dispatch(self, frame: bytes) -> None:
        if self.monitoring and is_monitor_line(frame):
            if self.on_push is not None:
                self.on_push(frame)
            return
        if frame[:1] == b">" or (self.passthrough and not self._waiters):
            if self.on_push is not None:
                self.on_push(frame)
            return
        if not self._waiters:
            # E.g. the +PONG of a PING sent in subscribe mode that Redis answered after leaving it.
            if self.on_push is not None:
                self.on_push(frame)
            return
        waiter = self._waiters.popleft()
        if not self._waiters:
            self._settled.set()
        if waiter.own is not None and (frame[:1] == b"-" or type(waiter.own) is tuple):
            OWN.answered(waiter.own, frame)
        if waiter.callback is not None:
            waiter.callback(frame)
        elif waiter.future is None or waiter.future.done():
            return
        elif waiter.raw:
            waiter.future.set_result(frame)
        else:
            waiter.future.set_result(parse_reply(frame))

    def _fail_all(self) -> None:
        self.closed.set()
        self._settled.set()
        error = NetworkError(self._ended)
        error.__cause__ = self._ended_by
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.future is not None and not waiter.future.done():
                waiter.future.set_exception(error)
        self._writer.close()

    async def close(self) -> None:
        self.uncork()
        self._writer.close()
        await cancel_and_wait(self._task)
        try:
            # Bounded: a caller that reconnects after this (the key events) must never wait on a dead peer.
            async with asyncio.timeout(_CLOSE_WAIT_S):
                await self._writer.wait_closed()
        except TimeoutError:
            logger.warning("a backing Redis connection did not close in %gs; dropped", _CLOSE_WAIT_S)
            self._writer.transport.abort()
        except OSError:
            pass


class OwnLink:
    """One authenticated link of the runtime's own to the backing Redis, opened when first needed and again
    once it was lost (a Redis restart); callers that find it closed at once open one link between them."""

    def __init__(self, address: Address, timeout: float, trusts_memory: bool = True) -> None:
        self._address = address
        self._timeout = timeout
        self._trusts_memory = trusts_memory  # see BackendLink.trusts_memory
        self._link: BackendLink | None = None
        self._opening = asyncio.Lock()

    async def get(self) -> BackendLink:
        link = self._link
        if link is not None and not link.closed.is_set():
            return link
        async with self._opening:
            link = self._link
            if link is None or link.closed.is_set():
                if link is not None:
                    await link.close()
                link = self._link = await BackendLink.open(self._address, self._timeout, authenticate=True)
                link.trusts_memory = self._trusts_memory
        return link

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None
