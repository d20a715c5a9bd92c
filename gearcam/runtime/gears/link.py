"""A blocking connection to the backing Redis for Gears code (`execute`, readers, stream positions).

Gears steps are plain synchronous Python that expects `execute(...)` to return the
reply, so they cannot share the runtime's asyncio links. Each thread that runs Gears
code gets its own socket (hiredis parses the replies), opened on first use.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import hiredis

from gearcam.errors import NetworkError
from gearcam.runtime.backing_tls import client_context
from gearcam.runtime.clients import listed_address
from gearcam.runtime.commandstats import OWN
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.keyevents import FENCE_CHANNEL, KEYS_QUIET_OFF, KEYS_QUIET_ON
from gearcam.runtime.own_traffic import OWN_TRAFFIC, Mark, mark
from gearcam.runtime.relay import INTERNAL_NAME, Address, tune_link
from gearcam.runtime.resp import Arg, encode_command, is_loading, read_replies

__all__ = ["CommandError", "LinkPool", "SyncLink"]

logger = logging.getLogger(__name__)


# Told a link's address when it opens (True, with the marks of the commands it logs in with) and when it closes
# (False): see SyncLink.
LinkWatch = Callable[[str, bool, list[Mark]], None]


class CommandError(GearsError):
    """An error reply of the backing Redis: a GearsError in Gears code, reported by its text alone."""


class SyncLink:
    def __init__(
        self, address: Address, timeout: float, on_link: LinkWatch | None = None, name: bytes = INTERNAL_NAME
    ) -> None:
        """`on_link` learns the link's address as the backing Redis names its client (MONITOR lines) and the
        marks of its login (own_traffic.mark) before the link sends anything, and the address again once it is
        closed. `name`: its CLIENT SETNAME (relay.INTERNAL_NAME, or CODE_NAME for a Gears worker's)."""
        sock: socket.socket | None = None
        try:
            if address.path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(address.path)
            else:
                sock = socket.create_connection((address.host or "127.0.0.1", address.port), timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tune_link(sock)
            if address.tls is not None:
                sock = client_context(address.tls).wrap_socket(sock, server_hostname=address.host)
        except OSError as exc:
            if sock is not None:
                sock.close()  # now, not when the collector finds it (a worker retrying would pile them up)
            raise NetworkError(f"cannot reach the backing Redis at {address.describe()}: {exc}") from exc
        sock.settimeout(None)
        self._sock = sock
        unix = sock.family == socket.AF_UNIX
        self.address = f"unix:{sock.getpeername()}" if unix else listed_address(sock.getsockname(), sock.family)
        self._on_link = on_link
        login: list[list[Arg]] = []
        if address.password is not None:
            login.append(["AUTH", *([address.username] if address.username else []), address.password])
        if address.db:
            login.append(["SELECT", address.db])
        naming: list[Arg] = ["CLIENT", "SETNAME", name]
        if on_link is not None:
            on_link(self.address, True, [mark(args) for args in [*login, naming]])
        self._reader = hiredis.Reader(replyError=CommandError)
        try:
            for args in login:
                self.call(*args, own=True)
        except CommandError:  # refused login or database: the link is of no use
            self.close()
            raise
        with contextlib.suppress(CommandError):  # an ACL rule may refuse it: the link stays unnamed
            self.call(*naming, own=True)

    def call(self, *args: Arg, own: bool = False) -> Any:
        """Send one command and return its reply; an error reply is raised as CommandError."""
        (reply,) = self.pipeline([args], own)
        if isinstance(reply, CommandError):
            raise reply
        return reply

    def pipeline(self, commands: Sequence[Sequence[Arg]], own: bool = False) -> list[Any]:
        """Send several commands in one write; error replies are returned in place.

        `own`: the runtime's bookkeeping, which RedisGears does not send (it reads through the module API), left
        out of INFO's command statistics (commandstats.OWN); Gears code's commands and what RedisGears also
        sends with RM_Call (XREADGROUP, XACK, XTRIM) stay counted.
        """
        sent = [OWN.sent(args) for args in commands] if own else []
        if own and OWN_TRAFFIC.watching:
            for args in commands:
                OWN_TRAFFIC.sent(self.address, args)
        chunks: list[bytes] = []
        for args in commands:
            encode_command(args, chunks)
        try:
            self._sock.sendall(b"".join(chunks))
            replies = read_replies(self._sock, self._reader, len(commands))
        except OSError as exc:
            self.close()
            raise NetworkError(f"backing Redis connection failed: {exc}") from exc
        for reply in replies:
            # A Redis that restarted answers LOADING until its data set is in: for Gears code, as if it were
            # still away (inside Redis no step runs then), so a batch that met it runs again, not half done.
            if isinstance(reply, CommandError) and is_loading(str(reply)):
                raise NetworkError(f"the backing Redis is loading its data set after a restart ({reply})")
        if own:
            for token, answer in zip(sent, _answers(commands, replies), strict=True):
                OWN.answered(token, _frame(answer))
        return replies

    def close(self) -> None:
        if self._on_link is not None:
            self._on_link(self.address, False, [])
            self._on_link = None
        try:
            self._sock.close()
        except OSError:
            pass


def _answers(commands: Sequence[Sequence[Arg]], replies: list[Any]) -> list[Any]:
    """Each command's own answer: for one queued in MULTI, its place in EXEC's reply (not `QUEUED`)."""
    names = [bytes(c[0]).upper() if isinstance(c[0], bytes) else str(c[0]).upper().encode() for c in commands]
    done = replies[-1] if replies else None
    if len(names) > 2 and names[0] == b"MULTI" and names[-1] == b"EXEC" and isinstance(done, list):
        if len(done) == len(commands) - 2:
            return [replies[0], *done, done]
    return replies


def _frame(answer: Any) -> bytes:
    """What OwnCalls reads of a reply, as a frame: an error's code, or a script's status or integer answer."""
    if isinstance(answer, CommandError):
        return b"-" + str(answer).encode() + b"\r\n"
    if isinstance(answer, int):
        return b":%d\r\n" % answer
    if isinstance(answer, bytes):
        return b"+" + answer + b"\r\n"  # the runtime's scripts answer statuses, which hiredis reads as bytes
    return b"*\r\n"


class LinkPool:
    """One SyncLink per thread, reopened after a failure.

    `own`: what the pool sends is, unless a call says otherwise, the runtime's own traffic (the Gears
    service's looks, key reads and stream bookkeeping, which RedisGears makes through the module API),
    left out of INFO's command statistics; a worker's pool carries Gears code's commands, counted.
    """

    def __init__(
        self,
        address: Address,
        timeout: float,
        own: bool = False,
        on_link: LinkWatch | None = None,
        name: bytes = INTERNAL_NAME,
    ) -> None:
        self._own = own
        self._on_link = on_link  # see SyncLink
        self._name = name
        self._address = address
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[SyncLink] = []
        self._lock = threading.Lock()
        self.unheard_refused = False  # the user may not publish the marks of `transaction(unheard=True)`

    def get(self) -> SyncLink:
        link: SyncLink | None = getattr(self._local, "link", None)
        if link is None:
            link = SyncLink(self._address, self._timeout, self._on_link, self._name)
            self._local.link = link
            with self._lock:
                self._all.append(link)
        return link

    def call(self, *args: Arg, own: bool | None = None) -> Any:
        """One command; a connection the backing Redis dropped (it restarted) is reopened once."""
        own = self._own if own is None else own
        fresh = getattr(self._local, "link", None) is None
        try:
            return self.get().call(*args, own=own)
        except NetworkError:
            self._local.link = None
            if fresh:
                raise
        return self.get().call(*args, own=own)

    def pipeline(self, commands: Sequence[Sequence[Arg]], own: bool | None = None) -> list[Any]:
        """Several commands in one write on this thread's link; error replies are returned in place."""
        own = self._own if own is None else own
        fresh = getattr(self._local, "link", None) is None
        try:
            return self.get().pipeline(commands, own)
        except NetworkError:
            self._local.link = None
            if fresh:
                raise
        return self.get().pipeline(commands, own)

    def transaction(self, *args: Arg, unheard: bool = False) -> Any:
        """One command inside MULTI/EXEC (a blocking command returns at once, as through RM_Call); its reply,
        or CommandError.

        `unheard`: its key events must not trigger KeysReader registrations, as RedisGears' own reads
        (ignoreKeysEvents) and a sync KeysReader's writes (Redis does not notify a subscriber from inside
        its own notification) do not. Two messages the runtime reads with the key events frame the
        command, in the transaction, so nobody else's events fall between them. A user who may not
        publish them (no `&__gearcam__:fence` in its ACL) gets the command sent as it is, heard.
        """
        steps: list[Sequence[Arg]] = [args]
        if unheard and not self.unheard_refused:
            steps = [(b"PUBLISH", FENCE_CHANNEL, KEYS_QUIET_ON), args, (b"PUBLISH", FENCE_CHANNEL, KEYS_QUIET_OFF)]
        at = 1 if len(steps) > 1 else 0  # the command's place in the transaction
        replies = self.pipeline([(b"MULTI",), *steps, (b"EXEC",)])
        frame, queued, result = replies[1], replies[1 + at], replies[-1]
        if at and isinstance(frame, CommandError) and str(frame).startswith("NOPERM"):
            self.unheard_refused = True
            logger.warning(
                "the backing Redis refused the runtime's mark around a Gears read or a sync KeysReader's write "
                "(%s): their key events now trigger KeysReader registrations, as RedisGears' do not; give the "
                "user the channel (ACL SETUSER <user> &__gearcam__:fence)", frame,
            )  # fmt: skip
            return self.transaction(*args)
        for error in (queued, result):
            if isinstance(error, CommandError):
                raise error
        value = result[at] if isinstance(result, list) and len(result) > at else result
        if isinstance(value, CommandError):
            raise value
        return value

    def close(self) -> None:
        with self._lock:
            links, self._all = self._all, []
        for link in links:
            link.close()
