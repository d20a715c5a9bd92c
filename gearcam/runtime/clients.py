"""The runtime's clients as Redis lists them: CLIENT LIST, CLIENT INFO and CLIENT KILL through the runtime.

Each client of the runtime has a link of its own to the backing Redis, which Redis lists with the
link's address: a unix socket path for the embedded Redis, the same for every client. Redis'
answer is kept (its ids, names, ages, flags, databases, last commands, memory) and only where the
client connects from is put back, with its last command where the runtime served it (`cmd=ai.tensorset`,
as Redis names a module's command): `addr` and `laddr` are the client's side of its connection to
the runtime, found by the link's CLIENT ID, which the runtime learns when the client connects (or
logs in, where Redis wants a password). Inside MULTI these commands are queued in Redis' transaction
as they came, and answered with the links' addresses. The
runtime's own links and its Gears workers' (named INTERNAL_NAME and CODE_NAME) are left out, as a
module's work inside Redis is no client. CLIENT KILL ADDR (and the older `CLIENT KILL ip:port`) of a
runtime client is sent to Redis as its link's ID; killing the link ends the client's connection with it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

__all__ = ["ClientDirectory", "Listed", "listed_address"]

_KEPT_LINK_ADDRESSES = 4096  # more than Redis' SLOWLOG holds by default (128) many times over


def listed_address(address: Any, family: int) -> str:
    """A socket address as Redis writes it in CLIENT LIST: ip:port, [ipv6]:port, or path:0 for a unix socket."""
    if family == socket.AF_UNIX:
        return f"{address or ''}:0"
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Listed:
    """Where one client connects from (addr) and to (laddr), as CLIENT LIST shows them; and `cmd`, the
    client's latest command when the runtime serves or amends it (AI.*, RG.*, TYPE), which Redis' line
    would give as what the runtime sent on the link for it (an EVALSHA, a GETRANGE), or the command before."""

    addr: str
    laddr: str
    cmd: bytes | None = None


class ClientDirectory:
    """The runtime's clients by their links' CLIENT IDs in the backing Redis."""

    def __init__(self, *internal_names: bytes) -> None:
        self._internal = {b"name=" + name for name in internal_names}
        self._by_id: dict[int, Listed] = {}
        # Links' own addresses (ip:port toward a backing Redis on TCP) to their clients', for the SLOWLOG entries
        # and MONITOR lines Redis makes with them; kept after a client leaves, as its entries stay in the log.
        self._at_link: dict[bytes, bytes] = {}

    def linked(self, link_address: str, listed: Listed) -> None:
        """A client's link opened, before it sends anything: its own address (BackendLink.client_address) stands
        for the client's in MONITOR lines and SLOWLOG entries from now on. Not one over a unix socket, where every
        link of the runtime has the socket's address."""
        if link_address.startswith("unix:"):
            return
        self._at_link.pop(link_address.encode(), None)  # a port used again: the newest client's, last
        self._at_link[link_address.encode()] = listed.addr.encode()
        while len(self._at_link) > _KEPT_LINK_ADDRESSES:
            del self._at_link[next(iter(self._at_link))]

    def add(self, link_id: int, listed: Listed) -> None:
        """The client's link's CLIENT ID, once the runtime learned it (CLIENT LIST's lines are found by it)."""
        self._by_id[link_id] = listed

    def as_listed(self, link_address: bytes) -> bytes:
        """A SLOWLOG entry's or MONITOR line's client address: the client's own where its link tells it apart, else
        the link's."""
        return self._at_link.get(link_address, link_address)

    def remove(self, link_id: int | None) -> None:
        if link_id is not None:
            self._by_id.pop(link_id, None)

    def rewrite_line(self, line: bytes) -> bytes:
        """One client's line (ACL LOG's `client-info`) with its client's addresses, where it is a runtime client's;
        its `cmd=` stays the one of that moment (the command refused then, not the client's latest)."""
        return self.rewrite(line + b"\n", now=False).rstrip(b"\n") or line

    def id_at(self, addr: bytes) -> int | None:
        """The link ID of the runtime client connected from `addr`; None if no client of the runtime is."""
        text = addr.decode("utf-8", "replace")
        return next((link_id for link_id, listed in self._by_id.items() if listed.addr == text), None)

    def rewrite(self, listing: bytes, now: bool = True) -> bytes:
        """CLIENT LIST's (or CLIENT INFO's) text with each runtime client's own addresses, internal links left out;
        `now`: the listing is of this moment, so a client's latest command the runtime served is its `cmd=`."""
        out = []
        for line in listing.split(b"\n"):
            if not line:
                continue
            fields = line.split(b" ")
            if not self._internal.isdisjoint(fields):
                continue
            listed = self._by_id.get(_link_id(fields))
            if listed is not None:
                fields = [_put(field, listed, now) for field in fields]
            out.append(b" ".join(fields) + b"\n")
        return b"".join(out)

    def internal(self, listing: bytes) -> tuple[int, int]:
        """How many of CLIENT LIST's clients are the runtime's own links, and how many of those are blocked: what
        INFO's `connected_clients` and `blocked_clients` count that Redis with the modules would not."""
        connected = blocked = 0
        for line in listing.split(b"\n"):
            fields = line.split(b" ")
            if not self._internal.isdisjoint(fields):
                connected += 1
                blocked += any(f.startswith(b"flags=") and b"b" in f[6:] for f in fields)
        return connected, blocked

    def kill_arguments(self, args: list[bytes]) -> list[bytes]:
        """CLIENT KILL with ADDR filters (or the old form's address) naming runtime clients sent as their links' IDs."""
        if len(args) == 3:  # CLIENT KILL ip:port: Redis' older form, for one address
            link_id = self.id_at(args[2])
            return args if link_id is None else [*args[:2], b"ID", str(link_id).encode()]
        out = list(args[:2])
        for at in range(2, len(args) - 1, 2):
            name, value = args[at], args[at + 1]
            link_id = self.id_at(value) if name.upper() == b"ADDR" else None
            out += [name, value] if link_id is None else [b"ID", str(link_id).encode()]
        return out + list(args[len(out) :])  # an odd last word: Redis' syntax error to give


def _link_id(fields: list[bytes]) -> int:
    for field in fields:
        if field.startswith(b"id="):
            return int(field[3:]) if field[3:].isdigit() else -1
    return -1


def _put(field: bytes, listed: Listed, now: bool) -> bytes:
    if field.startswith(b"addr="):
        return b"addr=" + listed.addr.encode()
    if field.startswith(b"laddr="):
        return b"laddr=" + listed.laddr.encode()
    if now and field.startswith(b"cmd=") and listed.cmd is not None:
        return b"cmd=" + listed.cmd
    return field
