"""TorchScript models as RedisAI's torch backend shows and runs them: outputs counted per tensor, named ''."""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

import pytest
import redis

from tests.runtime.conftest import error_of

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)


def _models() -> Any:
    from tests.runtime import torch_models

    return torch_models


def test_a_model_returning_a_tuple_has_one_output_per_element_each_named_empty(r: redis.Redis) -> None:
    r.execute_command("AI.MODELSTORE", "m", "TORCH", "CPU", "BLOB", _models().pair_model())
    meta = r.execute_command("AI.MODELGET", "m", "META")
    assert meta[10:14] == [b"inputs", [b"a", b"b"], b"outputs", [b"", b""]]
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 2, "VALUES", 2, 3)
    r.execute_command("AI.TENSORSET", "b", "FLOAT", 2, "VALUES", 4, 5)
    assert r.execute_command("AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 2, "c", "d") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"6", b"8"]
    assert r.execute_command("AI.TENSORGET", "d", "VALUES") == [b"8", b"15"]
    assert error_of(r, "AI.MODELEXECUTE", "m", "INPUTS", 2, "a", "b", "OUTPUTS", 1, "c") == (
        "Number of keys given as OUTPUTS here does not match model definition"
    )


def test_a_batched_model_whose_output_misses_the_batch_answers_redisai_text(r: redis.Redis) -> None:
    """RedisAI's pt-minimal-bb.pt: a second output whose first dim is not the batch."""
    r.execute_command("AI.MODELSTORE", "bb", "TORCH", "CPU", "BATCHSIZE", 4, "MINBATCHSIZE", 3,
                      "BLOB", _models().bad_batch_model())  # fmt: skip
    for key in ("a", "b", "d", "e"):
        r.execute_command("AI.TENSORSET", key, "FLOAT", 2, 2, "VALUES", 2, 3, 2, 3)
    errors: list[str] = []

    def run(first: str, second: str, out: str) -> None:
        errors.append(error_of(r, "AI.MODELEXECUTE", "bb", "INPUTS", 2, first, second, "OUTPUTS", 2, out, out + "2"))

    other = threading.Thread(target=run, args=("d", "e", "f"))
    other.start()
    run("a", "b", "c")
    other.join()
    assert errors == ["ERR Model did not generate the expected batch size"] * 2
