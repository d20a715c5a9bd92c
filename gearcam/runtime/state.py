"""What every client connection shares: settings, the backing address, the services and the command table.

Kept apart from server.py (which builds it) so that command handlers and connections can
name it without importing the server and everything the server imports.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gearcam.config import RuntimeSettings
from gearcam.errors import NetworkError
from gearcam.runtime.acl import AclChecker
from gearcam.runtime.acllog import AclLog
from gearcam.runtime.backing_tls import BackingTls, renew
from gearcam.runtime.budget import ClientBudget
from gearcam.runtime.clients import ClientDirectory
from gearcam.runtime.commandstats import CommandStats
from gearcam.runtime.listeners import Listeners
from gearcam.runtime.own_traffic import OWN_TRAFFIC
from gearcam.runtime.relay import CODE_NAME, INTERNAL_NAME, Address, BackendLink, OwnLink
from gearcam.runtime.request import PROTO_MAX_BULK_LEN, memory_bytes
from gearcam.runtime.resp import ErrorReply, monitor_line
from gearcam.runtime.slowlog import SlowLog

if TYPE_CHECKING:
    from gearcam.runtime.ai.service import AIService
    from gearcam.runtime.commands.base import Command
    from gearcam.runtime.gears.service import GearsService
    from gearcam.runtime.keyevents import KeyEvents

__all__ = ["ModuleInfo", "RuntimeState"]

logger = logging.getLogger(__name__)

_INTERNAL_TTL_S = 1.0  # how long INFO's count of the runtime's own links is reused (RuntimeState.internal_clients)

# A module the runtime stands in for: its name, version and INFO sections.
ModuleInfo = tuple[str, int, Callable[[], list[tuple[str, list[tuple[str, Any]]]]]]


@dataclass
class RuntimeState:
    settings: RuntimeSettings
    backing: Address
    ai: AIService
    events: KeyEvents  # the backing Redis' key events, shared by AI memory, Gears and the relay
    commands: dict[str, Command] = field(default_factory=dict)
    module_infos: list[ModuleInfo] = field(default_factory=list)
    gears: GearsService | None = None
    listeners: Listeners | None = None  # where the runtime listens (CONFIG SET port, tls-port, bind, tls-*)
    shut_down: Callable[[], None] | None = None  # a client's SHUTDOWN stopped the backing Redis: stop as it did
    # Clients' unfinished requests together (runtime.maxmemory_clients), and the backing Redis' proto-max-bulk-len.
    budget: ClientBudget = field(init=False)
    acl: AclChecker = field(init=False)  # what restricted ACL users may do with owned commands
    acllog: AclLog = field(init=False)  # ACL LOG: the backing Redis' entries and the owned commands' refusals
    slowlog: SlowLog = field(init=False)  # SLOWLOG: the backing Redis' entries and the owned commands'
    commandstats: CommandStats = field(default_factory=CommandStats)  # INFO commandstats of the owned commands
    max_bulk_len: int = PROTO_MAX_BULK_LEN
    rejected_connections: int = 0  # clients refused past maxclients (INFO stats adds them to Redis' own)
    connections_received: int = 0  # clients accepted (INFO stats' total_connections_received: the runtime's)
    # Clients in MONITOR, by id: each takes the lines of the commands the runtime serves itself (Redis
    # feeds its monitors those of the commands it runs; owned ones never reach it).
    monitors: dict[int, Callable[[bytes], None]] = field(default_factory=dict)
    clients: ClientDirectory = field(init=False)  # CLIENT LIST's addresses of the clients, by their links' ids
    own: OwnLink = field(init=False)  # the runtime's own reads of the backing Redis' state (INFO's client counts)
    _internal: tuple[int, int] = field(default=(0, 0), init=False)  # internal_clients' last counts, and when
    _internal_at: float = field(default=-_INTERNAL_TTL_S, init=False)

    def __post_init__(self) -> None:
        self.budget = ClientBudget(self.settings.maxmemory_clients)
        self.acl = AclChecker(self.backing, self.settings.connect_timeout)
        self.clients = ClientDirectory(INTERNAL_NAME, CODE_NAME)
        self.own = OwnLink(self.backing, self.settings.connect_timeout)
        self.acllog = AclLog(self.backing, self.settings.connect_timeout, self.clients.rewrite_line)
        self.slowlog = SlowLog(self.backing, self.settings.connect_timeout, self.clients.as_listed)

    def ran(
        self, name: str, args: list[bytes], began: float, error: ErrorReply | None,
        client: Callable[[], tuple[bytes, bytes]], link: BackendLink | None = None,
    ) -> None:  # fmt: skip
        """An owned command finished (begun at monotonic `began`): counted in INFO commandstats and, if slow,
        logged in SLOWLOG under `client` (SlowLog.observe: the look goes on `link` when given)."""
        duration_us = int((time.monotonic() - began) * 1_000_000)
        self.commandstats.ran(name, duration_us, error)
        self.slowlog.observe(args, duration_us, client, link)

    def add_monitor(self, client_id: int, feed: Callable[[bytes], None]) -> None:
        """A client entered MONITOR: it is fed the lines of the owned commands, and the runtime's own commands
        are remembered so that its feed leaves them out (own_traffic.py)."""
        self.monitors[client_id] = feed
        OWN_TRAFFIC.watch(True)

    def drop_monitor(self, client_id: int) -> None:
        self.monitors.pop(client_id, None)
        if not self.monitors:
            OWN_TRAFFIC.watch(False)

    def monitored(self, command: Command, args: list[bytes], db: int, client: str, source: int = 0) -> None:
        """An owned command about to run, in the feed of the clients in MONITOR, in Redis' line format as if Redis
        had run it for `client` (an address; RM_Call's socketless one for Gears code), its secrets hidden as
        Redis hides them; `source`: the id of the connection that sent it, which is not fed its own command."""
        if not self.monitors:
            return
        line = monitor_line(time.time(), db, client, command.shown(args) if command.shown is not None else args)
        for client_id, feed in list(self.monitors.items()):
            if client_id != source:
                feed(line)

    def configured(self, args: list[bytes]) -> None:
        """A `CONFIG SET` the backing Redis accepted: what the runtime follows of its settings follows now.

        Its SLOWLOG thresholds, and proto-max-bulk-len, which the runtime's request parser applies
        to every client before a command reaches Redis (a stale one refused what Redis now takes, or
        passed on what Redis would refuse by breaking the client's link).
        """
        self.slowlog.configured(args)
        for name, value in zip(args[2::2], args[3::2], strict=False):
            if name.lower() == b"proto-max-bulk-len":
                try:
                    self.max_bulk_len = memory_bytes(value)
                except (ValueError, KeyError):  # a spelling Redis reads and this does not: the old limit stays
                    logger.warning(
                        "proto-max-bulk-len %r not understood: the runtime keeps %d", value, self.max_bulk_len
                    )

    def renew_links(self, files: BackingTls) -> None:
        """CONFIG SET of the TLS files: the links to the rediss:// backing Redis made from now on read `files`,
        the runtime's and its Gears workers' (links already open keep their session, as Redis' do)."""
        if self.backing.tls is None:  # not reached over TLS: own_settings.apply hands no files then
            return
        try:
            renew(self.backing.tls, files)
        except (ssl.SSLError, OSError) as exc:  # read a moment ago by CONFIG SET's check: changed since
            logger.error("the links to the backing Redis keep their TLS files: %s could not be read again (%s)",
                         files.cert_file or files.ca_cert_file, exc)  # fmt: skip
            return
        if self.gears is not None:
            self.gears.renew_links(files)

    async def internal_clients(self) -> tuple[int, int]:
        """The runtime's own links among the backing Redis' clients, and the blocked ones among them.

        Read again at most once a second: some clients send INFO on every connection (ioredis' ready
        check), and a CLIENT LIST of thousands of clients for each would cost more than the counts'
        freshness is worth (the runtime's links change when Gears workers start or links reconnect).
        """
        now = time.monotonic()
        if now - self._internal_at > _INTERNAL_TTL_S:
            self._internal_at = now
            try:
                link = await self.own.get()
                self._internal = self.clients.internal(await link.call(b"CLIENT", b"LIST"))
            except (NetworkError, ErrorReply) as exc:  # INFO keeps Redis' own counts meanwhile
                logger.warning("INFO counts the runtime's own links as clients: CLIENT LIST failed (%s)", exc)
                self._internal = (0, 0)
        return self._internal

    def modules(self) -> list[ModuleInfo]:
        return self.module_infos
