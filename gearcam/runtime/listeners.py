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
import os
import ssl
from dataclasses import dataclass, field

from gearcam.config import RuntimeSettings, runtime_flag
from gearcam.errors import ConfigError
from gearcam.runtime import chunks

__all__ = ["Listeners", "ListenFailed"]

_LIMIT = 2**20  # a reader's buffer before it pauses its socket


class ListenFailed(ConfigError):
    """A port could not be bound: the `setting` that named it, and the system's reason."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(
            f"cannot listen for {setting} on {reason}; free it, or choose another with "
            f"{runtime_flag(setting.replace('-', '_'))} or --host"
        )
        self.setting = setting  # Redis' name: port or tls-port


@dataclass
class Listeners:
    """The asyncio servers behind each of the runtime's addresses."""

    accept: chunks.Connected
    tls: ssl.SSLContext | None = None
    _plain: list[asyncio.Server] = field(default_factory=list)
    _secure: list[asyncio.Server] = field(default_factory=list)
    _unix: list[asyncio.Server] = field(default_factory=list)

    async def start(self, settings: RuntimeSettings) -> list[str]:
        """Listen where `settings` say; the addresses, for the log."""
        where = []
        if settings.port:
            self._plain = [await self._bind("port", settings.host, settings.port, None)]
            where.append(f"{settings.host}:{settings.port}")
        if self.tls is not None:
            self._secure = [await self._bind("tls-port", settings.host, settings.tls_port, self.tls)]
            where.append(f"{settings.host}:{settings.tls_port} (TLS, client certificates: {settings.tls_auth_clients})")
        if settings.unixsocket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(settings.unixsocket)
            self._unix = [await chunks.start_unix_server(self.accept, settings.unixsocket, _LIMIT)]
            where.append(settings.unixsocket)
        return where

    async def change(self, now: RuntimeSettings, then: RuntimeSettings, tls: ssl.SSLContext | None) -> None:
        """Listen as `then` says where `now` is in force, with `tls` for the TLS port; all or nothing.

        Raises ListenFailed (a port taken or not allowed) with nothing changed.
        """
        made: list[asyncio.Server] = []
        try:
            moved = then.host != now.host
            plain = self._plain
            if then.port != now.port or moved:
                plain = [await self._bind("port", then.host, then.port, None)] if then.port else []
                made += plain
            secure = self._secure
            if tls is None or not then.tls_port:
                secure = []
            elif then.tls_port != now.tls_port or moved or not self._secure:
                secure = [await self._bind("tls-port", then.host, then.tls_port, tls)]
                made += secure
            elif tls is not self.tls:  # the same sockets (duplicates: they outlive the old servers), a new context
                secure = [
                    await chunks.start_server_on(self.accept, sock.dup(), _LIMIT, tls)
                    for server in self._secure
                    for sock in server.sockets
                ]
                made += secure
        except BaseException:
            for server in made:
                server.close()
            raise
        for old, new in ((self._plain, plain), (self._secure, secure)):
            if new is not old:
                for server in old:
                    server.close()  # stops listening; its clients stay connected
        self._plain, self._secure, self.tls = plain, secure, tls

    def close(self) -> None:
        for server in (*self._plain, *self._secure, *self._unix):
            server.close()

    async def _bind(self, setting: str, host: str, port: int, tls: ssl.SSLContext | None) -> asyncio.Server:
        try:
            return await chunks.start_server(self.accept, host, port, _LIMIT, tls)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's own text repeats the address
            raise ListenFailed(setting, f"{host}:{port}: {reason}") from exc
        except UnicodeError as exc:  # a name the resolver cannot even encode (CONFIG SET bind)
            raise ListenFailed(setting, f"{host!r}:{port}: not an address or host name ({exc})") from exc
