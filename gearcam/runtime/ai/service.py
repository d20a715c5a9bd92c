"""The in-process AI API: loaded engine sessions and the run queues, over the TensorStore.

The AI.* command handlers and the Gears `redisAI` module both call this, so Gears
traffic shares the run queues (and auto-batching) with clients. Loaded engine
sessions are kept by key and stamped with the stored model's load id. While the
store trusts the key (no key event since it was written or read), a run needs no
trip to Redis; a model replaced or deleted behind the runtime's back (DEL, a direct
write to the backing Redis, another runtime) is noticed by its key event, and the
next run reads the stored header again and reloads or refuses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gearcam.config import RuntimeSettings
from gearcam.runtime import replies
from gearcam.runtime.ai import engines, store
from gearcam.runtime.ai.coherence import Charged, Trusted
from gearcam.runtime.ai.engine_reuse import EngineReuse
from gearcam.runtime.ai.engines import EngineOptions, load_model
from gearcam.runtime.ai.errors import AIError, RunTimedOut
from gearcam.runtime.ai.key_order import KeyOrder
from gearcam.runtime.ai.runqueue import QueueSet, Runnable, RunRequest
from gearcam.runtime.ai.stats import RunStats, StatsRegistry
from gearcam.runtime.ai.tensor import Tensor
from gearcam.runtime.lua import LuaScripts
from gearcam.runtime.relay import BackendLink
from gearcam.runtime.resp import ErrorReply

__all__ = ["AIService", "LoadedModel", "LoadedScript", "Prepared", "RunTimedOut"]

logger = logging.getLogger(__name__)

_HASH_INLINE = 1 << 20  # blobs under 1 MiB are hashed on the event loop (well under a millisecond)


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


@dataclass(eq=False)
class Prepared:
    """A model loaded or a script compiled, with the value that stores it (AIService.install once written)."""

    loaded: LoadedModel | LoadedScript
    value: store.Packed


class AIService:
    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.options = EngineOptions(
            intra_op_parallelism=settings.intra_op_parallelism,
            inter_op_parallelism=settings.inter_op_parallelism,
            threads_per_queue=settings.threads_per_queue,
            model_execution_timeout_ms=settings.model_execution_timeout,
            backend_memory_limit_mb=settings.backend_memory_limit,
        )
        self.queues = QueueSet(settings.threads_per_queue, settings.model_execution_timeout, settings.inline_run_us)
        self.stats = StatsRegistry()
        self.store = store.TensorStore(
            settings.tensor_cache_mb * 1024 * 1024, settings.connect_timeout, settings.write_ack
        )
        self.model_chunk_size = settings.model_chunk_size
        # RedisAI's default is a `backends` folder next to its module; the runtime's engines live in engines/.
        self.backends_path = settings.backends_path or str(Path(engines.__file__).parent)
        self._models: dict[bytes, LoadedModel] = {}
        self._scripts: dict[bytes, LoadedScript] = {}
        self.lua = LuaScripts()  # Lua scripts that name AI.* or RG.* commands, for the modules' error text
        self.engines = EngineReuse()  # sessions of blobs stored lately, for a store of the same blob
        self._lock = threading.Lock()
        self._loading: dict[tuple[bytes, str], asyncio.Future[Prepared]] = {}  # see _prepared_once
        self.order = KeyOrder()  # stores and deletes of a key in the order they arrive, as RedisAI serves them

    def close(self) -> None:
        self.queues.stop()

    # Tensors -------------------------------------------------------------------------------

    async def tensor_get(self, link: BackendLink, key: bytes) -> Tensor:
        (tensor,) = await self.store.get_tensors(link, [key])
        return tensor

    async def tensor_get_many(self, link: BackendLink, keys: Sequence[bytes]) -> list[Tensor]:
        return await self.store.get_tensors(link, keys)

    async def tensor_set(self, link: BackendLink, items: Sequence[tuple[bytes, Tensor]]) -> None:
        await self.store.set_tensors(link, items)

    def tensor_set_nowait(self, link: BackendLink, items: Sequence[tuple[bytes, Tensor]]) -> asyncio.Future[None]:
        """Send the write now; the returned future completes when Redis has it."""
        return self.store.set_tensors(link, items)

    # Models --------------------------------------------------------------------------------

    async def model_store(self, link: BackendLink, key: bytes, meta: store.ModelMeta, blob: bytes) -> None:
        """Load the blob into its engine first, so a model that does not parse is never stored."""
        async with self.order.writing(key):
            prepared = await self.prepare_model(key, meta, blob)
            await self.store.write(link, store.KIND_MODEL, key, prepared.value, meta.uid)
            self.install(prepared)

    async def prepare_model(self, key: bytes, meta: store.ModelMeta, blob: bytes) -> Prepared:
        """The model loaded into its engine and its stored value, to be written and then installed."""
        identity = (meta.backend, meta.device, meta.inputs, meta.outputs, blob)
        # Hashing is quick; a large blob's is still done off the event loop.
        key_of = self.engines.key
        reuse = key_of(*identity) if len(blob) < _HASH_INLINE else await asyncio.to_thread(key_of, *identity)
        engine = self.engines.get(reuse)
        if engine is None:
            engine = await asyncio.to_thread(
                load_model, meta.backend, meta.device, blob, meta.inputs, meta.outputs, self.options
            )
            self.engines.put(reuse, engine)
        if meta.backend != "TF":
            meta.inputs, meta.outputs = list(engine.input_names), list(engine.output_names)
        value = store.pack(store.KIND_MODEL, store.model_header(meta), blob)
        runnable = Runnable(engine, meta.batchsize, meta.minbatchsize, meta.minbatchtimeout, meta.backend)
        return Prepared(LoadedModel(key, meta, runnable), value)

    def install(self, prepared: Prepared) -> None:
        """A model or script written under its key: runs find it loaded, AI.INFO lists it."""
        loaded = prepared.loaded
        self.queues.get(loaded.meta.device)  # RedisAI makes a device's run queue when something is stored for it
        with self._lock:
            if isinstance(loaded, LoadedModel):
                self._models[loaded.key] = loaded
                kind, backend = "MODEL", loaded.meta.backend
            else:
                self._scripts[loaded.key] = loaded
                kind, backend = "SCRIPT", "TORCH"
        self.stats.create(loaded.key, kind, backend, loaded.meta.device, loaded.meta.tag)

    async def model_get(self, link: BackendLink, key: bytes) -> tuple[store.ModelMeta, memoryview]:
        await self.order.settled(key)
        return await self._model_get(link, key)

    async def _model_get(self, link: BackendLink, key: bytes) -> tuple[store.ModelMeta, memoryview]:
        (value,) = await store.get_typed(link, store.KIND_MODEL, [key])
        if value is None:
            raise AIError(replies.MODEL_EMPTY)
        try:
            return store.decode_model(value)
        except store.CorruptValue as exc:
            raise exc.reply(key, "model") from None

    async def model_del(self, link: BackendLink, key: bytes) -> None:
        async with self.order.writing(key):
            if not await self.store.delete(link, store.KIND_MODEL, key):
                raise AIError(replies.MODEL_EMPTY)
            self.forget(key)

    def forget(self, key: bytes) -> None:
        with self._lock:
            self._models.pop(key, None)
            self._scripts.pop(key, None)
        self.stats.drop(key)

    def on_key_event(self, event: str, db: int, key: bytes) -> Charged:
        """Tell the store; release the engine session of a model or script whose key was deleted, expired or evicted.

        Not for an event the runtime's own write or delete announced: a MODELDEL's `del` may
        arrive after the next MODELSTORE of the key, whose session must stay.
        """
        charged = self.store.on_key_event(event, db, key)
        if charged is Charged.FOREIGN and event in ("del", "expired", "evicted"):
            with self._lock:
                known = key in self._models or key in self._scripts
            if known:
                self.forget(key)
                logger.info("released the engine session of %r (key %s in db %d)", key, event, db)
        return charged

    async def model(self, link: BackendLink, key: bytes) -> LoadedModel:
        """The loaded model stored at `key`, loading (or reloading) it if the stored one changed."""
        await self.order.settled(key)
        trusted = await self.store.trusted(link, key)
        with self._lock:
            cached = self._models.get(key)
        if trusted is not None and cached is not None and trusted == Trusted(store.KIND_MODEL, cached.meta.uid):
            return cached
        token = self.store.token(link, key)
        meta = await store.get_model_meta(link, key)
        if meta is None:
            self.forget(key)
            raise AIError(replies.MODEL_EMPTY)
        with self._lock:
            cached = self._models.get(key)
        if cached is not None and cached.meta.uid == meta.uid:
            self.store.learn(key, store.KIND_MODEL, meta.uid, token)
            return cached
        stored_meta, blob = await self._model_get(link, key)
        prepared = await self._prepared_once(
            key, stored_meta.uid, lambda: self.prepare_model(key, stored_meta, bytes(blob))
        )
        loaded = prepared.loaded
        assert isinstance(loaded, LoadedModel)
        self.stats.ensure(key, "MODEL", loaded.meta.backend, loaded.meta.device, loaded.meta.tag)
        self.store.learn(key, store.KIND_MODEL, loaded.meta.uid, token)
        return loaded

    async def _prepared_once(self, key: bytes, uid: str, prepare: Callable[[], Awaitable[Prepared]]) -> Prepared:
        """One load of what is stored at `key` under `uid`, however many runs ask for it at once; kept loaded.

        After a runtime restart every client's first run finds the model unloaded; each loading
        its own session would hold them all in memory at once (a 4 GB device feels that).
        """
        pending = self._loading.get((key, uid))
        if pending is None:

            async def load() -> Prepared:
                prepared = await prepare()
                loaded = prepared.loaded
                with self._lock:  # before the future completes: a run that comes later finds it loaded
                    if isinstance(loaded, LoadedModel):
                        self._models[key], kind = loaded, "model"
                    else:
                        self._scripts[key], kind = loaded, "script"
                logger.info("loaded %s %r from the backing Redis", kind, key)
                return prepared

            pending = asyncio.ensure_future(load())
            self._loading[(key, uid)] = pending

            def done(future: asyncio.Future[Prepared]) -> None:
                self._loading.pop((key, uid), None)
                if not future.cancelled():
                    future.exception()  # retrieved: every waiter may have gone

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    async def model_run(
        self, model: LoadedModel, inputs: Sequence[Tensor], timeout_ms: int = 0, charge: bool = True
    ) -> list[Tensor]:
        """Run through the device queue; returns the output tensors, or raises RunTimedOut.

        `charge=False` leaves AI.INFO alone, as RedisAI's blocking Gears calls (modelRunnerRun) do.
        """
        request = RunRequest(model.runnable, [t.array for t in inputs], timeout_ms)
        outcome = await self._outcome(model.meta.device, request)
        return self._account(model, outcome) if charge else self._shape(outcome)

    def charge_error(self, model: LoadedModel, error: AIError) -> AIError:
        """Count a run that failed before reaching the engine as an error in AI.INFO; returns the error to raise."""
        stats = self.stats.ensure(model.key, "MODEL", model.meta.backend, model.meta.device, model.meta.tag)
        stats.record(0, 0, error=True)
        return error

    async def model_run_keys(
        self, link: BackendLink, model: LoadedModel, keys: Sequence[bytes], timeout_ms: int = 0
    ) -> list[Tensor]:
        """Run on the tensors stored at `keys` (those this runtime just wrote come from its cache)."""
        return await self.model_run(model, await self.tensor_get_many(link, keys), timeout_ms)

    async def _outcome(self, device: str, request: RunRequest) -> tuple[Any, int] | AIError:
        queue = self.queues.get(device)
        inline = queue.run_inline(request)
        if inline is not None:
            return inline
        try:
            return await asyncio.wrap_future(queue.submit(request))
        except AIError as exc:
            return exc

    def _account(self, model: LoadedModel, outcome: tuple[Any, int] | AIError) -> list[Tensor]:
        """Charge the run to AI.INFO (reference §1.13) and shape its outputs."""
        stats = self.stats.ensure(model.key, "MODEL", model.meta.backend, model.meta.device, model.meta.tag)
        return self._charge(stats, outcome)

    @staticmethod
    def _shape(outcome: tuple[Any, int] | AIError) -> list[Tensor]:
        if isinstance(outcome, AIError):
            raise outcome
        outputs, _ = outcome
        return [Tensor.from_array(o) for o in outputs]

    @staticmethod
    def _charge(stats: RunStats, outcome: tuple[Any, int] | AIError) -> list[Tensor]:
        if isinstance(outcome, AIError):
            stats.record(0, 0, error=True)
            raise outcome
        outputs, duration_us = outcome
        tensors = [Tensor.from_array(o) for o in outputs]
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
        present: set[bytes] = set()
        while True:
            cursor, keys = await link.call(b"SCAN", cursor, b"TYPE", b"string", b"COUNT", 1000)
            for key in keys:
                if self.stats.get(key) is not None:
                    present.add(key)
                    continue
                try:
                    header = await store.get_header(link, marker, key)
                except (AIError, ErrorReply):
                    continue
                if header is not None:
                    present.add(key)
                    backend = header.get("backend", "TORCH")
                    self.stats.ensure(key, kind, backend, str(header.get("device", "CPU")), header.get("tag", ""))
            if int(cursor) == 0:
                break
        # Keys gone without a key event (FLUSHALL, FLUSHDB, SWAPDB): RedisAI frees their entries with them.
        for entry in self.stats.scan(kind):
            if entry.key not in present:
                self.forget(entry.key)
        return self.stats.scan(kind)

    # Scripts -------------------------------------------------------------------------------

    async def script_store(self, link: BackendLink, key: bytes, meta: store.ScriptMeta, source: str) -> None:
        async with self.order.writing(key):
            prepared = await self.prepare_script(key, meta, source)
            await self.store.write(link, store.KIND_SCRIPT, key, prepared.value, meta.uid)
            self.install(prepared)

    async def prepare_script(self, key: bytes, meta: store.ScriptMeta, source: str) -> Prepared:
        """The script compiled and its stored value, to be written and then installed."""
        from gearcam.runtime.ai.engines import backend_module

        module = backend_module("TORCH")
        script = await asyncio.to_thread(module.TorchScript, source, meta.entry_points, meta.device, self.options)
        value = store.pack(store.KIND_SCRIPT, {**meta.__dict__}, source.encode())
        return Prepared(LoadedScript(key, meta, source, script), value)

    async def script_get(self, link: BackendLink, key: bytes) -> tuple[store.ScriptMeta, str]:
        await self.order.settled(key)
        return await self._script_get(link, key)

    async def _script_get(self, link: BackendLink, key: bytes) -> tuple[store.ScriptMeta, str]:
        (value,) = await store.get_typed(link, store.KIND_SCRIPT, [key])
        if value is None:
            raise AIError(replies.SCRIPT_EMPTY)
        try:
            return store.decode_script(value)
        except store.CorruptValue as exc:
            raise exc.reply(key, "script") from None

    async def script_del(self, link: BackendLink, key: bytes) -> None:
        async with self.order.writing(key):
            if not await self.store.delete(link, store.KIND_SCRIPT, key):
                raise AIError(replies.SCRIPT_EMPTY)
            self.forget(key)

    async def script(self, link: BackendLink, key: bytes) -> LoadedScript:
        await self.order.settled(key)
        trusted = await self.store.trusted(link, key)
        with self._lock:
            cached = self._scripts.get(key)
        if trusted is not None and cached is not None and trusted == Trusted(store.KIND_SCRIPT, cached.meta.uid):
            return cached
        token = self.store.token(link, key)
        meta, source = await self._script_get(link, key)
        if cached is not None and cached.meta.uid == meta.uid:
            self.store.learn(key, store.KIND_SCRIPT, meta.uid, token)
            return cached
        prepared = await self._prepared_once(key, meta.uid, lambda: self.prepare_script(key, meta, source))
        loaded = prepared.loaded
        assert isinstance(loaded, LoadedScript)
        self.store.learn(key, store.KIND_SCRIPT, meta.uid, token)
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
        host: Any = None,
    ) -> list[Tensor]:
        """`host` (engines.torch.ScriptHost) serves the script's redis.execute and redisAI.model_execute."""
        arrays = [t.array for t in inputs]
        request = RunRequest(
            Runnable(script.script),
            arrays,
            timeout_ms,
            call=lambda: script.script.run(function, arrays, keys, args, host),
        )
        outcome = await self._outcome(script.meta.device, request)
        if not charge:
            return self._shape(outcome)
        stats = self.stats.ensure(script.key, "SCRIPT", "TORCH", script.meta.device, script.meta.tag)
        return self._charge(stats, outcome)
