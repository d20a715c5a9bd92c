"""gearcam's services name their Redis connections, and connect all the same where Redis refuses the name."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis

from gearcam.client_names import named, named_async
from gearcam.redis_server import EmbeddedRedis


def _names(server: EmbeddedRedis) -> list[str]:
    return [client["name"] for client in server.client().client_list()]


@pytest.fixture
def restricted(embedded_redis: EmbeddedRedis) -> Iterator[str]:
    """A user who may read streams and add to them, and not CLIENT SETNAME: a camera's account, say."""
    admin = embedded_redis.client()
    admin.execute_command("ACL", "SETUSER", "names-cam", "on", ">pw", "~*", "+@stream", "+ping", "+client|id")
    yield f"redis://names-cam:pw@127.0.0.1:{embedded_redis.port}"
    admin.execute_command("ACL", "DELUSER", "names-cam")


def test_a_connection_is_named_and_a_name_with_spaces_made_valid(embedded_redis: EmbeddedRedis) -> None:
    client = redis.Redis(port=embedded_redis.port, redis_connect_func=named("gearcam-camera:front door"))
    assert client.ping()
    assert "gearcam-camera:front_door" in _names(embedded_redis)
    assert client.client_getname() == "gearcam-camera:front_door"
    client.close()


def test_a_user_without_client_setname_connects_unnamed(embedded_redis: EmbeddedRedis, restricted: str) -> None:
    with pytest.raises(
        redis.exceptions.NoPermissionError, match="client.setname"
    ):  # redis-py's own client_name: no connection at all
        redis.Redis.from_url(restricted, client_name="gearcam-camera:0").ping()
    client = redis.Redis.from_url(restricted, redis_connect_func=named("gearcam-camera:0"))
    assert client.xadd("names:s", {"f": "1"})
    assert "gearcam-camera:0" not in _names(embedded_redis)
    client.close()


def test_the_asyncio_client_is_named_and_connects_where_refused(embedded_redis: EmbeddedRedis, restricted: str) -> None:
    async def main() -> None:
        named_client = aioredis.Redis(port=embedded_redis.port, redis_connect_func=named_async("gearcam-web:all"))
        refused = aioredis.Redis.from_url(restricted, redis_connect_func=named_async("gearcam-web:cats"))
        assert await named_client.ping() and await refused.ping()
        assert "gearcam-web:all" in _names(embedded_redis)
        assert "gearcam-web:cats" not in _names(embedded_redis)
        await named_client.aclose()
        await refused.aclose()

    asyncio.run(main())
