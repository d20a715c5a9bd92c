"""AI.DAGEXECUTE / AI.DAGEXECUTE_RO and the deprecated AI.DAGRUN against RedisAI 1.2."""

from __future__ import annotations

import importlib.util

import pytest
import redis

from tests.runtime.conftest import error_of
from tests.runtime.models import add_model


@pytest.fixture(autouse=True)
def model(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "ONNX", "CPU", "BLOB", add_model())
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)


def test_a_dag_loads_runs_and_persists_only_what_it_is_told(r: redis.Redis) -> None:
    reply = r.execute_command(
        "AI.DAGEXECUTE", "LOAD", 1, "a", "PERSIST", 1, "c", "|>",
        "AI.TENSORSET", "b", "FLOAT", 1, 2, "VALUES", 10, 20, "|>",
        "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c", "|>",
        "AI.TENSORGET", "c", "VALUES",
    )  # fmt: skip
    assert reply == [b"OK", b"OK", [b"11", b"22"]]
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"11", b"22"]
    assert r.exists("b") == 0


def test_a_read_only_dag_returns_results_without_writing(r: redis.Redis) -> None:
    reply = r.execute_command(
        "AI.DAGEXECUTE_RO", "LOAD", 1, "a", "|>",
        "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c", "|>",
        "AI.TENSORGET", "c", "META",
    )  # fmt: skip
    assert reply == [b"OK", [b"dtype", b"FLOAT", b"shape", [1, 2]]]
    assert r.exists("c") == 0


def test_a_failing_op_makes_later_ops_na_and_persists_nothing(r: redis.Redis) -> None:
    reply = r.execute_command(
        "AI.DAGEXECUTE", "PERSIST", 1, "c", "|>",
        "AI.TENSORSET", "w", "FLOAT", 1, 3, "VALUES", 1, 2, 3, "|>",
        "AI.MODELEXECUTE", "m", "INPUTS", 2, "w", "w", "OUTPUTS", 1, "c", "|>",
        "AI.TENSORGET", "c", "VALUES",
    )  # fmt: skip
    assert reply[0] == b"OK" and isinstance(reply[1], redis.ResponseError) and reply[2] == b"NA"
    assert r.exists("c") == 0


def test_the_deprecated_dagrun_needs_no_scope(r: redis.Redis) -> None:
    reply = r.execute_command("AI.DAGRUN", "|>", "AI.TENSORSET", "x", "INT8", 1, "VALUES", 5, "|>",
                              "AI.TENSORGET", "x", "VALUES")  # fmt: skip
    assert reply == [b"OK", [5]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "ERR missing arguments for 'AI.DAGEXECUTE' command"),
        (("|>", "AI.TENSORGET", "a"), "ERR missing arguments for 'AI.DAGEXECUTE' command"),
        (("TIMEOUT", 5, "|>", "AI.TENSORGET", "a"), "ERR AI.DAGEXECUTE and AI.DAGEXECUTE_RO commands must contain at least one out of ROUTING, LOAD, PERSIST keywords"),
        (("PERSIST", 2, "a", "b", "LOAD", 1), "ERR missing arguments after LOAD keyword in DAG command"),
        (("ROUTING", "a", "LOAD", 1, "a", "PERSIST", 1), "ERR missing arguments after PERSIST keyword in DAG command"),
        (("LOAD", "x", "a", "|>", "AI.TENSORGET", "a"), "ERR invalid or negative value found in number of keys to LOAD"),
        (("LOAD", 2, "a", "|>", "AI.TENSORGET", "a"), "ERR number of keys to LOAD into DAG does not match the number of given arguments"),
        (("PERSIST", 2, "c", "c", "|>", "AI.TENSORSET", "c", "FLOAT", 1), "ERR PERSIST keys must be unique"),
        (("PERSIST", 3, "a", "b", "c", "ROUTING"), "ERR Missing ROUTING value"),
        (("LOAD", 1, "a", "BOGUS", "|>", "AI.TENSORGET", "a"), "ERR Invalid DAG command. Unexpected argument:  BOGUS"),
        (("LOAD", 1, "a", "|>", "SET", "k", "v"), "Unsupported command within DAG"),
        (("ROUTING", "a", "LOAD", 1, "a"), "ERR DAG is empty"),
        (("LOAD", 1, "a", "|>", "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c", "TIMEOUT", 5),
         "ERR TIMEOUT not allowed within a DAG command"),
        (("LOAD", 1, "a", "|>", "AI.MODELRUN", "m", "INPUTS", "a", "a", "OUTPUTS", "c"),
         "Deprecated AI.MODELRUN cannot be used in AI.DAGEXECUTE command"),
    ],
)  # fmt: skip
def test_dag_errors(r: redis.Redis, args: tuple[object, ...], message: str) -> None:
    assert error_of(r, "AI.DAGEXECUTE", *args) == message


@pytest.mark.parametrize("name", ["AI.MODELEXECUTE", "AI.SCRIPTEXECUTE"])
def test_the_deprecated_dagrun_refuses_the_new_commands(r: redis.Redis, name: str) -> None:
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, "VALUES", 1)
    assert error_of(r, "AI.DAGRUN", "LOAD", 1, "a", "|>", name, "m", "INPUTS", 1, "a", "OUTPUTS", 1, "c") == (
        f"{name} cannot be used in a deprecated AI.DAGRUN command"
    )


def test_read_only_dag_errors(r: redis.Redis) -> None:
    assert error_of(r, "AI.DAGEXECUTE_RO") == "ERR missing arguments for 'AI.DAGEXECUTE_RO' command"
    assert error_of(r, "AI.DAGRUN", "|>") == "ERR wrong number of arguments for 'AI.DAGRUN' command"
    assert error_of(r, "AI.DAGEXECUTE_RO", "PERSIST", 1, "c", "|>", "AI.TENSORGET", "a") == (
        "ERR PERSIST cannot be specified in a read-only DAG"
    )
    assert error_of(r, "AI.DAGEXECUTE_RO", "LOAD", 1, "a", "|>", "AI.SCRIPTEXECUTE", "s", "f", "INPUTS", 1, "a") == (
        "ERR AI.SCRIPTEXECUTE command cannot be specified in a read-only DAG"
    )


def test_a_dag_timeout_answers_timedout_or_completes(r: redis.Redis) -> None:
    reply = r.execute_command("AI.DAGEXECUTE", "LOAD", 1, "a", "TIMEOUT", 5000, "|>",
                              "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c")  # fmt: skip
    assert reply == [b"OK"]


def test_dag_errors_in_redisais_order_and_words(r: redis.Redis) -> None:
    r.delete("dag:none")
    r.execute_command("AI.TENSORSET", "dag:t", "FLOAT", 2, "VALUES", 1, 2)
    # With no ops, RedisAI loads the keys first: a missing one answers before the empty DAG.
    assert error_of(r, "AI.DAGEXECUTE", "ROUTING", "dag:none", "LOAD", 1, "dag:none") == (
        "ERR tensor key is empty or in a different shard"
    )
    assert error_of(r, "AI.DAGEXECUTE", "ROUTING", "dag:t", "LOAD", 1, "dag:t") == "ERR DAG is empty"
    persist = ("PERSIST", 2, "dag:x", "|>", "AI.TENSORSET", "dag:x", "FLOAT", 1, "VALUES", 1)
    assert error_of(r, "AI.DAGEXECUTE", *persist) == (
        "ERR number of keys to PERSIST after DAG execution does not match the number of given arguments"
    )
    scriptrun = ("LOAD", 1, "dag:t", "|>", "AI.SCRIPTRUN", "s", "f", "INPUTS", "dag:t", "OUTPUTS", "dag:y")
    assert error_of(r, "AI.DAGEXECUTE", *scriptrun) == "Deprecated AI.SCRIPTRUN cannot be used in AI.DAGEXECUTE command"


ENSEMBLE = (
    "def ensemble(tensors: List[Tensor], keys: List[str], args: List[str]):\n"
    "    return (tensors[0] + tensors[1]) * 0.5\n"
)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch is not installed")
def test_the_deprecated_dagrun_runs_scriptrun_and_modelrun_ops(r: redis.Redis) -> None:
    """RedisAI 1.2.7's AI.DAGRUN takes the deprecated AI.SCRIPTRUN as an op (tests_deprecated_commands.py's
    resnet ensemble); before 2026-12-06 the runtime answered `Unsupported command within DAG`."""
    r.execute_command("AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "ensemble", "SOURCE", ENSEMBLE)
    reply = r.execute_command(
        "AI.DAGRUN", "LOAD", 1, "a", "PERSIST", 1, "e", "|>",
        "AI.MODELRUN", "m", "INPUTS", "a", "a", "OUTPUTS", "c", "|>",
        "AI.SCRIPTRUN", "s", "ensemble", "INPUTS", "a", "c", "OUTPUTS", "e", "|>",
        "AI.TENSORGET", "e", "VALUES",
    )  # fmt: skip
    assert reply == [b"OK", b"OK", [b"1.5", b"3"]]
    assert r.execute_command("AI.TENSORGET", "e", "VALUES") == [b"1.5", b"3"]
    assert error_of(r, "AI.DAGRUN", "LOAD", 1, "a", "PERSIST", 1, "nowhere", "|>",
                    "AI.SCRIPTRUN", "s", "ensemble", "INPUTS", "a", "a", "OUTPUTS", "e") == (
        "ERR PERSIST key cannot be found in DAG"
    )  # fmt: skip
    assert error_of(r, "AI.DAGRUN", "|>", "AI.SCRIPTRUN", "s", "ensemble", "TIMEOUT", 5,
                    "INPUTS", "a", "a", "OUTPUTS", "e") == "ERR TIMEOUT not allowed within a DAG command"  # fmt: skip
    assert error_of(r, "AI.DAGRUN", "|>", "AI.MODELRUN", "m", "TIMEOUT", 5,
                    "INPUTS", "a", "a", "OUTPUTS", "e") == "ERR TIMEOUT not allowed within a DAG command"  # fmt: skip
    assert error_of(r, "AI.DAGRUN", "|>", "AI.SCRIPTRUN", "s") == (
        "ERR wrong number of arguments for 'AI.SCRIPTRUN' command"
    )
    assert error_of(r, "AI.DAGEXECUTE", "LOAD", 1, "a", "|>", "AI.SCRIPTRUN", "s", "ensemble", "INPUTS", "a",
                    "OUTPUTS", "e") == "Deprecated AI.SCRIPTRUN cannot be used in AI.DAGEXECUTE command"  # fmt: skip
