"""TorchScript test models as RedisAI's generator scripts make them (imported only when torch is installed)."""

from __future__ import annotations

import io
import warnings

import torch


class _Pair(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a * b


class _BadBatch(torch.nn.Module):
    """RedisAI's pt-minimal-bb.pt: the second output does not carry the batch."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, torch.ones(1)


class _Failing(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class _Writer(torch.nn.Module):
    def forward(self, a: torch.Tensor, path: str) -> torch.Tensor:
        torch.save(a, path)
        return a


class _WritesThroughASubmodule(torch.nn.Module):
    """Its forward writes `a` to a file in the working directory, from a submodule's method."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.writer = _Writer()
        self.name = name

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.writer(a, self.name) + 1


class _WithState(torch.nn.Module):
    """Exports __getstate__/__setstate__, which TorchScript lists among the module's methods."""

    def __init__(self) -> None:
        super().__init__()
        self.k = 2

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.k

    @torch.jit.export
    def __getstate__(self) -> tuple[int, bool]:
        return (self.k, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        self.k = state[0]
        self.training = state[1]


def _saved(module: torch.nn.Module) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated, still what RedisAI loads
        scripted = torch.jit.script(module)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


def pair_model() -> bytes:
    """forward(a, b) -> (a + b, a * b)"""
    return _saved(_Pair())


def bad_batch_model() -> bytes:
    return _saved(_BadBatch())


def failing_model() -> bytes:
    """forward(a, b) -> a @ b: fails at run time on shapes that do not multiply."""
    return _saved(_Failing())


def file_writing_model(name: str) -> bytes:
    """forward(a) -> a + 1, writing `a` to the file `name` on the way (torch.save, inside a submodule)."""
    return _saved(_WritesThroughASubmodule(name))


def stateful_model() -> bytes:
    """forward(a) -> a * 2, with an exported __getstate__/__setstate__ pair."""
    return _saved(_WithState())
