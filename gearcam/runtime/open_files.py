"""How many clients the runtime can hold at once: Redis' maxclients, fitted to the open files limit.

Redis raises its soft RLIMIT_NOFILE toward the hard one for maxclients plus 32 descriptors of its
own, and lowers maxclients where the limit will not go that high. Here each client takes two
descriptors (its socket and its link to the backing Redis), and the runtime keeps RESERVED for its
own links, the Gears workers' channels and the engines' files: a client past the limit is refused
with Redis' words instead of the runtime running out of descriptors for the links it lives on.
"""

from __future__ import annotations

import resource

__all__ = ["FILES_PER_CLIENT", "RESERVED", "fit", "open_files_limit"]

FILES_PER_CLIENT = 2
RESERVED = 128


def open_files_limit() -> int | None:
    """The soft limit on open files now (None: unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def fit(clients: int) -> int:
    """The most clients, up to `clients`, that the open files limit allows, once its soft value was raised as far
    toward the hard one as they need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = clients * FILES_PER_CLIENT + RESERVED
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return clients
    return max(1, min(clients, (soft - RESERVED) // FILES_PER_CLIENT))
