"""COMMAND through the runtime lists AI.* and RG.* as Redis 7.0 lists the modules' commands.

The registrations (flags, key ranges, key reporters) are RedisAI 1.2.7's and RedisGears 1.2's;
the shapes are Redis 7.0's for a module command. Cluster clients read these to route commands.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis
from redis._parsers import CommandsParser

from gearcam.runtime.resp import encode_command, reply_end
from tests.runtime.conftest import RawClient, RawError, error_of

_AI = [
    "ai.config", "ai.dagexecute", "ai.dagexecute_ro", "ai.dagrun", "ai.dagrun_ro", "ai.info", "ai.modeldel",
    "ai.modelexecute", "ai.modelget", "ai.modelrun", "ai.modelset", "ai.modelstore", "ai.scriptdel",
    "ai.scriptexecute", "ai.scriptget", "ai.scriptrun", "ai.scriptset", "ai.scriptstore", "ai.tensorget",
    "ai.tensorset", "ai._modelscan", "ai._scriptscan",
]  # fmt: skip


class Frames:
    """A client that sees each reply frame as the server wrote it (RESP3 sets and maps included)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def call(self, *args: str | bytes) -> bytes:
        self.sock.sendall(b"".join(encode_command(args)))
        while (end := reply_end(self.buffer)) < 0:
            self.buffer += self.sock.recv(1 << 20)
        frame, self.buffer = self.buffer[:end], self.buffer[end:]
        return frame


@pytest.fixture
def frames(server_url: str) -> Iterator[Frames]:
    client = Frames(redis.Redis.from_url(server_url).connection_pool.connection_kwargs["port"])
    yield client
    client.sock.close()


def _bulk(text: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(text), text.encode())


def test_command_info_shows_the_modules_registrations(wire: RawClient) -> None:
    reply = wire.call("COMMAND", "INFO", "AI.TENSORSET", "ai.modelexecute", "RG.PYEXECUTE", "GET", "NO.SUCH")
    assert isinstance(reply, list)
    tensorset, modelexecute, pyexecute, get, nothing = reply
    full = [b"RW", b"access", b"update"]
    assert tensorset == [
        b"ai.tensorset", -1, [b"write", b"denyoom", b"module"], 1, 1, 1, [], [],
        [[b"flags", full, b"begin_search", [b"type", b"index", b"spec", [b"index", 1]],
          b"find_keys", [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]]]],
        [],
    ]  # fmt: skip
    assert modelexecute[:6] == [b"ai.modelexecute", -1, [b"write", b"denyoom", b"module", b"movablekeys"], 4, 4, 1]
    assert modelexecute[8][0][1] == [*full, b"variable_flags"]
    assert pyexecute == [b"rg.pyexecute", -1, [b"readonly", b"module"], 0, 0, 0, [], [], [], []]
    assert get[0] == b"get" and b"module" not in get[2] and len(get) == len(tensorset)  # the backing Redis' own
    assert nothing is None
    triggeronkey, trigger = wire.call("COMMAND", "INFO", "RG.TRIGGERONKEY", "RG.TRIGGER")  # type: ignore[misc]
    assert triggeronkey[:6] == [b"rg.triggeronkey", -1, [b"readonly", b"module"], 2, 2, 1]
    assert triggeronkey[8] == [[b"flags", full, b"begin_search", [b"type", b"index", b"spec", [b"index", 2]],
                                b"find_keys", [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1,
                                                                            b"limit", 0]]]]  # fmt: skip
    assert trigger[:6] == [b"rg.trigger", -1, [b"readonly", b"module", b"movablekeys"], 0, 0, 0]


def test_command_count_and_list_include_the_owned_commands(wire: RawClient, direct: redis.Redis) -> None:
    owned = wire.call("COMMAND", "LIST", "FILTERBY", "MODULE", "ai")
    assert isinstance(owned, list) and sorted(owned) == sorted(name.encode() for name in _AI)
    rg = wire.call("COMMAND", "LIST", "FILTERBY", "MODULE", "rg")
    assert isinstance(rg, list) and b"rg.pyexecute" in rg and b"rg.dumpregistrations" in rg
    assert not any(n.startswith(b"ai.") for n in rg)
    count = wire.call("COMMAND", "COUNT")
    assert count == direct.command_count() + len(owned) + len(rg)
    everything = wire.call("COMMAND", "LIST")  # subcommands too (config|get), as Redis lists them
    assert isinstance(everything, list) and b"ai.tensorset" in everything
    assert len(everything) == len(direct.execute_command("COMMAND LIST")) + len(owned) + len(rg)
    assert sorted(wire.call("COMMAND", "LIST", "FILTERBY", "PATTERN", "AI.TENSOR*")) == [  # type: ignore[type-var]
        b"ai.tensorget",
        b"ai.tensorset",
    ]
    assert sorted(wire.call("COMMAND", "LIST", "FILTERBY", "PATTERN", "ai.[ms]*get")) == [  # type: ignore[type-var]
        b"ai.modelget",
        b"ai.scriptget",
    ]
    assert wire.call("COMMAND", "LIST", "FILTERBY", "PATTERN", "ai.[^t]ensorset") == []
    assert wire.call("COMMAND", "LIST", "FILTERBY", "PATTERN", "ai.tensor\\?et") == []
    assert b"ai.tensorset" not in wire.call("COMMAND", "LIST", "FILTERBY", "ACLCAT", "write")  # type: ignore[operator]
    assert "syntax error" in str(wire.call("COMMAND", "LIST", "FILTERBY", "NOPE", "x"))
    info = wire.call("COMMAND")
    assert isinstance(info, list) and len(info) == count and [b"ai.tensorset", -1] in [e[:2] for e in info]


def test_command_docs_give_a_module_commands_group_and_module_in_the_order_asked(frames: Frames) -> None:
    frame = frames.call("COMMAND", "DOCS", "AI.TENSORSET", "GET", "NO.SUCH", "RG.PYEXECUTE")
    assert frame.startswith(b"*6\r\n" + _bulk("ai.tensorset") + b"*4\r\n" + _bulk("group") + _bulk("module"))
    assert _bulk("module") + _bulk("ai") in frame and frame.index(_bulk("get")) < frame.index(_bulk("rg.pyexecute"))
    assert frame.endswith(_bulk("rg.pyexecute") + b"*4\r\n" + _bulk("group") + _bulk("module") + _bulk("module")
                          + _bulk("rg"))  # fmt: skip
    everything = frames.call("COMMAND", "DOCS")
    assert _bulk("ai.dagexecute") in everything and _bulk("set") in everything


def test_resp3_clients_get_sets_and_maps(frames: Frames) -> None:
    frames.call("HELLO", "3")
    frame = frames.call("COMMAND", "INFO", "AI.TENSORGET")
    assert frame == (
        b"*1\r\n*10\r\n"
        + _bulk("ai.tensorget")
        + b":-1\r\n~2\r\n+readonly\r\n+module\r\n:1\r\n:1\r\n:1\r\n~0\r\n~0\r\n"
        b"~1\r\n%3\r\n"
        + _bulk("flags")
        + b"~3\r\n+RW\r\n+access\r\n+update\r\n"
        + _bulk("begin_search")
        + b"%2\r\n"
        + _bulk("type")
        + _bulk("index")
        + _bulk("spec")
        + b"%1\r\n"
        + _bulk("index")
        + b":1\r\n"
        + _bulk("find_keys")
        + b"%2\r\n"
        + _bulk("type")
        + _bulk("range")
        + _bulk("spec")
        + b"%3\r\n"
        + _bulk("lastkey")
        + b":0\r\n"
        + _bulk("keystep")
        + b":1\r\n"
        + _bulk("limit")
        + b":0\r\n~0\r\n"
    )
    docs = frames.call("COMMAND", "DOCS", "AI.TENSORGET")
    assert docs == b"%1\r\n" + _bulk("ai.tensorget") + b"%2\r\n" + _bulk("group") + _bulk("module") + _bulk(
        "module"
    ) + _bulk("ai")
    assert frames.call("COMMAND", "GETKEYSANDFLAGS", "AI.TENSORGET", "t") == (
        b"*1\r\n*2\r\n" + _bulk("t") + b"~3\r\n+RW\r\n+access\r\n+update\r\n"
    )


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        (["AI.TENSORSET", "t", "FLOAT", "1"], ["t"]),
        (["AI.MODELEXECUTE", "m", "INPUTS", "2", "a", "b", "OUTPUTS", "1", "c", "TIMEOUT", "5"], ["m", "a", "b", "c"]),
        (["AI.MODELEXECUTE", "m", "INPUTS", "x"], ["m"]),  # RedisAI stops at the bad count, keeping the model key
        (["AI.MODELRUN", "m", "INPUTS", "a", "b", "OUTPUTS", "c"], ["m", "a", "b", "c"]),
        (["AI.SCRIPTRUN", "s", "f", "INPUTS", "a", "$", "b", "OUTPUTS", "c"], ["s", "a", "b", "c"]),
        (["AI.SCRIPTEXECUTE", "s", "f", "KEYS", "1", "k", "INPUTS", "1", "a", "OUTPUTS", "1", "c"], ["s", "k", "a"]),
        (["AI.SCRIPTEXECUTE", "s", "f", "INPUTS", "1", "a", "TIMEOUT", "9"], ["s", "a"]),
        (
            [
                "AI.DAGEXECUTE",
                "LOAD",
                "1",
                "x",
                "PERSIST",
                "1",
                "y",
                "|>",
                "AI.MODELEXECUTE",
                "m",
                "INPUTS",
                "1",
                "x",
                "OUTPUTS",
                "1",
                "y",
            ],
            ["x", "y", "m"],
        ),  # fmt: skip
        (["AI.DAGEXECUTE_RO", "ROUTING", "r", "|>", "AI.SCRIPTEXECUTE", "s", "f"], ["r", "s"]),
        (["AI.INFO", "m"], ["m"]),
        (["RG.TRIGGERONKEY", "trigger", "k", "a"], ["k"]),  # RedisGears registers it with key 2 (2, 2, 1)
    ],
)
def test_command_getkeys_finds_the_keys_redisai_reports(wire: RawClient, args: list[str], keys: list[str]) -> None:
    assert wire.call("COMMAND", "GETKEYS", *args) == [k.encode() for k in keys]


def test_command_getkeys_errors_are_redis_own(r: redis.Redis, wire: RawClient) -> None:
    assert error_of(r, "COMMAND", "GETKEYS", "RG.PYEXECUTE", "GB().run()") == "ERR The command has no key arguments"
    assert error_of(r, "COMMAND", "GETKEYS", "AI.SCRIPTEXECUTE", "s", "f") == (
        "ERR Invalid arguments specified for command"  # RedisAI reports none below six arguments
    )
    assert error_of(r, "COMMAND", "GETKEYS", "AI.TENSORGET") == (
        "ERR wrong number of arguments for 'command|getkeys' command"  # the backing Redis' arity check, first
    )
    # RG.TRIGGER reports keys only inside a command hook
    assert error_of(r, "COMMAND", "GETKEYS", "RG.TRIGGER", "name", "a") == "ERR Invalid arguments specified for command"
    assert error_of(r, "COMMAND", "GETKEYS", "NO.SUCH", "k") == "ERR Invalid command specified"
    assert wire.call("COMMAND", "GETKEYS", "SET", "plain", "v") == [b"plain"]


def test_redis_pys_cluster_key_parser_routes_ai_commands(r: redis.Redis) -> None:
    # What RedisCluster uses to pick a node for each command: COMMAND at start, GETKEYS for movable keys.
    parser = CommandsParser(r)
    assert parser.get_keys(r, "AI.TENSORSET", "t{1}", "FLOAT", 1) == ["t{1}"]
    assert parser.get_keys(r, "AI.MODELEXECUTE", "m", "INPUTS", 1, "a", "OUTPUTS", 1, "b") == ["m", "a", "b"]
    assert parser.get_keys(r, "RG.DUMPREGISTRATIONS") is None
    assert parser.get_keys(r, "RG.TRIGGERONKEY", "trigger", "k{1}", "a") == ["k{1}"]


def test_a_user_refused_command_is_refused_getkeys_of_owned_commands(r: redis.Redis, server_url: str) -> None:
    r.execute_command("ACL", "SETUSER", "nocommand", "on", ">pw", "+@all", "-command", "~*")
    other = RawClient("127.0.0.1", int(server_url.rsplit(":", 1)[1]))
    try:
        assert other.call("AUTH", "nocommand", "pw") == b"OK"
        for args in (("GETKEYS", "AI.TENSORGET", "t"), ("INFO", "AI.TENSORGET"), ("COUNT",)):
            refusal = other.call("COMMAND", *args)
            assert isinstance(refusal, RawError) and str(refusal).startswith("NOPERM"), args
    finally:
        other.close()
        r.execute_command("ACL", "DELUSER", "nocommand")


def test_every_module_command_the_runtime_serves_has_its_registration() -> None:
    from gearcam.runtime.commands import ai_commands, core_commands, rg_commands

    owned = {**ai_commands(), **rg_commands()}
    assert sorted(name.lower() for name in ai_commands()) == sorted(_AI)
    assert all(c.registration is not None for c in owned.values())
    assert all(c.registration is None for c in core_commands().values())  # Redis' own: the backing Redis lists them


def test_help_and_transactions_are_the_backing_redis_own(wire: RawClient) -> None:
    help_lines = wire.call("COMMAND", "HELP")
    assert isinstance(help_lines, list) and any(b"GETKEYS" in line for line in help_lines)
    assert wire.call("MULTI") == b"OK" and wire.call("COMMAND", "INFO", "AI.TENSORGET") == b"QUEUED"
    assert wire.call("EXEC") == [[None]]  # relayed into the backing Redis' transaction as it is (docs/runtime.md)
