"""AI.SCRIPTSTORE / AI.SCRIPTEXECUTE argument checks in RedisAI 1.2.7's order and words."""

from __future__ import annotations

import importlib.util

import pytest
import redis

from tests.runtime.conftest import error_of

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)

SOURCE = "def bar(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0] + tensors[1]\n"


@pytest.fixture
def script(r: redis.Redis) -> str:
    assert r.execute_command("AI.SCRIPTSTORE", "ket", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", SOURCE) == b"OK"
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 1, 2)
    return "ket"


def test_scriptstore_arity_comes_before_the_entry_points(r: redis.Redis) -> None:
    assert error_of(r, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS") == (
        "ERR wrong number of arguments for 'AI.SCRIPTSTORE' command"
    )
    missing = "ERR Insufficient arguments, missing script entry points"
    assert error_of(r, "AI.SCRIPTSTORE", "s", "CPU", "NO_ENTRY_POINTS", 2, "bar", "baz", "SOURCE", SOURCE) == missing
    assert error_of(r, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 5, "bar", "baz", "SOURCE", SOURCE) == missing


def test_a_script_that_does_not_compile_answers_torchscripts_lines_joined_as_redisai_does(r: redis.Redis) -> None:
    # RedisAI turns each line break of the backend's message into a space (RAI_Chomp) and keeps the rest:
    # clients such as redisai-py compare the whole text, indentation and the last break included.
    assert error_of(r, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "f", "SOURCE", "return 1") == (
        "expected def but found 'return' here:   File \"<string>\", line 1 return 1 ~~~~~~ <--- HERE "
    )


def test_scriptstore_refuses_entry_points_without_the_tensors_keys_args_signature(r: redis.Redis) -> None:
    old_style = "def bar(a, b):\n    return a + b\n"
    assert error_of(r, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", old_style) == (
        "Wrong number of inputs in function bar. Expected 3 but was 2"
    )
    wrong_types = "def bar(tensors: List[Tensor], keys: List[str], args: List[Tensor]):\n    return tensors[0]\n"
    assert error_of(r, "AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "bar", "SOURCE", wrong_types) == (
        "Wrong inputs type in function bar. Expected signature similar to: "
        "def bar(tensors: List[Tensor], keys: List[str], args: List[str])"
    )
    assert r.exists("s") == 0
    # The deprecated AI.SCRIPTSET names no entry points: old-style functions are still stored.
    assert r.execute_command("AI.SCRIPTSET", "s", "CPU", "SOURCE", old_style) == b"OK"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bar", "KEYS", 1), "ERR Missing arguments after KEYS keyword"),
        (("bar", "KEYS", 1, "k", "ARGS"), "ERR Invalid arguments provided to AI.SCRIPTEXECUTE"),
        (("bar", "INPUTS", "OUTPUTS"), "ERR Invalid argument for inputs count in AI.SCRIPTEXECUTE"),
        (("bar", "KEYS", 0, "INPUTS", 1, "a"), "ERR Invalid or negative value found in number of KEYS"),
        (("bar", "INPUTS", 3, "a", "a"), "ERR number of inputs to AI.SCRIPTEXECUTE command does not match the number of given arguments"),
        (("bar", "INPUTS", 1, "a", "INPUTS", 1, "a"), "ERR Already Encountered INPUTS scope in AI.SCRIPTEXECUTE command"),
        (("bar", "INPUTS", 1, "a", "BOGUS"), "ERR Invalid AI.SCRIPTEXECUTE command. Unexpected argument: BOGUS"),
        (("bar", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c", "TIMEOUT", "TIMEOUT"), "ERR Invalid value for TIMEOUT"),
        (("bar", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c", "TIMEOUT"), "ERR No value provided for TIMEOUT in AI.SCRIPTEXECUTE"),
        (("bar", "ARGS", 1, "x"), "ERR KEYS or INPUTS scope must be provided first for AI.SCRIPTEXECUTE command"),
    ],
)  # fmt: skip
def test_scriptexecute_errors(r: redis.Redis, script: str, args: tuple[object, ...], message: str) -> None:
    assert error_of(r, "AI.SCRIPTEXECUTE", script, *args) == message


def test_scriptexecute_checks_the_script_key_before_the_arguments(r: redis.Redis) -> None:
    assert error_of(r, "AI.SCRIPTEXECUTE", "nothing", "bar", "KEYS", 1) == "ERR script key is empty"


def test_scopes_may_come_in_any_order_after_the_first(r: redis.Redis, script: str) -> None:
    reply = r.execute_command("AI.SCRIPTEXECUTE", script, "bar", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c",
                              "ARGS", 1, "x", "KEYS", 1, "a")  # fmt: skip
    assert reply == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]


def test_in_a_dag_a_missing_function_name_shows_the_unexpected_count(r: redis.Redis, script: str) -> None:
    """RedisAI's tests_dag_errors: INPUTS is taken as the function name, so "1" is unexpected."""
    message = error_of(r, "AI.DAGEXECUTE", "ROUTING", "a", "|>", "AI.SCRIPTEXECUTE", script, "INPUTS", 1, "a",
                       "OUTPUTS", 1, "t")  # fmt: skip
    assert message == "ERR Invalid AI.SCRIPTEXECUTE command. Unexpected argument: 1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bar", "INPUTS", "$", "a", "$", "b", "OUTPUTS"), "ERR Already encountered a variable size list of tensors"),
        (("bar", "OUTPUTS", "$", "c"), "ERR Encountered a variable size list of tensors outside of input section"),
        (("bar", "INPUTS", "a", "INPUTS", "b"), "ERR Already encountered an INPUTS keyword in SCRIPTRUN"),
        (("bar", "INPUTS", "a", "OUTPUTS", "c", "INPUTS", "b"), "ERR Already encountered an INPUTS section in SCRIPTRUN"),
        (("bar", "a"), "ERR Unrecongnized parameter to SCRIPTRUN"),
    ],
)  # fmt: skip
def test_the_deprecated_scriptrun_errors(r: redis.Redis, script: str, args: tuple[object, ...], message: str) -> None:
    assert error_of(r, "AI.SCRIPTRUN", script, *args) == message


def test_the_deprecated_scriptrun_still_runs(r: redis.Redis, script: str) -> None:
    assert r.execute_command("AI.SCRIPTRUN", script, "bar", "INPUTS", "a", "a", "OUTPUTS", "c") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]


OLD_STYLE = (
    "def add(a, b):\n"
    "    return a + b\n"
    "def total(first, rest: List[Tensor]):\n"
    "    out = first\n"
    "    for t in rest:\n"
    "        out = out + t\n"
    "    return out\n"
)


def test_scripts_in_redisais_older_calling_convention_run_with_scriptrun(r: redis.Redis) -> None:
    assert r.execute_command("AI.SCRIPTSET", "old", "CPU", "SOURCE", OLD_STYLE) == b"OK"
    r.execute_command("AI.TENSORSET", "x", "FLOAT", 2, "VALUES", 1, 2)
    r.execute_command("AI.TENSORSET", "y", "FLOAT", 2, "VALUES", 10, 20)
    assert r.execute_command("AI.SCRIPTRUN", "old", "add", "INPUTS", "x", "y", "OUTPUTS", "z") == b"OK"
    assert r.execute_command("AI.TENSORGET", "z", "VALUES") == [b"11", b"22"]
    # A List[Tensor] argument takes the variadic rest of the inputs ($ marks it in RedisAI's syntax).
    command = ("AI.SCRIPTRUN", "old", "total", "INPUTS", "x", "$", "y", "y", "OUTPUTS", "w")
    assert r.execute_command(*command) == b"OK"
    assert r.execute_command("AI.TENSORGET", "w", "VALUES") == [b"21", b"42"]
