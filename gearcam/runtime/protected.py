"""Protected mode, as redis-server's: no password, no clients from other machines.

redis-server refuses a connection from outside the loopback interface while protected
mode is on and its default user has no password (networking.c, clientAcceptHandler),
and tells the client why and what to do. The runtime does the same for its own port,
since it serves everything the backing Redis would, RG.PYEXECUTE (running code) included.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["DENIED", "is_local", "refuses"]

# The facts of redis-server 7.0's message, with the ways out that apply to the runtime.
DENIED = (
    "DENIED The gearcam runtime is running in protected mode because protected mode is enabled and no "
    "password is set for the default user of its backing Redis. In this mode connections are only accepted "
    "from the loopback interface. If you want to connect from external computers you may adopt one of the "
    "following solutions: 1) Set up an authentication password for the default user of the backing Redis "
    "(requirepass, or ACL SETUSER default on >password) and give clients the password. "
    "2) Disable protected mode on purpose: start the runtime with '--protected-mode no', or set "
    "runtime.protected_mode: false in invoke.yaml (GEARCAM_RUNTIME__PROTECTED_MODE=false), and then restart it; "
    "MAKE SURE the runtime is not publicly accessible from the internet if you do so. "
    "3) Listen on the loopback interface only (--host 127.0.0.1) and reach it from this host. "
    "NOTE: You only need to do one of the above things in order for the runtime to start accepting "
    "connections from the outside."
)


def is_local(peer: Any) -> bool:
    """Whether a peer address (asyncio's peername) is this host: loopback IPv4/IPv6, or a unix socket.

    Every 127.0.0.0/8 address counts (redis-server 7.0 takes only 127.0.0.1 and ::1);
    traffic to those never leaves the host.
    """
    if not isinstance(peer, tuple) or not peer:
        return True  # a unix socket (peername '' or a path), as Redis
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def refuses(enabled: bool, password_set: bool, peer: Any) -> bool:
    """Whether protected mode turns this client away: it is on, Redis has no password, the peer is remote."""
    return enabled and not password_set and not is_local(peer)
