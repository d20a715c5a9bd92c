"""A run that never ends (a TorchScript loop) is abandoned at its deadline and does not stall the device."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.runtime.conftest import running_stack
from tests.runtime.models import add_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)

ENDLESS = (
    "def spin(tensors: List[Tensor], keys: List[str], args: List[str]):\n"
    "    x = tensors[0]\n"
    "    i = 0\n"
    "    while i >= 0:\n"
    "        i = i + 1\n"
    "    return x\n"
)


@pytest.fixture
def own_runtime(tmp_path: Path) -> Iterator[redis.Redis]:
    """A runtime of its own: the abandoned loop keeps a core busy until its process ends."""
    with running_stack(tmp_path, runtime_args=["--model-execution-timeout", "1000"]) as (_, runtime):
        yield redis.Redis(port=runtime.port, socket_timeout=30, protocol=2)


def test_an_endless_script_times_out_and_other_models_keep_running(own_runtime: redis.Redis) -> None:
    r = own_runtime
    assert r.execute_command("AI.SCRIPTSTORE", "s", "CPU", "ENTRY_POINTS", 1, "spin", "SOURCE", ENDLESS) == b"OK"
    r.execute_command("AI.MODELSTORE", "add", "ONNX", "CPU", "BLOB", add_model())
    r.execute_command("AI.TENSORSET", "a", "FLOAT", 1, 2, "VALUES", 1, 2)
    # With TIMEOUT: the command's deadline.
    reply = r.execute_command("AI.SCRIPTEXECUTE", "s", "spin", "INPUTS", 1, "a", "OUTPUTS", 1, "b", "TIMEOUT", 300)
    assert reply == b"TIMEDOUT"
    assert r.execute_command("AI.MODELEXECUTE", "add", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "c") == b"OK"
    assert r.execute_command("AI.TENSORGET", "c", "VALUES") == [b"2", b"4"]
    # Without: MODEL_EXECUTION_TIMEOUT bounds a script too.
    assert r.execute_command("AI.SCRIPTEXECUTE", "s", "spin", "INPUTS", 1, "a", "OUTPUTS", 1, "b") == b"TIMEDOUT"
    assert r.execute_command("AI.MODELEXECUTE", "add", "INPUTS", 2, "a", "a", "OUTPUTS", 1, "d") == b"OK"
    assert r.exists("b") == 0
    assert r.info("modules")["ai_queue_CPU_abandoned_runs"] == 2
