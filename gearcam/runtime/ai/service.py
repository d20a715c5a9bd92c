"""The in-process AI API: tensors, models and scripts over a backend link, and their runs.

The AI.* command handlers and the Gears `redisAI` module both call this, so Gears
traffic shares the run queues (and auto-batching) with clients. Loaded engine
sessions are cached by key and stamped with the stored model's load id: a model
replaced or deleted behind the runtime's back (DEL, FLUSHALL, a direct write to
the backing Redis, another runtime) is noticed on the next run and reloaded or
refused.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gearcam.config import RuntimeSettings
from gearcam.runtime import replies
from gearcam.runtime.ai import store
from gearcam.runtime.ai.cache import TensorCache
from gearcam.runtime.ai.engines import EngineOptions, load_model
from gearcam.runtime.ai.runqueue import TIMEDOUT, QueueSet, Runnable, RunRequest
from gearcam.runtime.ai.stats import RunStats, StatsRegistry
from gearcam.runtime.ai.tensor import Tensor
from gearcam.runtime.lua import LuaScripts
from gearcam.runtime.relay import BackendLink
from gearcam.runtime.resp import ErrorReply

__all__ = ["TIMEDOUT", "AIService", "LoadedModel", "LoadedScript"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class LoadedModel:
    key: bytes
    meta: store.ModelMeta
    runnable: Runnable


@dataclass(eq=False)
class LoadedScript:
    key: bytes
    meta: store.ScriptMeta
    source: str
    script: Any  # engines.torch.TorchScript


class AIService:
    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.options = EngineOptions(
            intra_op_parallelism=settings.intra_op_parallelism,
            inter_op_parallelism=settings.inter_op_parallelism,
            model_execution_timeout_ms=settings.model_execution_timeout,
            backend_memory_limit_mb=settings.backend_memory_limit,
        )
        self.queues = QueueSet(settings.threads_per_queue)
        self.stats = StatsRegistry()
        self.tensors = TensorCache(settings.tensor_cache_mb * 1024 * 1024)
        self.model_chunk_size = settings.model_chunk_size
        self.backends_path = ""
        self._models: dict[bytes, LoadedModel] = {}
        self._scripts: dict[bytes, LoadedScript] = {}
        self.lua = LuaScripts()  # Lua scripts that name AI.* commands, for RedisAI's error text
        self._lock = threading.Lock()

    def close(self) -> None:
        self.queues.stop()

    # Tensors -------------------------------------------------------------------------------

    async def tensor_get(self, link: BackendLink, key: bytes) -> Tensor:
        (tensor,) = await store.get_tensors(link, [key], self.tensors)
        return tensor

    async def tensor_get_many(self, link: BackendLink, keys: Sequence[bytes]) -> list[Tensor]:
        return await store.get_tensors(link, keys, self.tensors)

    async def tensor_set(self, link: BackendLink, items: Sequence[tuple[bytes, Tensor]]) -> None:
        await store.set_tensors(link, items, self.tensors)

    def tensor_set_nowait(self, link: BackendLink, items: Sequence[tuple[bytes, Tensor]]) -> asyncio.Future[None]:
        """Send the write now; the returned future completes when Redis has it."""
        return store.set_tensors_nowait(link, items, self.tensors)

    # Models --------------------------------------------------------------------------------

    async def model_store(self, link: BackendLink, key: bytes, meta: store.ModelMeta, blob: bytes) -> None:
        """Load the blob into its engine first, so a model that does not parse is never stored."""
        engine = await asyncio.to_thread(
            load_model, meta.backend, meta.device, blob, meta.inputs, meta.outputs, self.options
        )
        if meta.backend != "TF":
            meta.inputs, meta.outputs = list(engine.input_names), list(engine.output_names)
        value = store.pack(store.KIND_MODEL, store.model_header(meta), blob)
        await store.set_typed(link, store.KIND_MODEL, [(key, value)])
        runnable = Runnable(engine, meta.batchsize, meta.minbatchsize, meta.minbatchtimeout, meta.backend)
        with self._lock:
            self._models[key] = LoadedModel(key, meta, runnable)
        self.stats.create(key, "MODEL", meta.backend, meta.device, meta.tag)

    async def model_get(self, link: BackendLink, key: bytes) -> tuple[store.ModelMeta, memoryview]:
        (value,) = await store.get_typed(link, store.KIND_MODEL, [key])
        if value is None:
            raise ErrorReply(replies.MODEL_EMPTY)
        try:
            _, header, blob = store.unpack(value)
            return store.meta_of(store.ModelMeta, header), blob
        except store.CorruptValue as exc:
            raise exc.reply(key, "model") from None

    async def model_del(self, link: BackendLink, key: bytes) -> None:
        if not await store.delete_typed(link, store.KIND_MODEL, key):
            raise ErrorReply(replies.MODEL_EMPTY)
        self.forget(key)

    def forget(self, key: bytes) -> None:
        with self._lock:
            self._models.pop(key, None)
            self._scripts.pop(key, None)
        self.stats.drop(key)

    def on_key_event(self, event: str, db: int, key: bytes) -> None:
        """Release the engine session of a model or script whose key was deleted, expired or evicted."""
        if event in ("del", "expired", "evicted"):
            with self._lock:
                known = key in self._models or key in self._scripts
            if known:
                self.forget(key)
                logger.info("released the engine session of %r (key %s in db %d)", key, event, db)

    async def model(self, link: BackendLink, key: bytes) -> LoadedModel:
        """The loaded model stored at `key`, loading (or reloading) it if the stored one changed."""
        meta = await store.get_model_meta(link, key)
        if meta is None:
            self.forget(key)
            raise ErrorReply(replies.MODEL_EMPTY)
        with self._lock:
            cached = self._models.get(key)
        if cached is not None and cached.meta.uid == meta.uid:
            return cached
        stored_meta, blob = await self.model_get(link, key)
        engine = await asyncio.to_thread(
            load_model,
            stored_meta.backend,
            stored_meta.device,
            bytes(blob),
            stored_meta.inputs,
            stored_meta.outputs,
            self.options,
        )
        if stored_meta.backend != "TF":  # stored by an older runtime that named them differently
            stored_meta.inputs, stored_meta.outputs = list(engine.input_names), list(engine.output_names)
        runnable = Runnable(
            engine, stored_meta.batchsize, stored_meta.minbatchsize, stored_meta.minbatchtimeout, stored_meta.backend
        )
        loaded = LoadedModel(key, stored_meta, runnable)
        with self._lock:
            self._models[key] = loaded
        self.stats.ensure(key, "MODEL", stored_meta.backend, stored_meta.device, stored_meta.tag)
        logger.info("loaded model %r (%s on %s)", key, stored_meta.backend, stored_meta.device)
        return loaded

    async def model_run(
        self, model: LoadedModel, inputs: Sequence[Tensor], timeout_ms: int = 0, charge: bool = True
    ) -> list[Tensor] | str:
        """Run through the device queue; returns the output tensors or TIMEDOUT.

        `charge=False` leaves AI.INFO alone, as RedisAI's blocking Gears calls (modelRunnerRun) do.
        """
        request = RunRequest(model.runnable, [t.array for t in inputs], timeout_ms)
        outcome = await self._outcome(model.meta.device, request)
        return self._account(model, outcome) if charge else self._shape(outcome)

    def charge_error(self, model: LoadedModel, error: ErrorReply) -> ErrorReply:
        """Count a run that failed before reaching the engine as an error in AI.INFO; returns the error to raise."""
        stats = self.stats.ensure(model.key, "MODEL", model.meta.backend, model.meta.device, model.meta.tag)
        stats.record(0, 0, error=True)
        return error

    async def model_run_keys(
        self, link: BackendLink, model: LoadedModel, keys: Sequence[bytes], timeout_ms: int = 0
    ) -> list[Tensor] | str:
        """Run on the tensors stored at `keys` (those this runtime just wrote come from its cache)."""
        return await self.model_run(model, await self.tensor_get_many(link, keys), timeout_ms)

    async def _outcome(self, device: str, request: RunRequest) -> tuple[Any, int] | ErrorReply:
        try:
            return await asyncio.wrap_future(self.queues.get(device).submit(request))
        except ErrorReply as exc:
            return exc

    def _account(self, model: LoadedModel, outcome: tuple[Any, int] | ErrorReply) -> list[Tensor] | str:
        """Charge the run to AI.INFO (reference §1.13) and shape its outputs."""
        stats = self.stats.ensure(model.key, "MODEL", model.meta.backend, model.meta.device, model.meta.tag)
        return self._charge(stats, outcome)

    @staticmethod
    def _shape(outcome: tuple[Any, int] | ErrorReply) -> list[Tensor] | str:
        if isinstance(outcome, ErrorReply):
            raise outcome
        outputs, _ = outcome
        if outputs == TIMEDOUT:
            return TIMEDOUT
        return [Tensor.from_array(np.ascontiguousarray(o)) for o in outputs]

    @staticmethod
    def _charge(stats: RunStats, outcome: tuple[Any, int] | ErrorReply) -> list[Tensor] | str:
        if isinstance(outcome, ErrorReply):
            stats.record(0, 0, error=True)
            raise outcome
        outputs, duration_us = outcome
        if outputs == TIMEDOUT:
            return TIMEDOUT
        tensors = [Tensor.from_array(np.ascontiguousarray(o)) for o in outputs]
        samples = tensors[0].shape[0] if tensors and tensors[0].shape else 0
        stats.record(duration_us, samples)
        return tensors

    async def scan(self, link: BackendLink, kind: str) -> list[RunStats]:
        """Entries for every stored model (or script) of this DB.

        RedisAI recreates the entries when it loads its RDB; the runtime adopts the
        objects it finds after a restart the same way, by scanning for them.
        """
        marker = store.KIND_MODEL if kind == "MODEL" else store.KIND_SCRIPT
        cursor: bytes | int = 0
        while True:
            cursor, keys = await link.call(b"SCAN", cursor, b"TYPE", b"string", b"COUNT", 1000)
            for key in keys:
                if self.stats.get(key) is not None:
                    continue
                try:
                    header = await store.get_header(link, marker, key)
                except ErrorReply:
                    continue
                if header is not None:
                    backend = header.get("backend", "TORCH")
                    self.stats.ensure(key, kind, backend, str(header.get("device", "CPU")), header.get("tag", ""))
            if int(cursor) == 0:
                break
        return self.stats.scan(kind)

    # Scripts -------------------------------------------------------------------------------

    async def script_store(self, link: BackendLink, key: bytes, meta: store.ScriptMeta, source: str) -> None:
        from gearcam.runtime.ai.engines import backend_module

        module = backend_module("TORCH")
        script = await asyncio.to_thread(module.TorchScript, source, meta.entry_points, meta.device)
        value = store.pack(store.KIND_SCRIPT, {**meta.__dict__}, source.encode())
        await store.set_typed(link, store.KIND_SCRIPT, [(key, value)])
        with self._lock:
            self._scripts[key] = LoadedScript(key, meta, source, script)
        self.stats.create(key, "SCRIPT", "TORCH", meta.device, meta.tag)

    async def script_get(self, link: BackendLink, key: bytes) -> tuple[store.ScriptMeta, str]:
        (value,) = await store.get_typed(link, store.KIND_SCRIPT, [key])
        if value is None:
            raise ErrorReply(replies.SCRIPT_EMPTY)
        try:
            _, header, source = store.unpack(value)
            return store.meta_of(store.ScriptMeta, header), bytes(source).decode()
        except (store.CorruptValue, UnicodeDecodeError) as exc:
            reason = exc if isinstance(exc, store.CorruptValue) else store.CorruptValue(f"source: {exc}")
            raise reason.reply(key, "script") from None

    async def script_del(self, link: BackendLink, key: bytes) -> None:
        if not await store.delete_typed(link, store.KIND_SCRIPT, key):
            raise ErrorReply(replies.SCRIPT_EMPTY)
        self.forget(key)

    async def script(self, link: BackendLink, key: bytes) -> LoadedScript:
        meta, source = await self.script_get(link, key)
        with self._lock:
            cached = self._scripts.get(key)
        if cached is not None and cached.meta.uid == meta.uid:
            return cached
        from gearcam.runtime.ai.engines import backend_module

        module = backend_module("TORCH")
        script = await asyncio.to_thread(module.TorchScript, source, meta.entry_points, meta.device)
        loaded = LoadedScript(key, meta, source, script)
        with self._lock:
            self._scripts[key] = loaded
        return loaded

    async def script_run(
        self,
        script: LoadedScript,
        function: str,
        inputs: Sequence[Tensor],
        keys: list[str],
        args: list[str],
        timeout_ms: int = 0,
        charge: bool = True,
    ) -> list[Tensor] | str:
        arrays = [t.array for t in inputs]
        request = RunRequest(
            Runnable(script.script), arrays, timeout_ms, call=lambda: script.script.run(function, arrays, keys, args)
        )
        outcome = await self._outcome(script.meta.device, request)
        if not charge:
            return self._shape(outcome)
        stats = self.stats.ensure(script.key, "SCRIPT", "TORCH", script.meta.device, script.meta.tag)
        return self._charge(stats, outcome)
