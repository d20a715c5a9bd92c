"""TorchScript scripts calling `redis.execute`, `redis.asList` and `redisAI.model_execute`, as on RedisAI 1.2."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from tests.runtime.conftest import Backing, Runtime, error_of
from tests.runtime.models import add_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)

SIGNATURE = "(tensors: List[Tensor], keys: List[str], args: List[str])"
SOURCE = f"""
def set_get{SIGNATURE}:
    redis.execute("SET", keys[0], args[0])
    return torch.tensor(int(str(redis.execute("GET", keys[0]))))

def incr{SIGNATURE}:
    return torch.tensor(int(str(redis.execute("INCR", keys[0]))))

def push_only{SIGNATURE}:
    for value in args:
        redis.execute("RPUSH", keys[0], value)

def hash_values{SIGNATURE}:
    redis.execute("HSET", [keys[0], "f1", args[0], "f2", args[1]])
    values = redis.asList(redis.execute("HVALS", keys[0]))
    return torch.cat([torch.tensor(int(str(v))).reshape(1, 1) for v in values], dim=0)

def missing_value{SIGNATURE}:
    redis.execute("SET", keys[0])

def wrong_type{SIGNATURE}:
    redis.execute("RPUSH", keys[0], "x")

def owned{SIGNATURE}:
    redis.execute("AI.TENSORGET", keys[0], "VALUES")

def push_arg{SIGNATURE}:
    redis.execute("RPUSH", args[0], "x")

def run_model{SIGNATURE}:
    return redisAI.model_execute(keys[0], [tensors[0], tensors[0] * 10], 1)
"""
ENTRY_POINTS = ["set_get", "incr", "push_only", "hash_values", "missing_value", "wrong_type", "owned", "push_arg",
                "run_model"]  # fmt: skip


def _store(client: redis.Redis, key: str = "calls") -> str:
    reply = client.execute_command(
        "AI.SCRIPTSTORE", key, "CPU", "ENTRY_POINTS", len(ENTRY_POINTS), *ENTRY_POINTS, "SOURCE", SOURCE
    )
    assert reply == b"OK"
    return key


@pytest.fixture
def script(r: redis.Redis) -> str:
    return _store(r)


def test_a_script_writes_and_reads_redis_keys(r: redis.Redis, script: str) -> None:
    r.delete("k", "n", "l")
    assert r.execute_command("AI.SCRIPTEXECUTE", script, "set_get", "KEYS", 1, "k", "ARGS", 1, 41, "OUTPUTS", 1, "y")
    assert r.get("k") == b"41"
    # A scalar keeps RedisAI's shape [] (no dimension), not [1].
    assert r.execute_command("AI.TENSORGET", "y", "META", "VALUES") == [b"dtype", b"INT64", b"shape", [], b"values",
                                                                         [41]]  # fmt: skip
    r.set("n", 6)
    r.execute_command("AI.SCRIPTEXECUTE", script, "incr", "KEYS", 1, "n", "OUTPUTS", 1, "y")
    assert r.execute_command("AI.TENSORGET", "y", "VALUES") == [7]
    # A function that returns nothing still runs its calls (the compiler keeps them) and answers OK.
    assert r.execute_command("AI.SCRIPTEXECUTE", script, "push_only", "KEYS", 1, "l", "ARGS", 2, "a", "b") == b"OK"
    assert r.lrange("l", 0, -1) == [b"a", b"b"]


def test_list_replies_reach_the_script_through_as_list(r: redis.Redis, script: str) -> None:
    r.delete("h")
    r.execute_command("AI.SCRIPTEXECUTE", script, "hash_values", "KEYS", 1, "h", "ARGS", 2, 3, 4, "OUTPUTS", 1, "y")
    assert r.hgetall("h") == {b"f1": b"3", b"f2": b"4"}
    assert r.execute_command("AI.TENSORGET", "y", "META", "VALUES") == [b"dtype", b"INT64", b"shape", [2, 1],
                                                                         b"values", [3, 4]]  # fmt: skip


def test_redis_errors_fail_the_script_with_redisai_text(r: redis.Redis, script: str) -> None:
    r.delete("h")
    r.hset("h", "f", "v")
    message = error_of(r, "AI.SCRIPTEXECUTE", script, "wrong_type", "KEYS", 1, "h")
    assert "Redis command returned an error: WRONGTYPE Operation against a key holding the wrong kind of value" in (
        message
    )
    assert "At:" not in message and ".py(" not in message  # no Python frames of the runtime
    message = error_of(r, "AI.SCRIPTEXECUTE", script, "missing_value", "KEYS", 1, "k")
    # RedisModule_Call's errno text as RedisAI reports it, then Redis' own reply.
    assert "Redis command returned an error: Invalid argument (ERR wrong number of arguments for 'set' command)" in (
        message
    )
    message = error_of(r, "AI.SCRIPTEXECUTE", script, "owned", "KEYS", 1, "k")
    assert "cannot run AI.TENSORGET from a TorchScript script" in message


def test_a_script_runs_a_model_on_its_own_thread(r: redis.Redis, script: str) -> None:
    """One worker per queue (the default): the model runs on the script's thread, not behind it in the queue."""
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    assert r.execute_command("AI.SCRIPTEXECUTE", script, "run_model", "KEYS", 1, "m", "INPUTS", 1, "a",
                             "OUTPUTS", 1, "c") == b"OK"  # fmt: skip
    got = np.array(r.execute_command("AI.TENSORGET", "c", "VALUES"), dtype=float)
    np.testing.assert_array_equal(got, [11, 22])
    message = error_of(r, "AI.SCRIPTEXECUTE", script, "run_model", "KEYS", 1, "nope", "INPUTS", 1, "a", "OUTPUTS",
                       1, "c")  # fmt: skip
    assert "ERR model key is empty" in message


def test_a_script_in_a_dag_calls_redis_too(r: redis.Redis, script: str) -> None:
    reply = r.execute_command("AI.DAGEXECUTE", "ROUTING", "k", "|>", "AI.SCRIPTEXECUTE", script, "set_get", "KEYS", 1,
                              "k", "ARGS", 1, 5, "OUTPUTS", 1, "y", "|>", "AI.TENSORGET", "y", "VALUES")  # fmt: skip
    assert reply == [b"OK", [5]]
    assert r.get("k") == b"5"


def test_scripts_name_only_torch_redis_and_redisai(r: redis.Redis) -> None:
    source = f"def f{SIGNATURE}:\n    return np.zeros(1)\n"
    message = error_of(r, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "f", "SOURCE", source)
    assert "undefined value np" in message


@pytest.fixture
def limited(backing: Backing, runtime: Runtime) -> Iterator[redis.Redis]:
    admin = redis.Redis(port=backing.port)
    admin.execute_command("ACL", "SETUSER", "calls-limited", "reset", "on", ">calls-pw", "~limited:*", "+@all")
    client = redis.Redis(port=runtime.port, username="calls-limited", password="calls-pw", protocol=2)
    yield client
    client.close()
    admin.execute_command("ACL", "DELUSER", "calls-limited")
    admin.close()


def test_a_script_calls_redis_as_the_client_acl_user(r: redis.Redis, limited: redis.Redis) -> None:
    script = _store(limited, "limited:calls")
    assert limited.execute_command("AI.SCRIPTEXECUTE", script, "set_get", "KEYS", 1, "limited:k", "ARGS", 1, 3,
                                   "OUTPUTS", 1, "limited:y") == b"OK"  # fmt: skip
    assert r.get("limited:k") == b"3"
    r.delete("other:k")
    # A key the script names itself (not in KEYS, which the runtime checks first) is checked at the call.
    with pytest.raises(redis.ResponseError) as refused:
        limited.execute_command("AI.SCRIPTEXECUTE", script, "push_arg", "KEYS", 1, "limited:k", "ARGS", 1, "other:k")
    assert (
        "Redis command returned an error: NOPERM this user has no permissions to access the 'other:k' key used by "
        "'rpush'" in str(refused.value)
    )
    assert r.exists("other:k") == 0
    # ACL LOG holds it, as a module's call refused for the user it ran as (Redis' `module` context).
    entries = [dict(zip(e[::2], e[1::2], strict=True)) for e in r.execute_command("ACL", "LOG")]
    entry = next(e for e in entries if e[b"object"] == b"other:k")
    assert (entry[b"reason"], entry[b"context"], entry[b"username"]) == (b"key", b"module", b"calls-limited")
    assert b" cmd=rpush " in entry[b"client-info"] and entry[b"client-info"].endswith(b"resp=2")
