"""Transactions with AI.*/RG.* commands are all or nothing (issue 14, item 7; docs/runtime.md).

The runtime cannot run its own commands inside the backing Redis' transaction, so one inside
MULTI is refused when queued, with the reason, and EXEC discards the whole transaction, as
Redis does for a command it cannot queue. Nothing of it is written. Execution commands
(AI.MODELEXECUTE and the like) are the exception: RedisAI refuses them inside MULTI before
anything else, so they are QUEUED and EXEC holds that error in their place (test_ai_model.py).
"""

from __future__ import annotations

import pytest
import redis

from tests.runtime.conftest import RawClient, RawError
from tests.runtime.models import add_model


@pytest.fixture
def client(r: redis.Redis) -> RawClient:
    kwargs = r.connection_pool.connection_kwargs
    return RawClient(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))


def test_a_transaction_with_ai_commands_commits_nothing(client: RawClient, r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    assert client.call("MULTI") == b"OK"
    assert client.call("SET", "a", "1") == b"QUEUED"
    tensorset = client.call("AI.TENSORSET", "t", "FLOAT", 1, 2, "VALUES", 1, 2)
    assert isinstance(tensorset, RawError)
    assert str(tensorset) == (
        "ERR the gearcam runtime cannot run AI.TENSORSET inside MULTI; the transaction is discarded: "
        "send it before MULTI or after EXEC"
    )
    assert client.call("SET", "b", "2") == b"QUEUED"
    exec_reply = client.call("EXEC")
    assert isinstance(exec_reply, RawError)
    assert str(exec_reply).startswith("EXECABORT Transaction discarded because of previous errors")
    assert r.exists("a", "b", "t", "c") == 0
    assert client.call("PING") == b"PONG"  # the connection is out of the transaction and usable
    client.close()


@pytest.mark.parametrize(
    "command",
    [("RG.DUMPREGISTRATIONS",), ("AI.TENSORGET", "t"), ("AI.INFO", "m")],
)
def test_any_owned_command_discards_the_transaction(client: RawClient, r: redis.Redis, command: tuple[str]) -> None:
    client.call("MULTI")
    client.call("INCR", "n")
    assert isinstance(client.call(*command), RawError)
    assert str(client.call("EXEC")).startswith("EXECABORT")
    assert r.get("n") is None
    client.close()


def test_rg_pyexecute_is_queued_and_refused_at_exec_as_redisgears_does(client: RawClient, r: redis.Redis) -> None:
    # Redis queues a module command; at EXEC RedisGears answers that Gears cannot run there, and the
    # rest of the transaction commits.
    client.call("MULTI")
    assert client.call("INCR", "n") == b"QUEUED"
    assert client.call("RG.PYEXECUTE", "GB().run()") == b"QUEUED"
    assert client.call("INCR", "n") == b"QUEUED"
    first, refused, second = client.call("EXEC")
    assert (first, second) == (1, 2)
    assert str(refused) == "Can not run gears inside a multi exec, lua, or when blocking is not allowed"
    assert r.get("n") == b"2"
    client.close()


def test_redis_py_transactions_raise_the_reason_and_write_nothing(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.set("a", 1)
    pipe.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
    pipe.set("b", 2)
    with pytest.raises(redis.ResponseError, match="cannot run AI.TENSORSET inside MULTI"):
        pipe.execute()
    assert r.exists("a", "b", "t") == 0


def test_plain_and_amended_commands_still_commit_together(client: RawClient, r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
    client.call("MULTI")
    for args in (("SET", "a", "1"), ("TYPE", "t"), ("INFO", "server"), ("SET", "b", "2")):
        assert client.call(*args) == b"QUEUED"
    reply = client.call("EXEC")
    assert isinstance(reply, list) and reply[0] == b"OK" and reply[1] == b"string" and reply[3] == b"OK"
    assert r.mget("a", "b") == [b"1", b"2"]
    client.close()


def test_discard_after_a_refused_command_leaves_the_connection_usable(client: RawClient, r: redis.Redis) -> None:
    client.call("MULTI")
    client.call("AI.TENSORGET", "t")
    assert client.call("DISCARD") == b"OK"
    assert client.call("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 4) == b"OK"
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"4"]
    client.close()
