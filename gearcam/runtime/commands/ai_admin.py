"""AI.INFO, AI.CONFIG and the `ai` sections of INFO MODULES."""

from __future__ import annotations

import logging
import resource
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.ai import store
from gearcam.runtime.ai.engines import BACKENDS, backend_module, engine_versions, threads_per_run
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.ai.service import AIService
from gearcam.runtime.commands.base import Context, as_int, upper
from gearcam.runtime.resp import ErrorReply, SimpleString

__all__ = ["AI_MODULE_VERSION", "ai_config", "ai_info", "info_sections"]

logger = logging.getLogger(__name__)

AI_MODULE_VERSION = 10207  # RedisAI 1.2.7, the release the runtime follows


async def ai_info(ctx: Context, args: list[bytes]) -> Any:
    if len(args) not in (2, 3):
        raise ErrorReply(replies.arity("AI.INFO"))
    key = args[1]
    ai = ctx.state.ai
    await ai.order.settled(key)  # a store or delete of the key that arrived first is seen
    for kind, marker in (("MODEL", store.KIND_MODEL), ("SCRIPT", store.KIND_SCRIPT)):
        try:
            header = await store.get_header(ctx.link, marker, key)
        except (ErrorReply, AIError):
            continue
        if header is not None:
            entry = ai.stats.ensure(
                key, kind, header.get("backend", "TORCH"), str(header.get("device", "CPU")), header.get("tag", "")
            )
            break
    else:
        ai.stats.drop(key)
        raise ErrorReply(replies.NO_RUN_INFO)
    if len(args) == 3 and upper(args[2]) == "RESETSTAT":
        entry.reset()
        return SimpleString("OK")
    return entry.reply()


async def ai_config(ctx: Context, args: list[bytes]) -> Any:
    if len(args) < 2:
        raise ErrorReply(replies.arity("AI.CONFIG"))
    ai = ctx.state.ai
    sub = upper(args[1])
    if sub == "BACKENDSPATH":
        if len(args) < 3:
            raise ErrorReply(replies.BACKENDSPATH_MISSING)
        ai.backends_path = args[2].decode("utf-8", "replace")
        return SimpleString("OK")
    if sub == "LOADBACKEND":
        if len(args) < 4:
            raise ErrorReply(replies.arity("AI.CONFIG"))
        backend = upper(args[2])
        if backend not in BACKENDS:
            raise ErrorReply(replies.UNSUPPORTED_BACKEND)
        # The path names a RedisAI .so; the runtime's engines are Python packages, so it imports the
        # backend's engine when the path names that backend's library, as RedisAI's dlopen would load it.
        library = BACKENDS[backend].library
        path = args[3].decode("utf-8", "replace")
        if path.rsplit("/", 1)[-1] != library:
            logger.warning("AI.CONFIG LOADBACKEND %s %r: the path must end in RedisAI's %s", backend, path, library)
            raise ErrorReply(replies.ERROR_LOADING_BACKEND)
        try:
            backend_module(backend)
        except AIError as exc:
            raise ErrorReply(f"{replies.ERROR_LOADING_BACKEND}: {exc.message}") from exc
        return SimpleString("OK")
    if sub == "MODEL_CHUNK_SIZE":
        if len(args) < 3:
            raise ErrorReply(replies.CHUNK_SIZE_MISSING)
        size = as_int(args[2], replies.CHUNK_SIZE_INVALID)
        if size <= 0:
            raise ErrorReply(replies.CHUNK_SIZE_INVALID)
        ai.model_chunk_size = size
        return SimpleString("OK")
    if sub == "GET":
        if len(args) < 3:
            raise ErrorReply(replies.arity("AI.CONFIG"))
        name = upper(args[2])
        if name == "BACKENDSPATH":
            return ai.backends_path
        if name == "MODEL_CHUNK_SIZE":
            return ai.model_chunk_size
        return None
    raise ErrorReply(replies.UNSUPPORTED_SUBCOMMAND)


def info_sections(ai: AIService) -> list[tuple[str, list[tuple[str, Any]]]]:
    """The `ai_*` INFO MODULES sections RedisAI prints, with the runtime's values."""
    settings = ai.settings
    versions = engine_versions()
    backends: list[tuple[str, Any]] = []
    names = {"TF": "TensorFlow_version", "TFLITE": "TensorFlowLite_version", "TORCH": "Torch_version",
             "ONNX": "onnxruntime_version"}  # fmt: skip
    for backend, version in versions.items():
        backends.append((names[backend], version))
        if backend == "ONNX":
            # RedisAI keeps one ONNX run slot per worker thread of every device queue (the kill switch's).
            sessions = settings.threads_per_queue * len(ai.queues.all())
            backends.append(("onnxruntime_maximum_run_sessions_number", sessions))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu: list[tuple[str, Any]] = [
        ("self_used_cpu_sys", f"{usage.ru_stime:.6f}"),
        ("self_used_cpu_user", f"{usage.ru_utime:.6f}"),
        ("children_used_cpu_sys", f"{children.ru_stime:.6f}"),
        ("children_used_cpu_user", f"{children.ru_utime:.6f}"),
    ]
    for queue in ai.queues.all():
        for index, seconds in enumerate(queue.cpu_seconds):
            cpu.append((f"queue_{queue.device}_bthread_n{index + 1}_used_cpu_total", f"{seconds:.6f}"))
    return [
        ("versions", [("RedisAI_version", "1.2.7"), ("low_level_API_version", "1.0.0"), ("rdb_version", 4)]),
        ("git", [("git_sha", "gearcam-runtime")]),
        (
            "load_time_configs",
            [
                ("threads_per_queue", settings.threads_per_queue),
                ("inter_op_parallelism", settings.inter_op_parallelism),
                ("intra_op_parallelism", settings.intra_op_parallelism),
                ("model_execution_timeout", settings.model_execution_timeout),
                ("backend_memory_limit", settings.backend_memory_limit),
            ],
        ),
        ("backends_info", backends),
        ("cpu", cpu),
        # Not in RedisAI: the runtime's own counters (engine runs per queue, tensor cache).
        ("runtime", [
            *((f"queue_{q.device}_engine_runs", q.batches_run) for q in ai.queues.all()),
            *((f"queue_{q.device}_abandoned_runs", q.abandoned) for q in ai.queues.all()),
            *((f"queue_{q.device}_inline_runs", q.inline_runs) for q in ai.queues.all()),
            *((f"queue_{q.device}_busy_seconds", f"{q.busy_seconds:.6f}") for q in ai.queues.all()),
            *((f"queue_{q.device}_queued_requests", q.queued_requests) for q in ai.queues.all()),
            *((f"queue_{q.device}_wait_seconds", f"{q.wait_seconds:.6f}") for q in ai.queues.all()),
            # The threads a run gets where the runtime picked them (INTRA_OP_PARALLELISM 0 above).
            *((f"{backend.lower()}_threads_per_run", n) for backend, n in threads_per_run(ai.options).items()),
            ("tensor_cache_bytes", ai.store.cache.size_bytes),
            ("tensor_cache_hits", ai.store.cache.hits),
            ("tensor_cache_misses", ai.store.cache.misses),
            ("engines_reused", ai.engines.hits),
            ("keys_trusted", len(ai.store.coherence)),
            ("keys_withdrawn", ai.store.coherence.withdrawn),
            # When AI writes are answered (ai/write_ack.py): "sent" (write-behind) or "stored".
            ("write_ack", "sent" if ai.store.acks.behind else "stored"),
            ("writes_refused_after_ack", ai.store.acks.refused),
        ]),
    ]  # fmt: skip
