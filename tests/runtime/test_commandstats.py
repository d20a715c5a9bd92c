"""INFO commandstats through the runtime: its own commands (AI.*, RG.*) counted as Redis counts module commands."""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import wait_for
from tests.runtime.gears_helpers import pyexecute, rg
from tests.runtime.models import add_model

__all__ = ["rg"]


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
    calls = {name: line["calls"] for name, line in r.info("commandstats").items()}
    processed = r.info("stats")["total_commands_processed"]  # every call counted, and the INFO just before
    assert sum(calls.values()) + 1 <= processed <= sum(calls.values()) + 2  # (+1: a look of the runtime's own)
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


def _calls(client: redis.Redis) -> dict[str, int]:
    """Calls by command, but INFO's: the runtime's own 5-second look may be on its way when Redis is asked."""
    return {
        k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items() if k != "cmdstat_info"
    }


def test_what_the_runtime_sends_for_itself_is_not_counted_as_commands(r: redis.Redis, direct: redis.Redis) -> None:
    """RedisAI stores through the module API, which Redis does not count: 100 AI.TENSORSETs are 100 calls of
    `ai.tensorset`, not also 100 `set`s, and the checked commit's EVALSHA, the calls of its script and the
    fences are not the client's. What clients send stays counted, whatever the runtime also sent by that name."""
    r.execute_command("CONFIG", "RESETSTAT")
    for n in range(4):  # two first writes (the checked commit, a Lua script) and two overwrites (a plain SET)
        r.execute_command("AI.TENSORSET", f"stats:own{n % 2}", "FLOAT", 1, "VALUES", n)
    r.execute_command("AI.MODELSTORE", "stats:m", "ONNX", "CPU", "BLOB", add_model(("N",)))
    r.execute_command("AI.MODELEXECUTE", "stats:m", "INPUTS", 2, "stats:own0", "stats:own0", "OUTPUTS", 1, "stats:out")
    assert r.execute_command("AI.TENSORGET", "stats:out", "VALUES") == [b"4"]
    assert r.type("stats:own0") == b"AI_TENSOR" and r.type("stats:none") == b"none"
    r.set("stats:plain", "v")  # the client's own SET and DEL, counted as Redis counts them
    assert r.exists("stats:own1") == 1 and r.delete("stats:own1", "stats:plain") == 2
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.execute_command("AI.TENSORGET", "stats:m", "VALUES")
    assert _calls(r) == {
        "config|resetstat": 1, "ai.tensorset": 4, "ai.modelstore": 1, "ai.modelexecute": 1, "ai.tensorget": 2,
        "type": 2, "set": 1, "exists": 1, "del": 1,
    }  # fmt: skip
    assert _errorstats(r) == {"WRONGTYPE": 1}
    processed = r.info("stats")["total_commands_processed"]
    assert 14 + 1 <= processed <= 14 + 2  # the calls above and INFO commandstats (+1: the runtime's own look)
    # The backing Redis itself ran all that was sent for them.
    theirs = {k.removeprefix("cmdstat_"): v["calls"] for k, v in direct.info("commandstats").items()}
    assert theirs["set"] >= 1 + 4 and theirs["evalsha"] + theirs.get("eval", 0) >= 2 and theirs["rename"] >= 2


def test_owned_commands_in_a_transaction_count_when_exec_runs_them(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "stats:m", "ONNX", "CPU", "BLOB", add_model(("N",)))
    r.execute_command("CONFIG", "RESETSTAT")
    pipe = r.pipeline(transaction=True)
    pipe.execute_command("AI.TENSORSET", "stats:tx", "FLOAT", 1, "VALUES", 1)
    pipe.execute_command("AI.TENSORGET", "stats:tx", "VALUES")
    pipe.execute_command("AI.TENSORGET", "stats:absent", "VALUES")
    pipe.execute_command("AI.MODELEXECUTE", "stats:m", "INPUTS", 2, "stats:tx", "stats:tx", "OUTPUTS", 1, "stats:o")
    replies = pipe.execute(raise_on_error=False)
    assert replies[:2] == [b"OK", [b"1"]] and isinstance(replies[2], redis.ResponseError)
    assert "within a transaction" in str(replies[3])  # RedisAI refuses runs inside MULTI: a failed call
    stats = {k: (v["calls"], v["failed_calls"]) for k, v in _stats(r).items()}
    assert stats == {"cmdstat_ai.tensorset": (1, 0), "cmdstat_ai.tensorget": (2, 1), "cmdstat_ai.modelexecute": (1, 1)}
    assert _errorstats(r) == {"ERR": 2}  # the tensorget's once (not also the step queued for it), the run's
    assert {"multi", "exec"} <= set(_calls(r)) and "eval" not in _calls(r)


def test_the_runtimes_own_errors_are_not_filed_as_the_clients(r: redis.Redis, direct: redis.Redis) -> None:
    """After SCRIPT FLUSH on the backing Redis, the checked commit's EVALSHA answers NOSCRIPT and the runtime
    sends the script again: Redis files that error; no client got it."""
    r.execute_command("AI.TENSORSET", "stats:first", "FLOAT", 1, "VALUES", 1)  # the commit's script is loaded
    direct.script_flush()
    r.execute_command("CONFIG", "RESETSTAT")
    r.execute_command("AI.TENSORSET", "stats:second", "FLOAT", 1, "VALUES", 1)
    assert _errorstats(direct) == {"NOSCRIPT": 1}
    assert _errorstats(r) == {} and r.info("stats")["total_error_replies"] == 0
    assert "cmdstat_evalsha" not in r.info("commandstats") and "cmdstat_eval" not in r.info("commandstats")


def test_instantaneous_ops_per_sec_counts_the_owned_commands(r: redis.Redis, direct: redis.Redis) -> None:
    """AI.TENSORGET of a tensor memory holds never reaches the backing Redis, whose rate alone read ~0; and an
    overwrite is one SET there, which the runtime's rate replaces rather than adds to. Compared with the
    client's own rate in the same seconds (Redis' figure is a 1.6 s average), not with a fixed speed."""
    r.execute_command("AI.TENSORSET", "stats:fast", "FLOAT", 1, "VALUES", 1)
    for command in (("AI.TENSORGET", "stats:fast", "VALUES"), ("AI.TENSORSET", "stats:fast", "FLOAT", 1, "VALUES", 2)):
        calls, began = 0, time.monotonic()
        while time.monotonic() - began < 2.0:
            r.execute_command(*command)
            calls += 1
        rate = calls / (time.monotonic() - began)
        shown, backing = r.info("stats")["instantaneous_ops_per_sec"], direct.info("stats")["instantaneous_ops_per_sec"]
        assert rate / 2 <= shown <= rate * 1.5, (command[0], rate, shown)
        if command[0] == "AI.TENSORGET":  # answered from memory: the backing Redis saw next to nothing
            assert backing < rate / 4, (rate, backing)


def test_redis_lines_are_taken_apart_from_the_runtimes_own_calls() -> None:
    from gearcam.runtime.commandstats import OwnCalls

    own = OwnCalls()
    own.sent((b"SET", b"k", b"v"))
    own.sent((b"set", b"k", b"v"))
    own.answered(own.sent((b"CONFIG", b"GET", b"notify-keyspace-events")), b"*0\r\n")
    own.answered(own.sent((b"PUBLISH", b"c", b"m")), b"-NOPERM this user has no permissions\r\n")
    lines = (
        "cmdstat_set:calls=5,usec=100,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\n"
        "cmdstat_config|get:calls=1,usec=7,usec_per_call=7.00,rejected_calls=0,failed_calls=0\r\n"
        "cmdstat_publish:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n"
        "cmdstat_get:calls=2,usec=4,usec_per_call=2.00,rejected_calls=0,failed_calls=1\r\n"
    )
    assert own.taken_from(lines) == (
        "cmdstat_set:calls=3,usec=60,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\n"  # its share of time
        "cmdstat_get:calls=2,usec=4,usec_per_call=2.00,rejected_calls=0,failed_calls=1\r\n"
    )
    assert own.total_calls() == 3 and dict(own.errors) == {"NOPERM": 1}
    # A script's own calls count once it ran, whatever it answered; not when Redis never ran it.
    own.reset()
    own.script(b"sha", b"source", lambda args, frame: (b"rename",) * int(args[2]))
    for reply in (b"+OK\r\n", b"-WRONGTYPE refused by the script\r\n", b"-NOSCRIPT No matching\r\n", b"-NOPERM no\r\n"):
        own.answered(own.sent((b"EVALSHA", b"sha", b"2")), reply)
    assert own.calls == {b"EVALSHA": 3, b"rename": 4} and own.failed == {b"EVALSHA": 2}


def test_an_error_is_filed_under_its_first_word_as_redis_files_it() -> None:
    from gearcam.runtime.commandstats import error_code
    from gearcam.runtime.resp import ErrorReply

    assert error_code(ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")) == "WRONGTYPE"
    assert error_code(ErrorReply("ERR tensor key is empty or in a different shard")) == "ERR"
    assert error_code(ErrorReply("X" * 30 + " within Redis' 32 characters")) == "X" * 30
    assert error_code(ErrorReply("X" * 31 + " past them")) == "ERR"
    assert error_code(ErrorReply("OOM")) == "ERR"  # no space: Redis' fallback


def test_a_stream_readers_own_bookkeeping_is_left_out_and_what_redisgears_also_sends_is_counted(
    rg: redis.Redis,
) -> None:
    """RedisGears' StreamReader calls XREADGROUP, XACK and XTRIM with RM_Call, which Redis counts; the
    runtime's looks at the stream between batches (XINFO, XPENDING, XLEN, its MULTI with a mark) are its own."""
    pyexecute(
        rg,
        "GB('StreamReader').foreach(lambda x: execute('SET', 'stats:seen', x['id']))"
        ".register('stats:stream', mode='sync')",
    )
    rg.execute_command("CONFIG", "RESETSTAT")
    last = None
    for n in range(5):
        last = rg.xadd("stats:stream", {"n": n})
    wait_for(lambda: rg.get("stats:seen") == last, "the registration ran on the last entry")
    names = set(rg.info("commandstats"))
    assert {"cmdstat_xadd", "cmdstat_xreadgroup", "cmdstat_xack", "cmdstat_set"} <= names, names
    own = {"cmdstat_xinfo|groups", "cmdstat_xinfo|stream", "cmdstat_xpending", "cmdstat_xlen", "cmdstat_multi",
           "cmdstat_exec", "cmdstat_publish"}  # fmt: skip
    assert not names & own, names & own
    rg.delete("stats:stream", "stats:seen")


def test_a_keys_readers_reads_of_the_key_are_left_out(rg: redis.Redis) -> None:
    """RedisGears reads a KeysReader record's key through the module API: its type and value cause no command."""
    pyexecute(rg, "GB().foreach(lambda x: None).register('stats:k*', mode='sync', keyTypes=['string', 'hash'])")
    rg.execute_command("CONFIG", "RESETSTAT")
    for n in range(3):
        rg.set(f"stats:k{n}", n)  # a sync registration: it ran before the reply
    rg.hset("stats:khash", "f", "v")
    stats = rg.info("commandstats")
    assert (stats["cmdstat_set"]["calls"], stats["cmdstat_hset"]["calls"]) == (3, 1)
    reads = {"cmdstat_get", "cmdstat_hgetall", "cmdstat_type", "cmdstat_getrange", "cmdstat_object|encoding",
             "cmdstat_eval", "cmdstat_multi", "cmdstat_exec", "cmdstat_publish"}  # fmt: skip
    assert not set(stats) & reads, {name: stats[name] for name in set(stats) & reads}
    rg.delete("stats:k0", "stats:k1", "stats:k2", "stats:khash")


def test_gears_codes_calls_of_the_modules_commands_are_counted(rg: redis.Redis) -> None:
    """Redis counts what RM_Call runs: an execute('AI.…') or execute('RG.…') from Gears code is a call of that
    command, as the relayed commands of Gears code are counted by the backing Redis."""
    rg.execute_command("CONFIG", "RESETSTAT")
    code = (
        "def calls(_):\n"
        "    execute('AI.TENSORSET', 'stats:gears-t', 'FLOAT', 1, 'VALUES', 1)\n"
        "    try:\n"
        "        execute('AI.TENSORGET', 'stats:gears-absent', 'VALUES')\n"
        "    except Exception:\n"
        "        pass\n"
        "    return execute('AI.TENSORGET', 'stats:gears-t', 'VALUES')\n"
        "GB('ShardsIDReader').map(calls).run()\n"
    )
    assert pyexecute(rg, code) == [[b"['1']"], []]
    stats = {k: (v["calls"], v["failed_calls"]) for k, v in _stats(rg).items()}
    assert stats == {"cmdstat_ai.tensorset": (1, 0), "cmdstat_ai.tensorget": (2, 1), "cmdstat_rg.pyexecute": (1, 0)}
    rg.delete("stats:gears-t")
