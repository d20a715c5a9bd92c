"""The Gears script's counters against a real redis-server: one EVALSHA a flush, or one command each without scripting.

The script is imported as a plain module and given what RedisGears gives it, `execute` and
`log`: `execute` on the blocking link Gears workers use (an error reply raises with Redis' own
text), as the ACL user a registration runs as.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis

from gearcam.redis_server import EmbeddedRedis
from gearcam.runtime.gears.link import SyncLink
from gearcam.runtime.relay import parse_address

SCRIPT = Path(__file__).resolve().parents[2] / "gears" / "animal_recognition.py"


_links: list[SyncLink] = []


@pytest.fixture(autouse=True)
def _close_links() -> Iterator[None]:
    yield
    while _links:
        _links.pop().close()


def _script(url: str, logged: list[str]) -> ModuleType:
    """A fresh copy of the script (its own module state), with RedisGears' execute and log."""
    link = SyncLink(parse_address(url), timeout=10)
    _links.append(link)
    spec = importlib.util.spec_from_file_location(f"animal_recognition_{uuid.uuid4().hex}", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.execute = link.call  # type: ignore[attr-defined]
    module.log = lambda text, level="notice": logged.append(text)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def keys(embedded_redis: EmbeddedRedis) -> Iterator[tuple[str, str]]:
    prefix = f"test:counters:{uuid.uuid4().hex}"
    yield f"{prefix}:pipeline", f"{prefix}:camera"
    admin = redis.Redis.from_url(embedded_redis.url)
    admin.delete(f"{prefix}:pipeline", f"{prefix}:camera")
    admin.close()


def _ops(pipeline: str, camera: str) -> list[tuple[str, str, str, str]]:
    return [("i", pipeline, "seen", "1"), ("i", camera, "frames", "1"), ("s", pipeline, "last_ms", "12.5"),
            ("i", pipeline, "seen", "1")]  # fmt: skip


def test_a_flush_is_one_script_call_and_its_replies_come_in_order(
    embedded_redis: EmbeddedRedis, keys: tuple[str, str]
) -> None:
    pipeline, camera = keys
    conn = redis.Redis.from_url(embedded_redis.url, decode_responses=True)
    logged: list[str] = []
    script = _script(embedded_redis.url, logged)
    conn.execute_command("SCRIPT", "FLUSH")  # the first flush finds no script: EVALSHA, then EVAL
    conn.config_resetstat()
    assert script.write_stats(_ops(pipeline, camera)) == [1, 1, 0, 2]
    assert script.write_stats(_ops(pipeline, camera)) == [3, 2, 0, 4]
    assert conn.hgetall(pipeline) == {"seen": "4", "last_ms": "12.5"} and conn.hget(camera, "frames") == "2"
    stats = conn.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 2 and stats["cmdstat_eval"]["calls"] == 1
    assert "cmdstat_hincrby" not in stats or stats["cmdstat_hincrby"]["calls"] == 6  # all from inside the script
    assert logged == [] and script.write_stats([]) == []
    conn.close()


def test_a_user_without_scripting_gets_every_counter_written_one_by_one(
    embedded_redis: EmbeddedRedis, keys: tuple[str, str]
) -> None:
    pipeline, camera = keys
    admin = redis.Redis.from_url(embedded_redis.url)
    user = f"counters-{uuid.uuid4().hex[:8]}"
    admin.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-@scripting"])
    try:
        conn = redis.Redis.from_url(embedded_redis.url, decode_responses=True)
        logged: list[str] = []
        script = _script(f"redis://{user}:pw@127.0.0.1:{embedded_redis.port}", logged)
        assert script.write_stats(_ops(pipeline, camera)) == [1, 1, 1, 2]  # HSET's own reply: 1 field added
        assert not script._stats_script["usable"]
        assert len(logged) == 1 and "allow +evalsha +eval" in logged[0] and "NOPERM" in logged[0]
        assert script.write_stats(_ops(pipeline, camera)) == [3, 2, 0, 4]  # no second try, no second log line
        assert len(logged) == 1
        assert conn.hgetall(pipeline) == {"seen": "4", "last_ms": "12.5"} and conn.hget(camera, "frames") == "2"
        conn.close()
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_a_frame_dropped_for_an_error_counts_what_it_gathered_with_the_error(
    embedded_redis: EmbeddedRedis, keys: tuple[str, str]
) -> None:
    conn = redis.Redis.from_url(embedded_redis.url, decode_responses=True)
    logged: list[str] = []
    script = _script(embedded_redis.url, logged)
    shared = [key for key in (script.ERRORS_KEY, script.STATS_KEY) if not conn.exists(key)]  # removed after
    camera = f"camera:{uuid.uuid4().hex[:8]}"
    record = {"key": camera, "id": "1-0"}
    script.count(record, "seen")
    script.count_error(record, script.FrameError("decode", "cannot decode 10 bytes"))
    try:
        assert "tally" not in record  # written, not kept
        errors = conn.hget(script.ERRORS_KEY, "decode")
        assert errors is not None and int(errors) >= 1
        assert int(conn.hget(script.CAMERA_STATS_PREFIX + camera, "errors") or 0) == 1
        assert "cannot decode 10 bytes" in (conn.hget(script.STATS_KEY, "last_error") or "")
        assert any("frame dropped, decode" in line for line in logged)
    finally:
        conn.delete(script.CAMERA_STATS_PREFIX + camera, *shared)
        conn.close()
