"""The runtime's side of `redisAI` in Gears workers: their model and script runs, tensor reads and writes.

A worker sends plain tensors (dtype, shape, bytes); the runtime runs them through the
AI service on its own event loop, so they join the same device queues as AI.* clients
and batch with them. Errors travel back as RedisAI's text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gearcam.runtime.ai.errors import AIError, RunTimedOut
from gearcam.runtime.ai.service import AIService
from gearcam.runtime.ai.tensor import Tensor
from gearcam.runtime.gears.redisai_api import from_wire, wire_tensor
from gearcam.runtime.relay import BackendLink

__all__ = ["AICalls"]

_TF_NO_TARGET = "Must specify at least one target to fetch or execute."
# RedisAI 1.2's onnxruntime backend runs only on its own worker threads (its kill switch keeps a run
# session per worker), so modelRunnerRun, which runs on the Gears thread, is refused for ONNX models.
_ONNX_BLOCKING = "Cannot execute onnxruntime model synchronously, use async execution instead"


def _ordered(names: list[str], given: list[tuple[str, Tensor]]) -> list[Tensor]:
    """Inputs by the model's input names when the script named them all, else in the order given."""
    by_name = dict(given)
    if set(by_name) == set(names) and len(given) == len(names):
        return [by_name[n] for n in names]
    return [t for _, t in given]


class AICalls:
    def __init__(self, ai: AIService, link: Callable[[], Awaitable[BackendLink]]) -> None:
        self.ai = ai
        self.link = link  # the runtime's AI link, reopened after a backing restart

    async def handle(self, op: str, payload: Any) -> Any:
        if op == "ai.model_run":
            return await self._model_run(*payload)
        if op == "ai.script_run":
            return await self._script_run(*payload)
        if op == "ai.tensor_set":
            items = [(key.encode(), from_wire(rest)) for key, *rest in payload]
            await self.ai.tensor_set(await self.link(), items)
            return 1
        if op == "ai.tensor_get":
            tensors = await self.ai.tensor_get_many(await self.link(), [k.encode() for k in payload])
            return [wire_tensor(t) for t in tensors]
        raise AIError(f"ERR unknown Gears call {op!r}")

    async def _model_run(self, key: str, inputs: list[Any], wanted: list[str], asynchronous: bool = True) -> list[Any]:
        """A Gears model run. Only the *Async calls count in AI.INFO, as in RedisAI; the blocking
        one runs on the caller's thread there, where RedisAI's ONNX backend refuses to run."""
        model = await self.ai.model(await self.link(), key.encode())
        if not asynchronous and model.meta.backend == "ONNX":
            raise AIError(_ONNX_BLOCKING)  # not counted: RedisAI keeps no statistics of blocking runs
        if not wanted and model.meta.backend == "TF":
            # RedisAI fetches as many outputs as the runner added; TensorFlow refuses to fetch none.
            error = AIError(_TF_NO_TARGET)
            raise self.ai.charge_error(model, error) if asynchronous else error
        given = [(name, from_wire(rest)) for name, *rest in inputs]
        try:
            outputs = await self.ai.model_run(model, _ordered(list(model.meta.inputs), given), charge=asynchronous)
        except RunTimedOut:
            raise AIError("Model run timed out") from None
        names = list(model.meta.outputs)
        if wanted and set(wanted) <= set(names) and len(names) == len(outputs):
            outputs = [outputs[names.index(n)] for n in wanted]
        elif wanted:
            outputs = outputs[: len(wanted)]  # by position, as RedisAI binds a runner's outputs
        return [wire_tensor(t) for t in outputs]

    async def _script_run(self, key: str, function: str, inputs: list[Any], asynchronous: bool = True) -> list[Any]:
        script = await self.ai.script(await self.link(), key.encode())
        tensors = [from_wire(t) for t in inputs]
        try:
            outputs = await self.ai.script_run(script, function, tensors, [], [], charge=asynchronous)
        except RunTimedOut:
            raise AIError("Script run timed out") from None
        return [wire_tensor(t) for t in outputs]
