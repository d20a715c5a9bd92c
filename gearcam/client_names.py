"""The names gearcam's services give their Redis connections, so that CLIENT LIST tells them apart.

redis-py's own `client_name` sends CLIENT SETNAME as it connects and fails the connection when Redis
refuses it, as it does for an ACL user without `client|setname`. A name is worth nothing beside a
camera that cannot connect, so these connect hooks (redis-py's `redis_connect_func`) log in as
redis-py would and then ask for the name, going on without it where Redis says no.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis
import redis.asyncio.connection
import redis.connection

__all__ = ["named", "named_async"]


def _valid(name: str) -> str:
    """Redis refuses names with spaces or other characters outside '!'..'~' (a stream's name may have them)."""
    return "".join(c if "!" <= c <= "~" else "_" for c in name)


def named(name: str) -> Callable[[redis.connection.AbstractConnection], None]:
    """For redis.Redis(..., redis_connect_func=named("gearcam-record"))."""
    name = _valid(name)

    def connected(connection: redis.connection.AbstractConnection) -> None:
        connection.on_connect()  # type: ignore[no-untyped-call]
        connection.send_command("CLIENT", "SETNAME", name, check_health=False)  # type: ignore[no-untyped-call]
        try:
            connection.read_response()
        except redis.ResponseError:  # NOPERM, or a server without CLIENT SETNAME: unnamed, connected
            pass

    return connected


def named_async(name: str) -> Callable[[redis.asyncio.connection.AbstractConnection], Awaitable[None]]:
    """For redis.asyncio.Redis(..., redis_connect_func=named_async("gearcam-web:all"))."""
    name = _valid(name)

    async def connected(connection: redis.asyncio.connection.AbstractConnection) -> None:
        await connection.on_connect()
        await connection.send_command("CLIENT", "SETNAME", name, check_health=False)
        try:
            await connection.read_response()
        except redis.ResponseError:
            pass

    return connected
