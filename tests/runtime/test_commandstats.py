"""INFO commandstats through the runtime: its own commands (AI.*, RG.*) counted as Redis counts module commands."""

from __future__ import annotations

import pytest
import redis


def _stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    return {k: v for k, v in client.info("commandstats").items() if k.startswith(("cmdstat_ai.", "cmdstat_rg."))}


def test_owned_commands_are_counted_with_their_errors_and_reset_with_redis_own(r: redis.Redis) -> None:
    r.execute_command("CONFIG", "RESETSTAT")
    assert _stats(r) == {}
    r.execute_command("AI.TENSORSET", "stats:t", "FLOAT", 1, "VALUES", 1)
    r.execute_command("AI.TENSORSET", "stats:t", "FLOAT", 1, "VALUES", 2)
    r.execute_command("AI.TENSORGET", "stats:t", "META")
    try:
        r.execute_command("AI.TENSORGET", "stats:absent", "META")
    except redis.ResponseError:
        pass
    stats = _stats(r)
    assert set(stats) == {"cmdstat_ai.tensorset", "cmdstat_ai.tensorget"}
    tensorset, tensorget = stats["cmdstat_ai.tensorset"], stats["cmdstat_ai.tensorget"]
    assert (tensorset["calls"], tensorset["failed_calls"], tensorset["rejected_calls"]) == (2, 0, 0)
    assert (tensorget["calls"], tensorget["failed_calls"], tensorget["rejected_calls"]) == (2, 1, 0)
    assert tensorset["usec"] > 0 and abs(tensorset["usec_per_call"] - tensorset["usec"] / 2) < 0.01
    assert "cmdstat_config|resetstat" in r.info("commandstats")  # the backing Redis' own lines are all there
    assert "cmdstat_ai.tensorset" not in r.info()  # not in the default sections, as on Redis
    assert "cmdstat_ai.tensorset" in r.info("all")
    r.execute_command("CONFIG", "RESETSTAT")
    assert _stats(r) == {}


def test_a_command_refused_by_an_acl_rule_is_a_rejected_call(r: redis.Redis, server_url: str) -> None:
    r.execute_command("ACL", "SETUSER", "stats-user", "reset", "on", ">pw", "~stats:*", "+@all")
    try:
        r.execute_command("CONFIG", "RESETSTAT")
        user = redis.Redis.from_url(server_url, username="stats-user", password="pw", socket_timeout=30)
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.execute_command("AI.TENSORSET", "elsewhere", "FLOAT", 1, "VALUES", 1)
        user.close()
        stats = _stats(r)["cmdstat_ai.tensorset"]
        assert (stats["calls"], stats["rejected_calls"], stats["failed_calls"]) == (0, 1, 0)
    finally:
        r.execute_command("ACL", "DELUSER", "stats-user")
