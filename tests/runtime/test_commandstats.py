"""INFO commandstats through the runtime: its own commands (AI.*, RG.*) counted as Redis counts module commands."""

from __future__ import annotations

import pytest
import redis


def _stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    return {k: v for k, v in client.info("commandstats").items() if k.startswith(("cmdstat_ai.", "cmdstat_rg."))}


def test_owned_commands_are_counted_with_their_errors_and_reset_with_redis_own(
    r: redis.Redis, direct: redis.Redis
) -> None:
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
    before = direct.info("stats")["total_commands_processed"]
    processed = r.info("stats")["total_commands_processed"]  # the backing Redis' total, and the 4 owned calls
    after = direct.info("stats")["total_commands_processed"]
    assert before + 1 <= processed - 4 <= after
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


def _errorstats(client: redis.Redis) -> dict[str, int]:
    return {k.removeprefix("errorstat_"): v["count"] for k, v in client.info("errorstats").items()}


def test_the_owned_commands_error_replies_are_filed_by_code_with_redis_own(
    r: redis.Redis, server_url: str, direct: redis.Redis
) -> None:
    r.execute_command("CONFIG", "RESETSTAT")
    r.set("stats:plain", "v")
    for args in (("AI.TENSORGET", "stats:absent"), ("AI.TENSORGET", "stats:plain"), ("GET", "stats:a", "b")):
        with pytest.raises(redis.ResponseError):
            r.execute_command(*args)  # ERR (RedisAI's), WRONGTYPE (RedisAI's), ERR (Redis' own: arity)
    r.execute_command("ACL", "SETUSER", "stats-user", "reset", "on", ">pw", "~stats:*", "+@all")
    try:
        user = redis.Redis.from_url(server_url, username="stats-user", password="pw", socket_timeout=30)
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.execute_command("AI.TENSORGET", "elsewhere")  # refused: counted too, as Redis counts it
        user.close()
    finally:
        r.execute_command("ACL", "DELUSER", "stats-user")
    # The backing Redis filed the relayed GET's arity error (and what clients' own commands got wrong, e.g.
    # redis-py's handshake); the runtime adds its own commands' replies to its codes.
    theirs = _errorstats(direct)
    assert "WRONGTYPE" not in theirs and "NOPERM" not in theirs
    ours = {"ERR": 1, "WRONGTYPE": 1, "NOPERM": 1}
    assert _errorstats(r) == {code: theirs.get(code, 0) + ours.get(code, 0) for code in {*theirs, *ours}}
    assert list(r.info("errorstats")) == sorted(r.info("errorstats"))  # in code order, as Redis lists them
    assert r.info("stats")["total_error_replies"] == direct.info("stats")["total_error_replies"] + 3
    assert r.info("everything")["errorstat_WRONGTYPE"] == {"count": 1}
    r.execute_command("CONFIG", "RESETSTAT")
    assert _errorstats(r) == {} and r.info("stats")["total_error_replies"] == 0


def test_an_error_is_filed_under_its_first_word_as_redis_files_it() -> None:
    from gearcam.runtime.commandstats import error_code
    from gearcam.runtime.resp import ErrorReply

    assert error_code(ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")) == "WRONGTYPE"
    assert error_code(ErrorReply("ERR tensor key is empty or in a different shard")) == "ERR"
    assert error_code(ErrorReply("X" * 30 + " within Redis' 32 characters")) == "X" * 30
    assert error_code(ErrorReply("X" * 31 + " past them")) == "ERR"
    assert error_code(ErrorReply("OOM")) == "ERR"  # no space: Redis' fallback
