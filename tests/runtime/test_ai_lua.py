"""AI.* and RG.* commands called from Lua answer the modules' text; other scripts are relayed untouched."""

from __future__ import annotations

import redis

from tests.runtime.conftest import error_of

IN_LUA = "ERR Cannot run RedisAI command within a transaction or a LUA script"


def test_an_execution_command_from_lua_answers_redisai_text(r: redis.Redis) -> None:
    """RedisAI's test_lua_multi, with redis.pcall: the script returns the error as its reply."""
    script = ("return redis.pcall('AI.MODELEXECUTE', 'no_model{1}', 'INPUTS', 1, 'NO_INPUT{1}', "
              "'OUTPUTS', 1, 'NO_OUTPUT{1}')")  # fmt: skip
    assert error_of(r, "EVAL", script, 0) == IN_LUA


def test_redis_call_keeps_the_script_location_after_redisai_text(r: redis.Redis) -> None:
    message = error_of(r, "EVAL", "return redis.call('ai.dagexecute', 'LOAD', 1, 'a')", 0)
    assert message.startswith(IN_LUA + " script: ")


def test_evalsha_of_a_loaded_script_answers_the_same(r: redis.Redis) -> None:
    sha = r.script_load("return redis.pcall('AI.SCRIPTEXECUTE', 's', 'f')")
    assert error_of(r, "EVALSHA", sha, 0) == IN_LUA


def test_a_command_redisai_serves_from_lua_names_what_the_runtime_cannot_do(r: redis.Redis) -> None:
    message = error_of(r, "EVAL", "return redis.pcall('AI.TENSORSET', 't', 'FLOAT', 1)", 0)
    assert message.startswith("ERR the gearcam runtime cannot serve AI.TENSORSET from a Lua script")


def test_rg_pyexecute_from_lua_answers_redisgears_text_and_other_rg_commands_say_what_to_do(r: redis.Redis) -> None:
    refused = error_of(r, "EVAL", "return redis.pcall('RG.PYEXECUTE', 'GB().run()')", 0)
    assert refused == "Can not run gears inside a multi exec, lua, or when blocking is not allowed"
    message = error_of(r, "EVAL", "return redis.call('RG.TRIGGER', 'mytrigger')", 0)
    assert message.startswith("ERR the gearcam runtime cannot serve RG.TRIGGER from a Lua script (RedisGears can);")


def test_scripts_without_ai_calls_are_untouched(r: redis.Redis) -> None:
    assert r.eval("return 'AI.MODELEXECUTE'", 0) == b"AI.MODELEXECUTE"
    assert r.eval("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])", 1, "k", "v") == b"v"
    message = error_of(r, "EVAL", "return redis.pcall('NOPE')", 0)
    assert message == "ERR Unknown Redis command called from script"
