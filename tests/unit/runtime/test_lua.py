"""The Lua scan that finds AI.* and RG.* calls, and the reply it rewrites."""

from __future__ import annotations

import hashlib

from gearcam.runtime.lua import LuaScripts, module_names


def test_module_names_are_the_quoted_command_names_upper_cased_once_each() -> None:
    source = (
        b"""redis.call("ai.tensorset", 'a') redis.pcall('AI.MODELEXECUTE') redis.call('rg.trigger', 'AI.TENSORSET')"""
    )
    assert module_names(source) == ("AI.TENSORSET", "AI.MODELEXECUTE", "RG.TRIGGER")
    assert module_names(b"return redis.call('GET', 'AI')") == ()


def test_evalsha_finds_the_names_of_a_script_loaded_before() -> None:
    scripts = LuaScripts()
    source = b"return redis.pcall('AI.DAGEXECUTE')"
    assert scripts.inspect("SCRIPT", [b"SCRIPT", b"LOAD", source]).names == ("AI.DAGEXECUTE",)
    sha = b"0b5fc0aea1aa0e5b4b9ab2ae5d1e64b0a3e4ed1f"
    assert scripts.inspect("EVALSHA", [b"EVALSHA", sha, b"0"]).names == ()
    known = hashlib.sha1(source).hexdigest().upper().encode()  # noqa: S324
    assert scripts.inspect("EVALSHA", [b"EVALSHA", known, b"0"]).names == ("AI.DAGEXECUTE",)


def test_only_unknown_command_errors_are_rewritten() -> None:
    unknown = b"-ERR Unknown Redis command called from script\r\n"
    always = lambda name: True  # noqa: E731
    assert LuaScripts.reply(("AI.MODELEXECUTE",), unknown, always) == (
        b"-ERR Cannot run RedisAI command within a transaction or a LUA script\r\n"
    )
    assert LuaScripts.reply(("AI.MODELEXECUTE",), b"-ERR other\r\n", always) == b"-ERR other\r\n"
    assert LuaScripts.reply((), unknown, always) == unknown
    assert LuaScripts.reply(("AI.MODELEXECUTE",), b"$1\r\nx\r\n", always) == b"$1\r\nx\r\n"


def test_rg_commands_get_redisgears_text_or_say_what_the_runtime_cannot_do() -> None:
    unknown = b"-ERR Unknown Redis command called from script script: 1f, on @user_script:1.\r\n"
    never = lambda name: False  # noqa: E731
    assert LuaScripts.reply(("RG.PYEXECUTE",), unknown, never) == (
        b"-Can not run gears inside a multi exec, lua, or when blocking is not allowed script: 1f, "
        b"on @user_script:1.\r\n"
    )
    assert LuaScripts.reply(("RG.TRIGGER",), unknown, never).startswith(
        b"-ERR the gearcam runtime cannot serve RG.TRIGGER from a Lua script (RedisGears can)"
    )
    assert b"(RedisAI and RedisGears can)" in LuaScripts.reply(("AI.TENSORGET", "RG.TRIGGER"), unknown, never)


def test_the_oldest_scripts_are_forgotten_past_the_limit() -> None:
    scripts = LuaScripts(limit=1)
    scripts.inspect("EVAL", [b"EVAL", b"redis.call('AI.INFO')", b"0"])
    scripts.inspect("EVAL", [b"EVAL", b"redis.call('AI.CONFIG')", b"0"])
    assert len(scripts._names) == 1


def test_scripts_naming_a_flush_are_noted_to_forget() -> None:
    scripts = LuaScripts()
    assert scripts.inspect("EVAL", [b"EVAL", b"return redis.call('flushall', 'ASYNC')", b"0"]).forgets
    assert scripts.inspect("EVAL", [b"EVAL", b'redis.call("SWAPDB", 0, 1)', b"0"]).forgets
    assert not scripts.inspect("EVAL", [b"EVAL", b"return redis.call('GET', 'FLUSHALL_count')", b"0"]).forgets
    source = b"redis.call('FLUSHDB') redis.call('AI.TENSORGET', 't')"
    assert scripts.inspect("SCRIPT", [b"SCRIPT", b"LOAD", source]) == (("AI.TENSORGET",), True)
    sha = hashlib.sha1(source).hexdigest().encode()  # noqa: S324
    assert scripts.inspect("EVALSHA", [b"EVALSHA", sha, b"0"]).forgets
