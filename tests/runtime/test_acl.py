"""ACL users against the runtime's own commands (issue 14, item 4; the mapping is in docs/runtime.md).

Real users on the backing redis-server, real clients through the runtime: a user limited to
its keys uses AI.* on them and nowhere else; a user without @scripting runs no Gears code or
TorchScript; refusals are Redis' NOPERM texts with the client's command and key.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gearcam.runtime.commands import ai_commands, rg_commands
from tests.conftest import free_port
from tests.runtime.conftest import Backing, RawClient, RawError, Runtime, frames
from tests.runtime.gears_helpers import unregister_all
from tests.runtime.models import add_model

PASSWORD = "acl-test-pw"
USERS = {
    "acl-limited": ["~limited:*", "+@all"],
    "acl-noscript": ["~*", "+@all", "-@scripting"],
    "acl-reader": ["%R~*", "+@all"],
    "acl-nothing": ["resetkeys", "-@all", "+ping"],
}
# Internal commands the runtime uses on the keyspace: none may show in a refusal.
INTERNAL = (
    "'script|load'",
    "'evalsha'",
    "'eval'",
    "'getrange'",
    "'rename'",
    "'set'",
    "'get'",
    "'del'",
    "'function|",
    "'config|set'",
    "'scan'",
    "gearcam:tmp",
)


@pytest.fixture(scope="module")
def users(backing: Backing) -> Iterator[None]:
    admin = redis.Redis(port=backing.port)
    for name, rules in USERS.items():
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{PASSWORD}", *rules)
    yield
    for name in USERS:
        admin.execute_command("ACL", "DELUSER", name)
    admin.close()


def login(runtime: Runtime, user: str, db: int = 0) -> redis.Redis:
    return redis.Redis(port=runtime.port, username=user, password=PASSWORD, db=db, protocol=2, socket_timeout=30)


@pytest.fixture
def admin(runtime: Runtime, users: None) -> Iterator[redis.Redis]:
    client = runtime.client()
    client.flushall()
    yield client
    # DEL, not FLUSHALL: models' AI.INFO/_MODELSCAN entries leave on key events, which FLUSHALL does not send.
    keys = list(client.scan_iter(count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def refusal(client: redis.Redis, *args: object) -> str:
    with pytest.raises(redis.exceptions.NoPermissionError) as caught:
        client.execute_command(*args)
    message = str(caught.value)
    assert not any(word in message for word in INTERNAL), message
    return message


def test_a_user_limited_to_its_keys_uses_tensors_on_them(runtime: Runtime, admin: redis.Redis) -> None:
    client = login(runtime, "acl-limited")
    assert client.execute_command("AI.TENSORSET", "limited:t", "FLOAT", 2, "VALUES", 1, 2) == b"OK"
    assert client.execute_command("AI.TENSORGET", "limited:t", "VALUES") == [b"1", b"2"]
    assert client.execute_command("TYPE", "limited:t") == b"AI_TENSOR"
    assert client.execute_command("DEL", "limited:t") == 1


def test_a_user_limited_to_its_keys_is_refused_others_with_the_key_named(runtime: Runtime, admin: redis.Redis) -> None:
    client = login(runtime, "acl-limited")
    admin.execute_command("AI.TENSORSET", "other:t", "FLOAT", 1, "VALUES", 7)
    message = refusal(client, "AI.TENSORSET", "other:t", "FLOAT", 1, "VALUES", 1)
    assert message == "this user has no permissions to access the 'other:t' key used by 'ai.tensorset'"
    assert "'other:t'" in refusal(client, "AI.TENSORGET", "other:t", "VALUES")
    assert "'other:t'" in refusal(client, "TYPE", "other:t")
    assert admin.execute_command("AI.TENSORGET", "other:t", "VALUES") == [b"7"]


def test_model_runs_check_model_inputs_and_outputs(runtime: Runtime, admin: redis.Redis) -> None:
    client = login(runtime, "acl-limited")
    admin.execute_command("AI.MODELSTORE", "other:m", "ONNX", "CPU", "BLOB", add_model())
    assert client.execute_command("AI.MODELSTORE", "limited:m", "ONNX", "CPU", "BLOB", add_model()) == b"OK"
    for key in ("limited:a", "limited:b"):
        client.execute_command("AI.TENSORSET", key, "FLOAT", 1, 2, "VALUES", 1, 2)
    run = ("AI.MODELEXECUTE", "limited:m", "INPUTS", 2, "limited:a", "limited:b", "OUTPUTS", 1)
    assert client.execute_command(*run, "limited:c") == b"OK"
    assert client.execute_command("AI.TENSORGET", "limited:c", "VALUES") == [b"2", b"4"]
    assert "'other:c'" in refusal(client, *run, "other:c")
    assert admin.exists("other:c") == 0
    assert "'other:m'" in refusal(client, "AI.MODELEXECUTE", "other:m", "INPUTS", 2, "limited:a", "limited:b",
                                  "OUTPUTS", 1, "limited:d")  # fmt: skip
    dag = ("AI.DAGEXECUTE", "LOAD", 2, "limited:a", "limited:b", "PERSIST", 1)
    ops = ("|>", "AI.MODELEXECUTE", "limited:m", "INPUTS", 2, "limited:a", "limited:b", "OUTPUTS", 1)
    assert client.execute_command(*dag, "limited:e", *ops, "limited:e") == [b"OK"]
    assert "'other:e'" in refusal(client, *dag, "other:e", *ops, "other:e")
    assert "'other:m'" in refusal(client, "AI.MODELDEL", "other:m")
    assert admin.exists("other:m") == 1


def test_a_read_only_user_reads_but_does_not_write(runtime: Runtime, admin: redis.Redis) -> None:
    admin.execute_command("AI.TENSORSET", "t", "INT8", 1, "VALUES", 5)
    client = login(runtime, "acl-reader")
    assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [5]
    assert "'t'" in refusal(client, "AI.TENSORSET", "t", "INT8", 1, "VALUES", 6)
    assert "'t'" in refusal(client, "AI.MODELDEL", "t")


def test_triggeronkey_checks_its_key_as_redis_checks_a_modules_key(runtime: Runtime, admin: redis.Redis) -> None:
    # RedisGears registers RG.TRIGGERONKEY's first argument as a key: Redis checks it for reading and writing.
    code = "GB('CommandReader').map(lambda x: x[1]).register(trigger='acl-on-key', mode='sync')"
    assert admin.execute_command("RG.PYEXECUTE", code) == b"OK"
    try:
        limited = login(runtime, "acl-limited")
        assert limited.execute_command("RG.TRIGGERONKEY", "acl-on-key", "limited:k") == [b"limited:k"]
        message = refusal(limited, "RG.TRIGGERONKEY", "acl-on-key", "other:k")
        assert message == "this user has no permissions to access the 'other:k' key used by 'rg.triggeronkey'"
        assert "'other:k'" in refusal(login(runtime, "acl-reader"), "RG.TRIGGERONKEY", "acl-on-key", "other:k")
        noscript = login(runtime, "acl-noscript")
        assert refusal(noscript, "RG.TRIGGERONKEY", "acl-on-key", "k") == (
            "this user has no permissions to run the 'rg.triggeronkey' command"
        )
        # RG.TRIGGER names no key: the same user's RG.TRIGGER of the same registration is not checked for one.
        assert limited.execute_command("RG.TRIGGER", "acl-on-key", "other:k") == [b"other:k"]
    finally:
        unregister_all(admin)


def test_a_hooked_ai_command_runs_with_its_clients_rights(runtime: Runtime, admin: redis.Redis) -> None:
    # The hook's call_next() of the client's AI.TENSORSET is checked as the client's own command, as a hooked
    # Redis command is (call_next reaches Redis on the client's link): a hook lends no rights.
    hook = "GB('CommandReader').map(lambda x: call_next(*x[1:])).register(hook='AI.TENSORSET', mode='sync')"
    assert admin.execute_command("RG.PYEXECUTE", hook) == b"OK"
    try:
        limited = login(runtime, "acl-limited")
        assert limited.execute_command("AI.TENSORSET", "limited:h", "FLOAT", 1, "VALUES", 1) == b"OK"
        with pytest.raises(redis.ResponseError, match="no permissions to access the 'other:h' key"):
            limited.execute_command("AI.TENSORSET", "other:h", "FLOAT", 1, "VALUES", 1)
        assert admin.exists("other:h") == 0 and admin.execute_command("TYPE", "limited:h") == b"AI_TENSOR"
        stats = admin.info("commandstats")["cmdstat_ai.tensorset"]
        assert stats["rejected_calls"] >= 1 and stats["calls"] >= 1  # counted as the command, refused or run
    finally:
        unregister_all(admin)


def test_a_user_without_scripting_runs_no_gears_code_but_uses_tensors(runtime: Runtime, admin: redis.Redis) -> None:
    client = login(runtime, "acl-noscript")
    script = "GB().map(lambda x: x).run()"
    assert refusal(client, "RG.PYEXECUTE", script) == "this user has no permissions to run the 'rg.pyexecute' command"
    assert "'rg.dumpregistrations'" in refusal(client, "RG.DUMPREGISTRATIONS")
    assert "'ai.scriptstore'" in refusal(client, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "f", "SOURCE", "x")
    assert client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 3) == b"OK"
    assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [b"3"]
    assert admin.execute_command("RG.PYEXECUTE", script) is not None  # the default user still may


@pytest.mark.parametrize("name", sorted({*ai_commands(), *rg_commands()}))
def test_every_owned_command_is_refused_to_a_user_without_rights(
    runtime: Runtime, admin: redis.Redis, name: str
) -> None:
    client = login(runtime, "acl-nothing")
    args: tuple[object, ...] = (name, "k", "CPU", "INPUTS", 1, "k", "OUTPUTS", 1, "k")
    if name.startswith("AI.DAG"):
        args = (name, "LOAD", 1, "k", "|>", "AI.TENSORGET", "k", "VALUES")
    message = refusal(client, *args)
    assert message.startswith("this user has no permissions to ")
    assert f"'{name.lower()}'" in message


def test_restricted_users_commands_stay_in_order_in_a_pipeline(runtime: Runtime, admin: redis.Redis) -> None:
    client = login(runtime, "acl-limited")
    pipe = client.pipeline(transaction=False)
    for value in range(20):
        pipe.set("limited:n", value)
        pipe.execute_command("AI.TENSORSET", "limited:t", "INT32", 1, "VALUES", value)
        pipe.get("limited:n")
        pipe.execute_command("AI.TENSORGET", "limited:t", "VALUES")
        pipe.delete("limited:t")
    replies = pipe.execute()
    for value in range(20):
        assert replies[value * 5 : value * 5 + 5] == [True, b"OK", str(value).encode(), [value], 1]


def test_restricted_users_work_in_the_db_they_selected(runtime: Runtime, admin: redis.Redis) -> None:
    client = login(runtime, "acl-limited", db=3)
    client.execute_command("AI.TENSORSET", "limited:t", "FLOAT", 1, "VALUES", 1)
    assert redis.Redis(port=runtime.port, db=3).exists("limited:t") == 1
    assert admin.exists("limited:t") == 0


def test_acl_changes_through_the_runtime_apply_at_once(runtime: Runtime, admin: redis.Redis) -> None:
    client = login(runtime, "acl-limited")
    refusal(client, "AI.TENSORSET", "other:x", "FLOAT", 1, "VALUES", 1)
    admin.execute_command("ACL", "SETUSER", "acl-limited", "~other:*")
    try:
        assert client.execute_command("AI.TENSORSET", "other:x", "FLOAT", 1, "VALUES", 1) == b"OK"
    finally:
        admin.execute_command("ACL", "SETUSER", "acl-limited", "resetkeys", "~limited:*")


def test_a_user_switched_by_auth_is_checked_as_the_new_user(runtime: Runtime, admin: redis.Redis) -> None:
    client = runtime.client()
    assert client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1) == b"OK"
    client.execute_command("AUTH", "acl-limited", PASSWORD)
    assert "'t'" in refusal(client, "AI.TENSORGET", "t")
    client.execute_command("RESET")
    assert client.execute_command("AI.TENSORGET", "t", "VALUES") == [b"1"]


def test_gears_code_runs_as_its_senders_user(runtime: Runtime, admin: redis.Redis) -> None:
    admin.set("other:secret", "x")
    client = login(runtime, "acl-limited")
    script = "GB('ShardsIDReader').map(lambda x: execute('GET', 'other:secret')).run()"
    reply = client.execute_command("RG.PYEXECUTE", script)
    assert b"x" not in reply[0]
    assert any(b"NOPERM" in error or b"permission" in error for error in reply[1])


def test_gears_code_of_a_limited_user_names_the_ai_types_of_its_keys_only(runtime: Runtime, admin: redis.Redis) -> None:
    """TYPE from Gears code answers RedisAI's names through a Lua script: a key outside the user's rules is
    refused with Redis' words for TYPE, as before."""
    admin.execute_command("AI.TENSORSET", "limited:t", "FLOAT", 1, "VALUES", 1)
    admin.execute_command("AI.TENSORSET", "other:t", "FLOAT", 1, "VALUES", 1)
    client = login(runtime, "acl-limited")
    code = "GB('ShardsIDReader').map(lambda x: execute('TYPE', '{}')).run()"
    assert client.execute_command("RG.PYEXECUTE", code.format("limited:t")) == [[b"AI_TENSOR"], []]
    results, errors = client.execute_command("RG.PYEXECUTE", code.format("other:t"))
    assert results == [] and errors == [
        b"NOPERM this user has no permissions to access one of the keys used as arguments"
    ]


def test_a_user_without_channels_runs_sync_registrations_and_key_reads(runtime: Runtime, admin: redis.Redis) -> None:
    """The marks around a Gears read and a sync KeysReader's write are PUBLISHed as the script's user; one
    without channels (Redis 7's default for new users) still gets its writes and reads, then heard by
    KeysReaders (the log says which ACL rule restores RedisGears' behaviour)."""
    client = login(runtime, "acl-limited")
    code = "GB().foreach(lambda x: execute('INCR', 'limited:out')).register('limited:sy*', mode='sync')"
    assert client.execute_command("RG.PYEXECUTE", code) == b"OK"
    with client.pipeline(transaction=False) as pipe:
        pipe.set("limited:sy1", "v")
        pipe.get("limited:out")
        assert pipe.execute() == [True, b"1"]
    reply = client.execute_command("RG.PYEXECUTE", "GB().map(lambda r: r['value']).run('limited:sy*')")
    assert reply == [[b"v"], []]
    for reg in client.execute_command("RG.DUMPREGISTRATIONS"):
        client.execute_command("RG.UNREGISTER", reg[1])


def test_reset_from_subscribe_mode_forgets_the_user(runtime: Runtime, admin: redis.Redis) -> None:
    client = runtime.client()
    client.execute_command("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 1)
    raw = RawClient("127.0.0.1", runtime.port)
    try:
        raw.call("AUTH", "acl-limited", PASSWORD)
        raw.call("SUBSCRIBE", "c")
        assert raw.call("RESET") == b"RESET"
        assert raw.call("AI.TENSORGET", "t", "VALUES") == [b"1"]  # the default user again
    finally:
        raw.close()


def test_a_monitor_is_refused_an_owned_command_by_its_acl_before_the_keyspace(
    runtime: Runtime, admin: redis.Redis
) -> None:
    # As Redis checks a command: ACL rules first, then "a monitor does not touch the keyspace".
    wire = RawClient("127.0.0.1", runtime.port)
    try:
        assert wire.call("AUTH", "acl-limited", PASSWORD) == b"OK"
        assert wire.call("MONITOR") == b"OK"
        wire.sock.sendall(frames(("AI.TENSORGET", "other:t", "VALUES"), ("AI.TENSORGET", "limited:t", "VALUES")))
        errors: list[object] = []
        while len(errors) < 2:  # monitor lines (other clients' commands) may come in between
            errors += [r for r in wire.replies(1) if isinstance(r, Exception)]
        assert "no permissions to access the 'other:t' key" in str(errors[0])
        assert str(errors[1]) == "ERR Replica can't interact with the keyspace"
    finally:
        wire.close()


def test_a_restricted_user_is_refused_what_redis_will_not_let_the_runtime_check(tmp_path: Path) -> None:
    # The runtime's own user may not run ACL DRYRUN (as on Redis 6.2, which has none): a restricted
    # user's AI.* must not run with the runtime's rights, and the refusal says why and what to do.
    backing = Backing(free_port(), tmp_path)
    backing.start()
    direct = redis.Redis(port=backing.port)
    direct.execute_command("ACL", "SETUSER", "gearcam-rt", "on", ">rt-pw", "~*", "&*", "+@all", "-acl|dryrun")
    direct.execute_command("ACL", "SETUSER", "acl-limited", "on", f">{PASSWORD}", "~limited:*", "+@all")
    runtime = Runtime(free_port(), f"redis://gearcam-rt:rt-pw@127.0.0.1:{backing.port}")
    try:
        runtime.start()
        assert runtime.client().execute_command("AI.TENSORSET", "other:t", "FLOAT", 1, "VALUES", 1) == b"OK"
        client = login(runtime, "acl-limited")
        for key in ("limited:t", "other:t"):
            message = refusal(client, "AI.TENSORSET", key, "FLOAT", 1, "VALUES", 2)
            assert "'ai.tensorset' cannot be checked" in message and "ACL DRYRUN" in message, message
        assert direct.exists("limited:t") == 0
        assert runtime.client().execute_command("AI.TENSORGET", "other:t", "VALUES") == [b"1"]
        client.close()
        assert runtime.output().count("answers ACL DRYRUN with") == 1, runtime.output()
    finally:
        runtime.stop()
        direct.close()
        backing.stop()


def test_a_rule_naming_a_modules_command_is_refused_with_what_to_write_instead(
    runtime: Runtime, admin: redis.Redis, backing: Backing
) -> None:
    rules = ("on", "nopass", "~acl-new:*", "+@all")
    for rule, checked_as in (
        ("-ai.tensorset", "'set' on its key"),
        ("+AI.ModelExecute", "'get' on the model and each input, 'set' on each output"),
        ("(+rg.pyexecute ~x)", "'eval'"),
        ("-rg.dumpregistrations|x", "'function|list'"),
    ):
        with pytest.raises(redis.exceptions.ResponseError) as caught:
            admin.execute_command("ACL", "SETUSER", "acl-new", *rules, rule)
        message = str(caught.value)
        assert message.startswith(f"Error in ACL SETUSER modifier '{rule}': "), message
        assert "served by the gearcam runtime" in message and f"checked as {checked_as}:" in message, message
        assert "ACLs and the runtime's own commands" in message
        assert admin.execute_command("ACL", "GETUSER", "acl-new") is None  # nothing applied, as in Redis
    # Redis' own refusal is kept for a rule Redis refuses first, and the same rules reach Redis as sent:
    direct = redis.Redis(port=backing.port)
    for client in (admin, direct):
        with pytest.raises(redis.exceptions.ResponseError, match="'\\+nosuch': Unknown command or category name"):
            client.execute_command("ACL", "SETUSER", "acl-new", "+nosuch", "-ai.tensorset")
    with pytest.raises(redis.exceptions.ResponseError, match="'-ai.tensorset': Unknown command or category name"):
        direct.execute_command("ACL", "SETUSER", "acl-new", "-ai.tensorset")
    direct.close()
    assert admin.execute_command("ACL", "SETUSER", "acl-new", *rules, "-@scripting") == b"OK"
    admin.execute_command("ACL", "DELUSER", "acl-new")


DRYRUNS = [
    ("acl-limited", ("AI.TENSORSET", "limited:t", "FLOAT", 1, "VALUES", 1)),
    ("acl-limited", ("AI.TENSORSET", "other:t", "FLOAT", 1, "VALUES", 1)),
    ("acl-limited", ("AI.MODELEXECUTE", "limited:m", "INPUTS", 1, "other:a", "OUTPUTS", 1, "limited:o")),
    ("acl-reader", ("AI.TENSORGET", "limited:t", "VALUES")),
    ("acl-reader", ("AI.TENSORSET", "limited:t", "FLOAT", 1, "VALUES", 1)),
    ("acl-noscript", ("RG.PYEXECUTE", "GB().run()")),
    ("acl-noscript", ("AI.TENSORGET", "limited:t", "VALUES")),
    ("acl-nothing", ("RG.DUMPREGISTRATIONS",)),
]


@pytest.mark.parametrize(("user", "command"), DRYRUNS)
def test_acl_dryrun_of_a_modules_command_agrees_with_the_command(
    runtime: Runtime, admin: redis.Redis, user: str, command: tuple[object, ...]
) -> None:
    """ACL DRYRUN answers for AI.* and RG.* what the user would meet sending the command (the backing Redis
    would say 'Command not found'): OK where it runs, Redis 7.0's DRYRUN text where it is refused."""
    admin.execute_command("AI.TENSORSET", "limited:t", "FLOAT", 1, "VALUES", 1)
    answer = admin.execute_command("ACL", "DRYRUN", user, *command)
    client = login(runtime, user)
    try:
        client.execute_command(*command)
        refused = None
    except redis.exceptions.NoPermissionError as exc:
        refused = str(exc)
    except redis.exceptions.ResponseError:  # not a permission problem (a missing model): the rights let it run
        refused = None
    if refused is None:
        assert answer == b"OK"
    else:
        expected = refused.split(" used by '", 1)[0]  # Redis 7.0's DRYRUN names no command for a key
        assert answer.decode() == expected[:1].upper() + expected[1:]


def test_acl_dryrun_of_a_modules_command_is_refused_as_redis_refuses_dryrun(
    runtime: Runtime, admin: redis.Redis
) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="User 'nobody' not found"):
        admin.execute_command("ACL", "DRYRUN", "nobody", "AI.TENSORGET", "t")
    assert admin.execute_command("ACL", "DRYRUN", "default", "AI.TENSORGET", "t") == b"OK"
    # A user without ACL DRYRUN may not ask, about any command, as Redis answers it:
    message = refusal(login(runtime, "acl-nothing"), "ACL", "DRYRUN", "acl-limited", "AI.TENSORGET", "t")
    assert "'acl|dryrun'" in message
    # Inside a transaction it is queued in the backing Redis as it is, which does not know the command:
    pipe = admin.pipeline(transaction=True)
    pipe.execute_command("ACL", "DRYRUN", "default", "AI.TENSORGET", "t")
    with pytest.raises(redis.exceptions.ResponseError, match="(?i)Command 'ai.tensorget' not found"):
        pipe.execute()


def acl_log(client: redis.Redis, *args: object) -> list[dict[bytes, object]]:
    """ACL LOG's entries by field name (RESP2 pairs), newest first."""
    reply = client.execute_command("ACL", "LOG", *args)
    return [{entry[i]: entry[i + 1] for i in range(0, len(entry), 2)} for entry in reply]


def client_fields(entry: dict[bytes, object]) -> dict[bytes, bytes]:
    info = entry[b"client-info"]
    assert isinstance(info, bytes)
    return dict(word.partition(b"=")[::2] for word in info.split())


def test_acl_log_holds_the_refused_owned_commands_with_redis_own_entries(runtime: Runtime, admin: redis.Redis) -> None:
    """Refusals of AI.* and RG.* are in ACL LOG as Redis logs those of its own commands, in one list with
    them, newest first: same reason, context, object and user within 60 s count into one entry."""
    admin.execute_command("ACL", "LOG", "RESET")
    limited = login(runtime, "acl-limited")
    for _ in range(2):
        refusal(limited, "AI.TENSORGET", "other:a", "VALUES")
    refusal(limited, "GET", "other:b")  # refused by the backing Redis, which logs it itself
    refusal(limited, "AI.TENSORGET", "other:c")  # in the same millisecond, maybe: still after it
    refusal(login(runtime, "acl-nothing"), "AI.INFO", "m")
    log = acl_log(admin)
    assert [(e[b"reason"], e[b"object"], e[b"username"], e[b"count"]) for e in log] == [
        (b"command", b"ai.info", b"acl-nothing", 1),
        (b"key", b"other:c", b"acl-limited", 1),
        (b"key", b"other:b", b"acl-limited", 1),
        (b"key", b"other:a", b"acl-limited", 2),
    ]
    assert {e[b"context"] for e in log} == {b"toplevel"}
    ages = [float(e[b"age-seconds"]) for e in log]  # type: ignore[arg-type]
    assert ages == sorted(ages) and ages[-1] < 30
    # The client is named as Redis names it: the same connection in both logs, the refused command its last.
    ours, redis_own = client_fields(log[3]), client_fields(log[2])
    assert (ours[b"id"], ours[b"addr"], ours[b"user"]) == (redis_own[b"id"], redis_own[b"addr"], b"acl-limited")
    assert (ours[b"cmd"], redis_own[b"cmd"]) == (b"ai.tensorget", b"get")
    listed = [
        dict(w.partition(b"=")[::2] for w in line.split())
        for line in admin.execute_command("CLIENT", "LIST").splitlines()
    ]
    (line,) = [line for line in listed if line[b"id"] == ours[b"id"]]
    assert line[b"addr"] == ours[b"addr"] and line[b"addr"].startswith(b"127.0.0.1:")  # where the client is
    assert [e[b"object"] for e in acl_log(admin, 2)] == [b"ai.info", b"other:c"]
    assert acl_log(admin, 0) == []
    assert admin.execute_command("ACL", "LOG", "RESET") == b"OK"
    assert acl_log(admin) == []


def test_acl_log_of_a_refusal_inside_multi_says_so(runtime: Runtime, admin: redis.Redis) -> None:
    admin.execute_command("ACL", "LOG", "RESET")
    pipe = login(runtime, "acl-limited").pipeline(transaction=True)
    pipe.execute_command("AI.INFO", "other:m")
    with pytest.raises(redis.exceptions.NoPermissionError, match="'other:m'"):  # when queued; EXEC then aborts
        pipe.execute()
    (entry,) = acl_log(admin)
    assert (entry[b"reason"], entry[b"context"], entry[b"object"]) == (b"key", b"multi", b"other:m")


def test_acl_log_keeps_redis_rules_for_its_length_and_its_arguments(runtime: Runtime, admin: redis.Redis) -> None:
    admin.execute_command("ACL", "LOG", "RESET")
    limited = login(runtime, "acl-limited")
    admin.config_set("acllog-max-len", 2)
    try:
        for key in ("other:1", "other:2", "other:3"):
            refusal(limited, "AI.TENSORGET", key)
        assert [e[b"object"] for e in acl_log(admin, 10)] == [b"other:3", b"other:2"]
    finally:
        admin.config_set("acllog-max-len", 128)
    with pytest.raises(redis.exceptions.ResponseError, match="value is not an integer"):
        admin.execute_command("ACL", "LOG", "many")
    # A user without the right to read the log is refused by Redis, which logs that too.
    assert "'acl|log'" in refusal(login(runtime, "acl-nothing"), "ACL", "LOG")
    assert acl_log(admin, 1)[0][b"object"] == b"acl|log"
    admin.execute_command("ACL", "LOG", "RESET")


def test_acl_log_answers_resp3_clients_with_maps_like_redis(runtime: Runtime, admin: redis.Redis) -> None:
    admin.execute_command("ACL", "LOG", "RESET")
    limited = login(runtime, "acl-limited")
    refusal(limited, "AI.TENSORGET", "other:a")
    refusal(limited, "GET", "other:b")
    raw = RawClient("127.0.0.1", runtime.port)
    raw.call("HELLO", 3)
    newest, oldest = raw.call("ACL", "LOG")  # type: ignore[misc]
    assert isinstance(newest, dict) and isinstance(oldest, dict)
    assert (newest[b"object"], oldest[b"object"]) == (b"other:b", b"other:a")
    assert list(newest) == list(oldest)  # the same fields, in the same order
    assert {type(v) for v in newest.values()} == {type(v) for v in oldest.values()}
    assert isinstance(oldest[b"age-seconds"], float)
    raw.sock.close()
    admin.execute_command("ACL", "LOG", "RESET")


def test_a_user_switched_inside_pipelined_transactions_is_checked_as_the_new_user(
    runtime: Runtime, admin: redis.Redis
) -> None:
    """AUTH inside a transaction is learnt from its EXEC's reply, also when the client's next MULTI was
    already sent (before, the next MULTI dropped what that EXEC had to learn, and the next owned command
    ran as the previous user: Gears code for a user without @scripting)."""
    raw = RawClient("127.0.0.1", runtime.port)
    raw.sock.sendall(frames(
        ("MULTI",), ("AUTH", "acl-noscript", PASSWORD), ("SELECT", 3), ("EXEC",), ("MULTI",), ("PING",), ("EXEC",),
        ("RG.PYEXECUTE", "GB().run()"), ("AI.TENSORSET", "t", "FLOAT", 1, "VALUES", 5),
    ))  # fmt: skip
    *_, first, _, _, second, refused, stored = raw.replies(9)
    raw.sock.close()
    assert (first, second) == ([b"OK", b"OK"], [b"PONG"])
    assert str(refused) == "NOPERM this user has no permissions to run the 'rg.pyexecute' command"
    # and its DB: the tensor went to DB 3, where the user's SELECT inside the first transaction took it
    assert stored == b"OK" and login(runtime, "acl-noscript", db=3).execute_command("AI.TENSORGET", "t", "VALUES") == [
        b"5"
    ]
    assert admin.exists("t") == 0


@pytest.mark.parametrize(
    "login_args", [("AUTH", "acl-noscript", PASSWORD), ("HELLO", "2", "AUTH", "acl-noscript", PASSWORD)]
)
def test_an_owned_command_pipelined_behind_a_login_is_checked_as_the_new_user(
    runtime: Runtime, login_args: tuple[str, ...]
) -> None:
    """The user is learnt from the login's reply, which the owned command waits for (before 2026-12-06 a
    PING the runtime sent after every AUTH or HELLO made it wait; that PING is gone, the wait is not)."""
    raw = RawClient("127.0.0.1", runtime.port)
    assert raw.call("RG.PYEXECUTE", "GB().run()") == [[], []]  # as the default user, which may
    raw.sock.sendall(frames(login_args, ("RG.PYEXECUTE", "GB().run()")))
    logged_in, refused = raw.replies(2)
    raw.sock.close()
    assert not isinstance(logged_in, RawError)
    assert str(refused) == "NOPERM this user has no permissions to run the 'rg.pyexecute' command"


def test_an_acl_change_pipelined_before_an_owned_command_applies_to_it(runtime: Runtime, admin: redis.Redis) -> None:
    """As in Redis, a command sent after an ACL SETUSER on the same connection meets the new rules, even when
    both were sent at once and the runtime had the user's old answers at hand."""
    admin.execute_command("ACL", "SETUSER", "acl-self", "reset", "on", f">{PASSWORD}", "~*", "+@all")
    try:
        raw = RawClient("127.0.0.1", runtime.port)
        assert raw.call("AUTH", "acl-self", PASSWORD) == b"OK"
        assert raw.call("ACL", "SETUSER", "acl-self", "-ping") == b"OK"  # restricted now: its answers are asked
        assert raw.call("RG.PYEXECUTE", "GB().run()") == [[], []]  # and remembered
        raw.sock.sendall(frames(("ACL", "SETUSER", "acl-self", "-@scripting"), ("RG.PYEXECUTE", "GB().run()")))
        changed, refused = raw.replies(2)
        assert changed == b"OK"
        assert str(refused) == "NOPERM this user has no permissions to run the 'rg.pyexecute' command"
        # The same from inside a transaction, learnt from its EXEC's reply.
        assert raw.call("ACL", "SETUSER", "acl-self", "+@scripting") == b"OK"
        assert raw.call("RG.PYEXECUTE", "GB().run()") == [[], []]
        raw.sock.sendall(frames(
            ("MULTI",), ("ACL", "SETUSER", "acl-self", "-@scripting"), ("EXEC",), ("RG.PYEXECUTE", "GB().run()")
        ))  # fmt: skip
        *_, ran, refused = raw.replies(4)
        raw.sock.close()
        assert ran == [b"OK"] and "NOPERM" in str(refused)
    finally:
        admin.execute_command("ACL", "DELUSER", "acl-self")
