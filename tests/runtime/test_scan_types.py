"""SCAN ... TYPE through the runtime: the stored AI objects are keys of RedisAI's types, not strings."""

from __future__ import annotations

import redis

from tests.runtime.conftest import RawClient
from tests.runtime.models import add_model


def _scan(client: redis.Redis, **options: object) -> set[bytes]:
    return set(client.scan_iter(count=3, **options))  # small pages: the cursor walks several


def test_scan_type_finds_tensors_and_models_and_string_leaves_them_out(r: redis.Redis, direct: redis.Redis) -> None:
    for n in range(5):
        r.execute_command("AI.TENSORSET", f"scan:t{n}", "FLOAT", 1, "VALUES", n)
    r.execute_command("AI.MODELSTORE", "scan:m", "ONNX", "CPU", "BLOB", add_model())
    r.set("scan:s", "plain")
    r.set("scan:empty", "")
    r.rpush("scan:l", "a")
    tensors = {f"scan:t{n}".encode() for n in range(5)}
    assert _scan(r, _type="AI_TENSOR") == tensors
    assert _scan(r, _type="ai_tensor", match="scan:t[0-2]") == {b"scan:t0", b"scan:t1", b"scan:t2"}
    assert _scan(r, _type="AI__MODEL") == {b"scan:m"}
    assert _scan(r, _type="AI_SCRIPT") == set()
    assert _scan(r, _type="string") == {b"scan:s", b"scan:empty"}  # AI objects are not strings on RedisAI
    assert _scan(r, _type="list") == {b"scan:l"}
    assert _scan(r) == tensors | {b"scan:m", b"scan:s", b"scan:empty", b"scan:l"}
    assert set(direct.scan_iter(_type="string")) >= tensors  # the backing Redis stores them as strings
    assert {r.type(k) for k in _scan(r, _type="AI_TENSOR")} == {b"AI_TENSOR"}  # as TYPE names them


def test_scan_errors_and_shapes_are_redis_own(r: redis.Redis, wire: RawClient) -> None:
    r.execute_command("AI.TENSORSET", "scan:t", "FLOAT", 1, "VALUES", 1)
    assert "syntax error" in str(wire.call("SCAN", "0", "TYPE"))
    assert "invalid cursor" in str(wire.call("SCAN", "x", "TYPE", "AI_TENSOR"))
    cursor, keys = wire.call("SCAN", "0", "COUNT", "1000", "TYPE", "AI_TENSOR")  # type: ignore[misc]
    assert cursor == b"0" and keys == [b"scan:t"]
    assert wire.call("HELLO", "3") and wire.call("SCAN", "0", "TYPE", "AI_TENSOR", "COUNT", "1000") == [
        b"0",
        [b"scan:t"],
    ]


def test_a_restricted_user_scans_by_type_too(r: redis.Redis, server_url: str) -> None:
    r.execute_command("AI.TENSORSET", "scan:t", "FLOAT", 1, "VALUES", 1)
    r.set("scan:s", "plain")
    r.execute_command("ACL", "SETUSER", "scanner", "reset", "on", ">pw", "~scan:*", "+@all")
    try:
        user = redis.Redis.from_url(server_url, username="scanner", password="pw", socket_timeout=30)
        assert set(user.scan_iter(_type="AI_TENSOR")) == {b"scan:t"}
        assert set(user.scan_iter(_type="string")) == {b"scan:s"}
        user.close()
    finally:
        r.execute_command("ACL", "DELUSER", "scanner")
