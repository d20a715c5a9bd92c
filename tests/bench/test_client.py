"""The lean client against a real redis-server: large values arrive whole, replies line up, errors raise."""

from __future__ import annotations

import os

import pytest

from gearcam.bench.client import LeanClient
from gearcam.redis_server import EmbeddedRedis


def test_a_value_larger_than_one_socket_write_arrives_whole(embedded_redis: EmbeddedRedis) -> None:
    payload = os.urandom(24 * 1024 * 1024)  # more than the kernel takes in one sendmsg
    client = LeanClient("127.0.0.1", embedded_redis.port)
    try:
        replies = client.pipeline(("SET", "bench:test:big", payload), ("STRLEN", "bench:test:big"),
                                  ("GETRANGE", "bench:test:big", 20_000_000, 20_000_009))  # fmt: skip
        assert replies == [b"OK", len(payload), payload[20_000_000:20_000_010]]
        client.pipeline(("DEL", "bench:test:big"))
    finally:
        client.close()


def test_an_error_reply_is_raised_after_every_reply_was_read(embedded_redis: EmbeddedRedis) -> None:
    client = LeanClient("127.0.0.1", embedded_redis.port)
    try:
        with pytest.raises(Exception, match="unknown command"):
            client.pipeline(("NOSUCHCOMMAND",), ("PING",))
        assert client.pipeline(("PING",)) == [b"PONG"]  # the connection is still in step
    finally:
        client.close()
