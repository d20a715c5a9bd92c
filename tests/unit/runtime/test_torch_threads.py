"""How many threads a TorchScript run gets: INTRA_OP_PARALLELISM, else Torch's default shared by THREADS_PER_QUEUE.

Torch's OpenMP gives each run-queue thread a team of its own; teams that outnumber the cores
made every run about twice as slow (engines/torch.py says why). These load real TorchScript
models and scripts into the engine, in this process, and read Torch's setting back.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from gearcam.runtime.ai.engines import EngineOptions, load_model

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("torch") is None, reason="PyTorch is not installed (scripts/bootstrap --torch)"
    ),
    # TorchScript is deprecated in Torch 2.x, and RedisAI's TORCH backend is TorchScript
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

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


def test_one_thread_per_queue_keeps_torchs_own_choice(torch: Any) -> None:
    from tests.runtime import torch_models

    torch.set_num_threads(1)
    load_model("TORCH", "CPU", torch_models.pair_model(), [], [], EngineOptions())
    assert torch.get_num_threads() == _default()


def test_threads_per_queue_share_torchs_threads_so_their_teams_never_outnumber_them(torch: Any) -> None:
    from tests.runtime import torch_models

    load_model("TORCH", "CPU", torch_models.pair_model(), [], [], EngineOptions(threads_per_queue=2))
    assert torch.get_num_threads() == max(1, _default() // 2)
    load_model("TORCH", "CPU", torch_models.pair_model(), [], [], EngineOptions(threads_per_queue=64))
    assert torch.get_num_threads() == 1


def test_intra_op_parallelism_wins_over_the_share(torch: Any) -> None:
    from tests.runtime import torch_models

    load_model("TORCH", "CPU", torch_models.pair_model(), [], [],
               EngineOptions(intra_op_parallelism=3, threads_per_queue=2))  # fmt: skip
    assert torch.get_num_threads() == 3


def test_a_script_alone_sets_the_share_too(torch: Any) -> None:
    """A node that stores only scripts (AI.SCRIPTSTORE) runs them on the same queue threads."""
    import numpy as np

    from gearcam.runtime.ai.engines.torch import TorchScript

    torch.set_num_threads(max(2, _default()))
    script = TorchScript(_SCRIPT, ["add"], "CPU", EngineOptions(threads_per_queue=64))
    assert torch.get_num_threads() == 1
    out = script.run("add", [np.ones(2, np.float32), np.ones(2, np.float32)], [], [])
    assert out[0].tolist() == [2.0, 2.0]
