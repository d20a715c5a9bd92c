"""Transactions with AI.*/RG.* commands (issue 14, item 7; docs/runtime.md, "`AI.*` and `RG.*` inside `MULTI`").

AI.TENSORSET, AI.TENSORGET, AI.MODELSTORE/GET/DEL and AI.SCRIPTSTORE/GET/DEL inside MULTI are queued in the
client's transaction and applied at EXEC in their place, atomically with the rest, as RedisAI's are (redisai-py's pipelines are
transactions by default); their argument errors are their replies in EXEC's, and the rest
commits. Other owned commands the runtime cannot run inside the backing Redis' transaction:
one inside MULTI is refused when queued, with the reason, and EXEC discards the whole
transaction, as Redis does for a command it cannot queue. Execution commands (AI.MODELEXECUTE
and the like) are QUEUED and EXEC holds RedisAI's error in their place (test_ai_model.py).
"""

from __future__ import annotations

import importlib.util
import time

import pytest
import redis

from tests.runtime.conftest import RawClient, RawError, Runtime
from tests.runtime.models import add_model


@pytest.fixture
def client(r: redis.Redis) -> RawClient:
    kwargs = r.connection_pool.connection_kwargs
    return RawClient(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))


def test_a_transaction_with_an_owned_command_it_cannot_queue_commits_nothing(client: RawClient, r: redis.Redis) -> None:
    assert client.call("MULTI") == b"OK"
    assert client.call("SET", "a", "1") == b"QUEUED"
    assert client.call("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1) == b"QUEUED"
    refused = client.call("RG.CLEARREGISTRATIONSSTATS")
    assert isinstance(refused, RawError)
    assert str(refused) == (
        "ERR the gearcam runtime cannot run RG.CLEARREGISTRATIONSSTATS inside MULTI; the transaction is discarded: "
        "send it before MULTI or after EXEC"
    )
    assert client.call("SET", "b", "2") == b"QUEUED"
    exec_reply = client.call("EXEC")
    assert isinstance(exec_reply, RawError)
    assert str(exec_reply).startswith("EXECABORT Transaction discarded because of previous errors")
    assert r.exists("a", "b", "t") == 0
    assert client.call("PING") == b"PONG"  # the connection is out of the transaction and usable
    client.close()


@pytest.mark.parametrize(
    "command",
    [("RG.CLEARREGISTRATIONSSTATS",), ("RG.GETRESULTSBLOCKING", "x"), ("RG.PAUSEREGISTRATIONS",)],
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
    pipe.execute_command("RG.ABORTEXECUTION", "x")
    pipe.set("b", 2)
    with pytest.raises(redis.ResponseError, match="cannot run RG.ABORTEXECUTION inside MULTI"):
        pipe.execute()
    assert r.exists("a", "b") == 0


def test_plain_and_amended_commands_still_commit_together(client: RawClient, r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
    client.call("MULTI")
    for args in (("SET", "a", "1"), ("TYPE", "t"), ("INFO", "server"), ("SET", "b", "2")):
        assert client.call(*args) == b"QUEUED"
    reply = client.call("EXEC")
    assert isinstance(reply, list) and reply[0] == b"OK" and reply[1] == b"AI_TENSOR" and reply[3] == b"OK"
    assert r.mget("a", "b") == [b"1", b"2"]
    client.close()


def test_discard_after_a_refused_command_leaves_the_connection_usable(client: RawClient, r: redis.Redis) -> None:
    client.call("MULTI")
    client.call("RG.CLEARREGISTRATIONSSTATS")
    assert client.call("DISCARD") == b"OK"
    assert client.call("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 4) == b"OK"
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"4"]
    client.close()


# AI.TENSORSET and AI.TENSORGET: queued in the transaction, applied at EXEC in their place ----------------------


def test_tensors_written_and_read_inside_a_transaction_apply_at_exec_in_order(
    client: RawClient, r: redis.Redis
) -> None:
    assert client.call("MULTI") == b"OK"
    for args in (
        ("INCR", "n"),
        ("AI.TENSORSET", "t", "FLOAT", 1, 2, "VALUES", 1, 2),
        ("AI.TENSORGET", "t", "VALUES"),
        ("AI.TENSORGET", "t", "META"),
        ("DEL", "t"),
        ("AI.TENSORGET", "t", "META"),
        ("AI.TENSORSET", "t", "INT8", 1, "VALUES", 7),
    ):
        assert client.call(*args) == b"QUEUED"
        assert r.exists("t") == 0 and r.get("n") is None  # nothing applied before EXEC
    incr, stored, values, meta, deleted, empty, again = client.call("EXEC")
    assert (incr, stored, values, deleted, again) == (1, b"OK", [b"1", b"2"], 1, b"OK")
    assert meta == [b"dtype", b"FLOAT", b"shape", [1, 2]]
    assert isinstance(empty, RawError) and str(empty) == "ERR tensor key is empty or in a different shard"
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [7]
    assert r.type("t") == b"AI_TENSOR"
    client.close()


def test_refused_arguments_answer_in_their_place_as_outside_a_transaction(
    client: RawClient, r: redis.Redis, server_url: str
) -> None:
    r.rpush("list", "x")
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
    commands = [
        ("AI.TENSORSET", "t", "FLOAT8", 1),  # no such type
        ("AI.TENSORSET", "t", "FLOAT", 2, "VALUES", 1),  # too few values
        ("AI.TENSORSET", "list", "FLOAT", 1, "VALUES", 1),  # WRONGTYPE
        ("AI.TENSORSET", "list", "FLOAT8", 1),  # WRONGTYPE first: RedisAI opens the key before the arguments
        ("AI.TENSORSET", "t"),  # arity
        ("AI.TENSORGET", "list"),
        ("AI.TENSORGET", "t", "PNG"),
        ("AI.TENSORGET", "absent", "PNG"),  # the key first
        ("AI.TENSORGET", "t", "VALUES", "BLOB"),
    ]
    alone = RawClient(*_address(r))
    expected = [alone.call(*command) for command in commands]
    alone.close()
    assert all(isinstance(e, RawError) for e in expected), expected
    client.call("MULTI")
    for command in commands:
        client.call("INCR", "n")
        assert client.call(*command) == b"QUEUED"
    replies = client.call("EXEC")
    assert isinstance(replies, list)
    assert replies[0::2] == list(range(1, len(commands) + 1))  # the rest committed
    assert [str(e) for e in replies[1::2]] == [str(e) for e in expected]
    assert r.lrange("list", 0, -1) == [b"x"] and r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"1"]
    client.close()


def _address(r: redis.Redis) -> tuple[str, int]:
    kwargs = r.connection_pool.connection_kwargs
    return kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379)


def test_a_watched_key_changed_applies_nothing(client: RawClient, r: redis.Redis) -> None:
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
    assert client.call("WATCH", "t") == b"OK"
    r.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 2)  # another client
    client.call("MULTI")
    client.call("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 3)
    client.call("AI.TENSORGET", "t", "VALUES")
    assert client.call("EXEC") is None
    assert r.execute_command("AI.TENSORGET", "t", "VALUES") == [b"2"]
    client.close()


def test_what_the_runtime_remembered_of_a_tensor_gives_way_to_the_transactions_write(r: redis.Redis) -> None:
    """The runtime answers reads from memory while no key event says the key changed (ai/coherence.py):
    the transaction's write is such an event, on this client and on any other."""
    other = redis.Redis(connection_pool=redis.ConnectionPool(**r.connection_pool.connection_kwargs))
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    assert other.execute_command("AI.TENSORGET", "a", "VALUES") == [b"1", b"2"]  # now in memory
    pipe = r.pipeline()  # redis-py (and redisai-py) pipelines are transactions by default
    pipe.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 10, 20)
    pipe.execute_command("AI.TENSORGET", "a", "VALUES")
    pipe.set("b", 2)
    assert pipe.execute() == [b"OK", [b"10", b"20"], True]
    r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"20", b"40"]
    assert other.execute_command("AI.TENSORGET", "a", "VALUES") == [b"10", b"20"]
    other.close()


@pytest.mark.parametrize("login", [("HELLO", "2"), ("AUTH", "default", "anything")])
def test_an_owned_command_first_after_a_login_adds_nothing_to_the_transaction(
    client: RawClient, login: tuple[str, ...]
) -> None:
    # After AUTH or HELLO the runtime asks again whether the link is logged in: never inside MULTI, where
    # its PING would be queued and answered in EXEC's reply (it was, before 2026-12-06).
    client.call(*login)  # (AUTH without a password set is refused; the runtime asks again all the same)
    client.call("MULTI")
    assert client.call("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1) == b"QUEUED"
    assert client.call("EXEC") == [b"OK"]
    client.close()


def test_a_restricted_users_ai_commands_are_steps_of_its_transaction(
    runtime: Runtime, direct: redis.Redis, r: redis.Redis
) -> None:
    # The step runs as the user on its own link: its key rules and the step's commands are Redis' to check.
    direct.execute_command("ACL", "SETUSER", "tx-limited", "reset", "on", ">tx-pw", "~limited:*", "+@all")
    try:
        client = RawClient("127.0.0.1", runtime.port)
        assert client.call("AUTH", "tx-limited", "tx-pw") == b"OK"
        client.call("MULTI")
        for args in (
            ("AI.TENSORSET", "limited:t", "FLOAT", 2, "VALUES", 1, 2), ("AI.TENSORGET", "limited:t", "VALUES"),
            ("AI.MODELSTORE", "limited:m", "ONNX", "CPU", "BLOB", add_model()), ("SET", "limited:s", "v"),
        ):  # fmt: skip
            assert client.call(*args) == b"QUEUED"
        assert client.call("EXEC") == [b"OK", [b"1", b"2"], b"OK", b"OK"]
        assert r.execute_command("AI.TENSORGET", "limited:t", "VALUES") == [b"1", b"2"]
        assert r.execute_command("AI.INFO", "limited:m")[1] == b"limited:m"
        client.call("MULTI")
        refused = client.call("AI.TENSORSET", "other:t", "FLOAT", 1, "VALUES", 1)  # the user's key rules
        assert str(refused) == "NOPERM this user has no permissions to access the 'other:t' key used by 'ai.tensorset'"
        assert str(client.call("EXEC")).startswith("EXECABORT")
        assert r.exists("other:t") == 0
        client.close()
    finally:
        direct.execute_command("ACL", "DELUSER", "tx-limited")


def test_a_user_that_may_not_run_the_step_is_refused_inside_multi_naming_the_rights(
    runtime: Runtime, direct: redis.Redis, r: redis.Redis
) -> None:
    direct.execute_command("ACL", "SETUSER", "tx-noscript", "reset", "on", ">tx-pw", "~*", "+@all", "-@scripting")
    try:
        client = RawClient("127.0.0.1", runtime.port)
        assert client.call("AUTH", "tx-noscript", "tx-pw") == b"OK"
        assert client.call("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1) == b"OK"  # outside MULTI: its rights do
        client.call("MULTI")
        assert client.call("SET", "s", "v") == b"QUEUED"
        refused = client.call("AI.TENSORSET", "t2", "FLOAT", 1, "VALUES", 1)
        assert isinstance(refused, RawError)
        assert str(refused) == (
            "ERR the gearcam runtime runs AI.TENSORSET inside MULTI as a script step with the rights of user "
            "'tx-noscript', which Redis refuses (This user has no permissions to run the 'eval' command): the step "
            "needs EVAL, OBJECT ENCODING, TYPE and GETRANGE on its key; grant them or send AI.TENSORSET before "
            "MULTI or after EXEC; the transaction is discarded"
        )
        assert str(client.call("EXEC")).startswith("EXECABORT")
        assert r.exists("s", "t2") == 0
        client.close()
    finally:
        direct.execute_command("ACL", "DELUSER", "tx-noscript")


def test_a_resp3_client_gets_the_replies_it_gets_outside_a_transaction(server_url: str, r: redis.Redis) -> None:
    client = redis.Redis.from_url(server_url, protocol=3)
    client.execute_command("AI.TENSORSET", "t", "FLOAT", 2, "VALUES", 1.5, 2)
    alone = [client.execute_command("AI.TENSORGET", "t", *flags) for flags in (("VALUES",), ("META",), ())]
    pipe = client.pipeline()
    for flags in (("VALUES",), ("META",), ()):
        pipe.execute_command("AI.TENSORGET", "t", *flags)
    assert pipe.execute() == alone and alone[0] == [1.5, 2.0]
    client.close()


def test_type_inside_a_transaction_names_the_ai_types_at_its_point(client: RawClient, r: redis.Redis) -> None:
    r.rpush("list", "x")
    client.call("MULTI")
    for args in (
        ("TYPE", "t"), ("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1), ("TYPE", "t"), ("TYPE", "list"), ("DEL", "t"),
        ("TYPE", "t"),
    ):  # fmt: skip
        assert client.call(*args) == b"QUEUED"
    assert client.call("EXEC") == [b"none", b"OK", b"AI_TENSOR", b"list", 1, b"none"]
    client.call("MULTI")
    assert isinstance(client.call("TYPE"), RawError)  # Redis' own arity check, at queue time
    assert str(client.call("EXEC")).startswith("EXECABORT")
    client.close()


@pytest.mark.parametrize(("rules", "answer"), [(("+@all",), b"AI_TENSOR"), (("+@all", "-@scripting"), b"string")])
def test_type_inside_a_restricted_users_transaction(
    runtime: Runtime, direct: redis.Redis, r: redis.Redis, rules: tuple[str, ...], answer: bytes
) -> None:
    # RedisAI's type name where the user may run the step; else TYPE is relayed as it is, Redis' own answer.
    r.execute_command("AI.TENSORSET", "limited:t", "FLOAT", 1, "VALUES", 1)
    user = f"tx-type-{len(rules)}"  # a user of its own: the runtime keeps ACL answers up to a second
    direct.execute_command("ACL", "SETUSER", user, "reset", "on", ">tx-pw", "~limited:*", *rules)
    try:
        client = RawClient("127.0.0.1", runtime.port)
        client.call("AUTH", user, "tx-pw")
        client.call("MULTI")
        assert client.call("TYPE", "limited:t") == b"QUEUED"
        assert client.call("EXEC") == [answer]
        client.close()
    finally:
        direct.execute_command("ACL", "DELUSER", user)


def test_models_read_and_deleted_inside_a_transaction(client: RawClient, r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "TAG", "v1", "BLOB", add_model())
    r.rpush("list", "x")
    alone = RawClient(*_address(r))
    meta, blob = alone.call("AI.MODELGET", "m", "META"), alone.call("AI.MODELGET", "m", "BLOB")
    alone.close()
    client.call("MULTI")
    for args in (
        ("AI.MODELGET", "m", "META"), ("AI.MODELGET", "m", "BLOB"), ("AI.MODELDEL", "m"), ("AI.MODELGET", "m"),
        ("AI.MODELDEL", "m"), ("AI.MODELDEL", "list"), ("AI.MODELDEL",),
    ):  # fmt: skip
        assert client.call(*args) == b"QUEUED"
    got_meta, got_blob, deleted, empty, again, wrongtype, arity = client.call("EXEC")
    assert (got_meta, got_blob, deleted) == (meta, blob, b"OK")
    assert [str(e) for e in (empty, again)] == ["ERR model key is empty"] * 2
    assert str(wrongtype).startswith("WRONGTYPE") and "wrong number of arguments" in str(arity)
    # The engine session went with the key: a run finds no model, a new one under the name runs.
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    with pytest.raises(redis.ResponseError, match="model key is empty"):
        r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]
    client.close()


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)
def test_scripts_read_and_deleted_inside_a_transaction(client: RawClient, r: redis.Redis) -> None:
    source = "def bar(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0]\n"
    r.execute_command("AI.SCRIPTSTORE", "s", "CPU", "TAG", "t1", "ENTRY_POINTS", 1, "bar", "SOURCE", source)
    alone = RawClient(*_address(r))
    expected = [alone.call("AI.SCRIPTGET", "s", *flags) for flags in ((), ("META",), ("SOURCE",))]
    alone.close()
    client.call("MULTI")
    for flags in ((), ("META",), ("SOURCE",)):
        client.call("AI.SCRIPTGET", "s", *flags)
    client.call("AI.SCRIPTDEL", "s")
    client.call("AI.SCRIPTGET", "s")
    *got, deleted, empty = client.call("EXEC")
    assert got == expected and deleted == b"OK" and str(empty) == "ERR script key is empty"
    assert r.exists("s") == 0
    client.close()


def test_ai_info_and_config_inside_a_transaction_answer_in_place(client: RawClient, r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    reads = [("AI.INFO", "m"), ("AI.CONFIG", "GET", "MODEL_CHUNK_SIZE"), ("AI._MODELSCAN",), ("AI.INFO", "absent")]
    alone = RawClient(*_address(r))
    expected = [alone.call(*command) for command in reads]
    alone.close()
    client.call("MULTI")
    assert client.call("INCR", "n") == b"QUEUED"
    for command in reads:
        assert client.call(*command) == b"QUEUED"
    incr, *got = client.call("EXEC")
    assert incr == 1 and [str(g) if isinstance(g, RawError) else g for g in got] == [
        str(e) if isinstance(e, RawError) else e for e in expected
    ]
    client.close()


def test_models_stored_inside_a_transaction_apply_at_exec_and_run_after(client: RawClient, r: redis.Redis) -> None:
    """AI.MODELSTORE inside MULTI loads the model when queued (a blob that does not parse is its error in
    EXEC's reply, as RedisAI loads before it opens the key) and writes it at EXEC, WRONGTYPE there; the
    stored model runs after EXEC, AI.INFO lists it, a later command of the transaction reads it."""
    r.rpush("list", "x")
    alone = RawClient(*_address(r))
    bad_blob = alone.call("AI.MODELSTORE", "bad", "ONNX", "CPU", "BLOB", "not a model")
    alone.close()
    assert client.call("MULTI") == b"OK"
    for args in (
        ("INCR", "n"),
        ("AI.MODELSTORE", "m", "ONNX", "CPU", "TAG", "v2", "BLOB", add_model()),
        ("AI.MODELGET", "m", "META"),
        ("AI.MODELSTORE", "bad", "ONNX", "CPU", "BLOB", "not a model"),
        ("AI.MODELSTORE", "list", "ONNX", "CPU", "BLOB", add_model()),
        ("AI.MODELSET", "old", "ONNX", "CPU", "BLOB", add_model()),
        ("INCR", "n"),
    ):
        assert client.call(*args) == b"QUEUED"
    first, stored, meta, bad, wrongtype, deprecated, second = client.call("EXEC")
    assert (first, stored, deprecated, second) == (1, b"OK", b"OK", 2)
    assert isinstance(meta, list) and meta[meta.index(b"tag") + 1] == b"v2"
    assert isinstance(bad, RawError) and str(bad) == str(bad_blob)  # RedisAI's text, as outside a transaction
    assert str(wrongtype).startswith("WRONGTYPE")
    assert r.exists("bad") == 0 and r.type("list") == b"list"
    assert r.type("m") == b"AI__MODEL"
    info = r.execute_command("AI.INFO", "m")
    assert info[info.index(b"key") + 1] == b"m" and info[info.index(b"calls") + 1] == 0
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    for model in ("m", "old"):
        r.execute_command("AI.MODELEXECUTE", model, "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")
        assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]
    client.close()


def test_a_model_stored_in_a_transaction_that_did_not_run_is_nowhere(r: redis.Redis) -> None:
    watcher = RawClient(*_address(r))
    assert watcher.call("WATCH", "w") == b"OK"
    assert watcher.call("MULTI") == b"OK"
    assert watcher.call("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model()) == b"QUEUED"
    r.set("w", 1)  # the watched key changed: EXEC runs nothing
    assert watcher.call("EXEC") is None
    watcher.close()
    assert r.exists("m") == 0
    with pytest.raises(redis.ResponseError, match="cannot find run info for key"):
        r.execute_command("AI.INFO", "m")
    assert r.execute_command("AI._MODELSCAN") == []


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)
def test_scripts_stored_inside_a_transaction_apply_at_exec_and_run_after(client: RawClient, r: redis.Redis) -> None:
    source = "def bar(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0] + 1\n"
    alone = RawClient(*_address(r))
    broken = alone.call("AI.SCRIPTSTORE", "bad", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", "return 1")
    alone.close()
    client.call("MULTI")
    client.call("AI.SCRIPTSTORE", "s", "CPU", "TAG", "t2", "ENTRY_POINTS", 1, "bar", "SOURCE", source)
    client.call("AI.SCRIPTSTORE", "bad", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", "return 1")
    client.call("AI.SCRIPTGET", "s", "SOURCE")
    stored, bad, got = client.call("EXEC")
    assert stored == b"OK" and got == source.encode()
    assert isinstance(bad, RawError) and str(bad) == str(broken)
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 1, 2)
    r.execute_command("AI.SCRIPTEXECUTE", "s", "bar", "INPUTS", 1, "a", "OUTPUTS", 1, "b")
    assert r.execute_command("AI.TENSORGET", "b", "VALUES") == [b"2", b"3"]
    info = r.execute_command("AI.INFO", "s")
    assert info[info.index(b"tag") + 1] == b"t2"
    client.close()


def test_gears_state_commands_inside_a_transaction_answer_in_place(client: RawClient, r: redis.Redis) -> None:
    """RedisGears' commands that do not block run inside MULTI in RedisGears: here at EXEC, replies in place."""
    registered = r.execute_command("RG.PYEXECUTE", "GB('KeysReader').register(prefix='multi-reg:*', mode='sync')")
    assert registered == b"OK"
    (registration,) = r.execute_command("RG.DUMPREGISTRATIONS")
    reads = [("RG.DUMPREGISTRATIONS",), ("RG.CONFIGGET", "MaxExecutions"), ("RG.GETRESULTS", "no-such-id"),
             ("RG.DUMPEXECUTIONS",)]  # fmt: skip
    alone = RawClient(*_address(r))
    expected = [alone.call(*command) for command in reads]
    alone.close()
    client.call("MULTI")
    assert client.call("INCR", "n") == b"QUEUED"
    for command in (*reads, ("RG.UNREGISTER", registration[1]), ("RG.DUMPREGISTRATIONS",)):
        assert client.call(*command) == b"QUEUED"
    incr, *got, unregistered, after = client.call("EXEC")
    assert incr == 1 and unregistered == b"OK" and after == []
    assert [str(g) if isinstance(g, RawError) else g for g in got] == [
        str(e) if isinstance(e, RawError) else e for e in expected
    ]
    client.close()


def test_ai_writes_inside_a_transaction_run_no_keys_reader_registration(client: RawClient, r: redis.Redis) -> None:
    """RedisAI's writes and deletes cause no key events, inside MULTI too, so a KeysReader registration on
    their keys does not run on them (the steps' own `set`/`del` events are announced as the runtime's); a
    plain write in the same transaction, and later writes of the same keys, do run it."""
    from tests.runtime.gears_helpers import unregister_all

    unregister_all(r)
    r.rpush("tx:list", "x")
    code = (
        "GB('KeysReader').foreach(lambda x: execute('RPUSH', 'fired', x['key'])).register(prefix='tx:*', mode='sync')"
    )
    assert r.execute_command("RG.PYEXECUTE", code) == b"OK"
    try:
        client.call("MULTI")
        for args in (
            ("AI.TENSORSET", "tx:t", "FLOAT", 1, "VALUES", 1),
            ("AI.MODELSTORE", "tx:m", "ONNX", "CPU", "BLOB", add_model()),
            ("AI.MODELDEL", "tx:m"),
            ("AI.TENSORSET", "tx:list", "FLOAT", 1, "VALUES", 1),  # WRONGTYPE: no event, nothing announced stays
            ("SET", "tx:plain", "1"),
        ):
            assert client.call(*args) == b"QUEUED"
        reply = client.call("EXEC")
        assert isinstance(reply, list) and str(reply[3]).startswith("WRONGTYPE")
        # A transaction that did not run leaves nothing announced either.
        watcher = RawClient(*_address(r))
        watcher.call("WATCH", "tx:w")
        watcher.call("MULTI")
        watcher.call("AI.TENSORSET", "tx:t", "FLOAT", 1, "VALUES", 2)
        r.set("tx:w", 1)
        assert watcher.call("EXEC") is None
        watcher.close()
        for key in ("tx:t", "tx:list", "tx:after"):  # plain writes of the same keys are someone else's: they run it
            r.set(key, "plain")
        deadline = time.monotonic() + 10
        while r.llen("fired") < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # room for a run that should not come
        # (a sync registration runs a transaction's writes right after it, so tx:plain's run and tx:w's may swap)
        assert sorted(r.lrange("fired", 0, -1)) == sorted([b"tx:plain", b"tx:w", b"tx:t", b"tx:list", b"tx:after"])
    finally:
        unregister_all(r)
        client.close()
