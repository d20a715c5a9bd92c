"""Where the runtime listens: its plain port, its TLS port and its unix socket, changed while it runs.

Redis moves its ports and reloads its TLS files on `CONFIG SET port`, `tls-port`, `bind` and `tls-*`
without dropping a connected client; an operator rotates a certificate that way. The runtime
does the same (runtime/own_settings.py decides what a CONFIG SET changes): what replaces a
listener is made first, and only once all of it is ready are the old ones closed, so a change
that fails leaves everything as it was. A new TLS context on the same port keeps the listening
socket itself (a duplicate of it serves the new context), so no connection is refused while
the certificate changes; the clients already connected keep the session they negotiated.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
from dataclasses import dataclass, field

from gearcam.config import BIND_MISSING, RuntimeSettings, bind_addresses, runtime_flag
from gearcam.errors import ConfigError
from gearcam.runtime import chunks
from gearcam.runtime.clients import listed_address

__all__ = ["Listeners", "ListenFailed"]

logger = logging.getLogger(__name__)

_LIMIT = 2**20  # a reader's buffer before it pauses its socket


class ListenFailed(ConfigError):
    """A port could not be bound: the `setting` that named it, and the system's reason."""

    def __init__(self, setting: str, reason: str, fix: str = "", in_use: bool = False) -> None:
        fix = fix or f"free it, or choose another with {runtime_flag(setting.replace('-', '_'))} or --host"
        super().__init__(f"cannot listen for {setting} on {reason}; {fix}")
        self.setting = setting  # Redis' name: port or tls-port
        self.in_use = in_use  # the address and port are taken (EADDRINUSE)


def _nowhere(bind: str) -> ListenFailed:
    """Every address of `bind` was optional and missing: Redis exits ("Configured to not listen anywhere")."""
    return ListenFailed("port", f"any address of {bind!r} (none of them is on this machine)",
                        f"name one this machine has with {runtime_flag('host')}")  # fmt: skip


def _shown(address: str, port: int) -> str:
    """An address of the bind list with the port, as CLIENT LIST writes addresses (`*` for every address)."""
    return listed_address((address or "*", port), socket.AF_INET)


# The servers of one port, by the address of Redis' bind list each serves (a name may resolve to several
# sockets, hence several servers).
_Bound = dict[str, list[asyncio.Server]]


def _where(bound: _Bound) -> list[str]:
    """Every address the servers listen on, for the log."""
    return [listed_address(sock.getsockname(), sock.family)
            for servers in bound.values() for server in servers for sock in server.sockets]  # fmt: skip


def _close(bound: _Bound, keep: _Bound | None = None) -> None:
    """Stop listening with every server of `bound` that `keep` does not hold too; their clients stay connected."""
    kept = {id(server) for servers in (keep or {}).values() for server in servers}
    for servers in bound.values():
        for server in servers:
            if id(server) not in kept:
                server.close()


@dataclass
class Listeners:
    """The asyncio servers behind each of the runtime's addresses."""

    accept: chunks.Connected
    tls: ssl.SSLContext | None = None
    _plain: _Bound = field(default_factory=dict)
    _secure: _Bound = field(default_factory=dict)
    _unix: list[asyncio.Server] = field(default_factory=list)

    async def start(self, settings: RuntimeSettings) -> list[str]:
        """Listen where `settings` say; the addresses, for the log."""
        self._plain, self._secure = await self._bind_all(settings, self.tls, {}, {})
        where = _where(self._plain) + [f"{shown} (TLS, client certificates: {settings.tls_auth_clients})"
                                       for shown in _where(self._secure)]  # fmt: skip
        if settings.unixsocket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(settings.unixsocket)
            self._unix = [await chunks.start_unix_server(self.accept, settings.unixsocket, _LIMIT)]
            where.append(settings.unixsocket)
        return where

    async def change(self, now: RuntimeSettings, then: RuntimeSettings, tls: ssl.SSLContext | None) -> None:
        """Listen as `then` says where `now` is in force, with `tls` for the TLS port; all or nothing.

        An address that both lists name on an unchanged port keeps its listening socket (the same
        server, or with a new TLS context a duplicate of its socket), and the new addresses are
        bound before the old ones close, so nothing is refused meanwhile. Only where that cannot
        be (a wildcard and a specific address of one port cannot both listen: `bind 0.0.0.0`
        after `127.0.0.1`) the addresses left out stop listening first, as Redis does it, and
        listen again if the change fails. Raises ListenFailed (a port taken or not allowed) with
        nothing changed.
        """
        old_plain = self._plain if then.port == now.port else {}
        old_secure = self._secure if then.tls_port == now.tls_port else {}
        try:
            plain, secure = await self._bind_all(then, tls, old_plain, old_secure)
        except ListenFailed as exc:
            named = {address for address, _ in bind_addresses(then.host)}
            keep_plain = {address: servers for address, servers in old_plain.items() if address in named}
            keep_secure = {address: servers for address, servers in old_secure.items() if address in named}
            if not exc.in_use or (keep_plain == self._plain and keep_secure == self._secure):
                raise
            _close(self._plain, keep_plain)
            _close(self._secure, keep_secure)
            try:
                plain, secure = await self._bind_all(then, tls, keep_plain, keep_secure)
            except ListenFailed:
                await self._restore(now, keep_plain, keep_secure)
                raise
        _close(self._plain, plain)
        _close(self._secure, secure)
        self._plain, self._secure, self.tls = plain, secure, tls

    async def _restore(self, now: RuntimeSettings, keep_plain: _Bound, keep_secure: _Bound) -> None:
        """Listen as `now` says again, after a change that closed some addresses first failed."""
        try:
            self._plain, self._secure = await self._bind_all(now, self.tls, keep_plain, keep_secure)
        except ListenFailed as exc:  # another process took a released address meanwhile
            self._plain, self._secure = keep_plain, keep_secure
            logger.error("the runtime no longer listens everywhere it did before the failed change: %s", exc)

    async def _bind_all(self, settings: RuntimeSettings, tls: ssl.SSLContext | None, old_plain: _Bound,
                        old_secure: _Bound) -> tuple[_Bound, _Bound]:  # fmt: skip
        """The plain and TLS ports' servers `settings` ask for, reusing `old_*`'s; all of them or none."""
        plain: _Bound = {}
        secure: _Bound = {}
        try:
            if settings.port:
                plain = await self._bind("port", settings.host, settings.port, None, old_plain, None)
            if tls is not None and settings.tls_port:
                secure = await self._bind("tls-port", settings.host, settings.tls_port, tls, old_secure, self.tls)
            if not plain and not secure and not settings.unixsocket:
                raise _nowhere(settings.host)
        except BaseException:
            _close(plain, old_plain)
            _close(secure, old_secure)
            raise
        return plain, secure

    def close(self) -> None:
        _close(self._plain)
        _close(self._secure)
        for server in self._unix:
            server.close()

    async def _bind(self, setting: str, bind: str, port: int, tls: ssl.SSLContext | None, old: _Bound | None = None,
                    old_tls: ssl.SSLContext | None = None) -> _Bound:  # fmt: skip
        """Servers on `port` at every address of Redis' `bind` list; all of them, or ListenFailed and none.

        An address `old` serves already (the same port) is kept: its servers where the context is
        the same, else new servers on duplicates of their sockets. An address marked optional
        (`-::1`) that this machine lacks is skipped with a warning, as Redis skips it.
        """
        old = old or {}
        bound: _Bound = {}
        try:
            for address, optional in bind_addresses(bind):
                if address in bound:  # Redis binds it twice and fails
                    raise ListenFailed(setting, f"{_shown(address, port)}: {os.strerror(errno.EADDRINUSE)}",
                                       f"name {address} once in {runtime_flag('host')}")  # fmt: skip
                if address in old:
                    if tls is old_tls:
                        bound[address] = old[address]
                    else:  # the same sockets (duplicates: they outlive the old servers), a new context
                        bound[address] = [await chunks.start_server_on(self.accept, sock.dup(), _LIMIT, tls)
                                          for server in old[address] for sock in server.sockets]  # fmt: skip
                    continue
                try:
                    bound[address] = [await chunks.start_server(self.accept, address or None, port, _LIMIT, tls)]
                except OSError as exc:
                    # asyncio's own text repeats the address; a name that does not resolve has a negative errno
                    reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
                    if optional and exc.errno in BIND_MISSING:
                        logger.warning("not listening on %s: %s (skipped: it is marked optional with '-')",
                                       _shown(address, port), reason)  # fmt: skip
                        continue
                    fix = ""  # taken: free it, or another port
                    if exc.errno in BIND_MISSING:
                        fix = (f"this machine has no such address: name one it has with {runtime_flag('host')}, "
                               f"or mark it optional as Redis' bind does ('-{address}')")  # fmt: skip
                    raise ListenFailed(setting, f"{_shown(address, port)}: {reason}", fix,
                                       exc.errno == errno.EADDRINUSE) from exc  # fmt: skip
                except UnicodeError as exc:  # a name the resolver cannot even encode (CONFIG SET bind)
                    raise ListenFailed(setting, f"{address!r}:{port}: not an address or host name ({exc})") from exc
        except BaseException:
            _close(bound, old)
            raise
        return bound
