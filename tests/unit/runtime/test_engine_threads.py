"""How many threads a TFLite or TorchScript run gets, and TFLite's interpreters under THREADS_PER_QUEUE.

INTRA_OP_PARALLELISM when set, else the engine's default shared among THREADS_PER_QUEUE
(engines/__init__.py, run_threads): Torch's OpenMP teams that outnumber the cores made every
run about twice as slow, and LiteRT on its own runs on one thread. These load real models
into the engines, in this process.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gearcam.runtime.ai.engines import EngineOptions, load_model, run_threads, threads_per_run, usable_cores

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
)
# TorchScript is deprecated in Torch 2.x, and RedisAI's TORCH backend is TorchScript
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]
ADD_TFLITE = Path(__file__).resolve().parents[2] / "fixtures" / "add.tflite"


def test_the_default_is_shared_among_the_queue_threads_and_intra_op_parallelism_wins() -> None:
    assert run_threads(EngineOptions(), 4) == 4
    assert run_threads(EngineOptions(threads_per_queue=2), 4) == 2
    assert run_threads(EngineOptions(threads_per_queue=3), 4) == 1
    assert run_threads(EngineOptions(threads_per_queue=8), 4) == 1  # never none
    assert run_threads(EngineOptions(intra_op_parallelism=3, threads_per_queue=2), 4) == 3
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


def _hammer(model: Any, callers: int, rounds: int) -> list[str]:
    """`callers` threads running the add model at once, each with its own values and batch size; what went wrong."""
    wrong: list[str] = []
    start = threading.Barrier(callers)

    def call(k: int) -> None:
        start.wait()
        for i in range(rounds):
            a = np.full((k + 1, 2), k * 1000 + i, np.float32)
            (out,) = model.run([a, np.ones((k + 1, 2), np.float32)])
            if out.shape != a.shape or not (out == a + 1).all():
                wrong.append(f"caller {k} round {i}: {out.shape} {out.ravel()[:2]}")

    threads = [threading.Thread(target=call, args=(k,)) for k in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wrong


def test_concurrent_tflite_runs_each_get_an_interpreter_of_their_own_up_to_threads_per_queue() -> None:
    """Overlapping runs (LiteRT lets go of the GIL while it runs) resize and fill their own interpreter."""
    model: Any = load_model("TFLITE", "CPU", ADD_TFLITE.read_bytes(), [], [], EngineOptions(threads_per_queue=2))
    assert _hammer(model, callers=4, rounds=400) == []
    assert model.interpreters == 2


def test_one_thread_per_queue_keeps_one_tflite_interpreter_however_many_callers() -> None:
    model: Any = load_model("TFLITE", "CPU", ADD_TFLITE.read_bytes(), [], [], EngineOptions())
    assert _hammer(model, callers=4, rounds=200) == []
    assert model.interpreters == 1


_SCRIPT = "def add(tensors: List[Tensor], keys: List[str], args: List[str]):\n    return tensors[0] + tensors[1]\n"


@pytest.fixture
def torch() -> Iterator[Any]:
    """Torch, its thread setting put back afterwards (it is process-wide)."""
    import torch as module

    before = module.get_num_threads()
    yield module
    module.set_num_threads(before)


def _default() -> int:
    from gearcam.runtime.ai.engines import torch as engine

    return engine._DEFAULT_THREADS


@needs_torch
def test_one_thread_per_queue_keeps_torchs_own_choice(torch: Any) -> None:
    from tests.runtime import torch_models

    torch.set_num_threads(1)
    load_model("TORCH", "CPU", torch_models.pair_model(), [], [], EngineOptions())
    assert torch.get_num_threads() == _default()


@needs_torch
def test_threads_per_queue_share_torchs_threads_so_their_teams_never_outnumber_them(torch: Any) -> None:
    from tests.runtime import torch_models

    options = EngineOptions(threads_per_queue=2)
    load_model("TORCH", "CPU", torch_models.pair_model(), [], [], options)
    assert torch.get_num_threads() == max(1, _default() // 2)
    assert threads_per_run(options)["TORCH"] == torch.get_num_threads()  # what INFO MODULES shows
    load_model("TORCH", "CPU", torch_models.pair_model(), [], [], EngineOptions(threads_per_queue=64))
    assert torch.get_num_threads() == 1


@needs_torch
def test_intra_op_parallelism_wins_over_the_share(torch: Any) -> None:
    from tests.runtime import torch_models

    load_model("TORCH", "CPU", torch_models.pair_model(), [], [],
               EngineOptions(intra_op_parallelism=3, threads_per_queue=2))  # fmt: skip
    assert torch.get_num_threads() == 3


@needs_torch
def test_a_script_alone_sets_the_share_too(torch: Any) -> None:
    """A node that stores only scripts (AI.SCRIPTSTORE) runs them on the same queue threads."""
    import numpy as np

    from gearcam.runtime.ai.engines.torch import TorchScript

    torch.set_num_threads(max(2, _default()))
    script = TorchScript(_SCRIPT, ["add"], "CPU", EngineOptions(threads_per_queue=64))
    assert torch.get_num_threads() == 1
    out = script.run("add", [np.ones(2, np.float32), np.ones(2, np.float32)], [], [])
    assert out[0].tolist() == [2.0, 2.0]
