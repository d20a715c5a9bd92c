"""Memory of unfinished requests across all clients, like Redis' maxmemory-clients.

Each connection reports what its parser holds (RequestParser.buffered) after it reads.
When the total passes the budget, the client holding the most is disconnected, so one
client, or a few, sending huge requests slowly cannot take the runtime's memory.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["ClientBudget"]


class ClientBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._held: dict[Hashable, int] = {}

    def update(self, client: Hashable, size: int) -> Hashable | None:
        """Record what `client` holds now; the client to disconnect if the total is over the limit."""
        before = self._held.get(client, 0)
        if size:
            self._held[client] = size
        else:
            self._held.pop(client, None)
        self.total += size - before
        if not self.limit or self.total <= self.limit:  # 0: no limit, as Redis' maxmemory-clients 0
            return None
        return max(self._held, key=self._held.__getitem__)

    def forget(self, client: Hashable) -> None:
        self.total -= self._held.pop(client, 0)
