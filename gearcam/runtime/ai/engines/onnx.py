"""The ONNX backend on ONNX Runtime, as RedisAI's onnxruntime backend behaves."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from gearcam.runtime import replies
from gearcam.runtime.ai.engines import EngineOptions, parse_device
from gearcam.runtime.ai.engines.file_access import external_data_location
from gearcam.runtime.ai.engines.watchdog import watchdog
from gearcam.runtime.ai.errors import AIError

VERSION = ort.__version__
log = logging.getLogger(__name__)
_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")


# ONNX Runtime >= 1.16 says "inputs/outputs" in its shape errors; RedisAI 1.2.7's (1.7) said "inputs".
_NEWER_FIX = "Please fix either the inputs/outputs or the model."
_RELEASED_FIX = "Please fix either the inputs or the model."


# RedisAI's words when its allocator refuses ONNX Runtime past BACKEND_MEMORY_LIMIT; here the arena says
# "... BFCArena::AllocateRawInternal ... Available memory of 0 is smaller than requested bytes of N".
MEMORY_LIMIT_EXCEEDED = "Onnxruntime memory limit exceeded, memory allocation failed."
_ARENA_FULL = "BFCArena::AllocateRawInternal"


def _message(exc: Exception) -> str:
    """ONNX Runtime's text without its status prefix; line breaks stay (the reply spaces them, as Redis does)."""
    text = _PREFIX.sub("", str(exc)).strip().replace(_NEWER_FIX, _RELEASED_FIX)
    return MEMORY_LIMIT_EXCEEDED if _ARENA_FULL in text else text


_limit_lock = threading.Lock()
_limit_registered = False


def _limit_memory(limit_mb: int, session_options: ort.SessionOptions) -> None:
    """BACKEND_MEMORY_LIMIT, which RedisAI applies to ONNX Runtime alone: one arena of at most that many
    MB, which every ONNX session of the process allocates from while it runs (activations, outputs).

    The arena is ONNX Runtime's environment allocator, registered once (the limit is a load-time
    setting); it grows by what is asked (not by powers of two), so the limit means what it says.
    A model's weights are not allocated from it: RedisAI's counts them, ONNX Runtime's Python API
    cannot route them there.
    """
    global _limit_registered
    with _limit_lock:
        if not _limit_registered:
            arena = ort.OrtArenaCfg(limit_mb * 1024 * 1024, 1, -1, -1)  # 1: kSameAsRequested
            cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(cpu, arena)
            _limit_registered = True
    session_options.add_session_config_entry("session.use_env_allocators", "1")


def _feed(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """ONNX Runtime takes STRING tensors as Python str (it would pass bytes on as their repr, "b'...'")."""
    if array.dtype != object:
        return array
    try:
        items = [x.decode() if isinstance(x, bytes) else x for x in array.flat]
    except UnicodeDecodeError as exc:
        raise AIError(f"ERR ONNX Runtime takes STRING tensors as UTF-8 text only: {exc}") from exc
    return np.array(items, dtype=object).reshape(array.shape)


class OnnxModel:
    def __init__(self, session: ort.InferenceSession, options: EngineOptions) -> None:
        self._session = session
        self._timeout = options.model_execution_timeout_ms / 1000.0
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, inputs: Sequence[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        if len(inputs) != len(self.input_names):
            raise AIError(f"ERR Expected {len(self.input_names)} inputs but got {len(inputs)}")
        run_options = ort.RunOptions()
        # MODEL_EXECUTION_TIMEOUT: RedisAI sets ORT's terminate flag on runs that take too long.
        token = watchdog.watch(self._timeout, lambda: setattr(run_options, "terminate", True))
        try:
            outputs = self._session.run(
                None, dict(zip(self.input_names, [_feed(a) for a in inputs], strict=True)), run_options
            )
        except Exception as exc:
            if run_options.terminate:
                raise AIError(replies.ONNX_TERMINATED) from exc
            raise AIError(_message(exc)) from exc
        finally:
            watchdog.cancel(token)
        return [np.asarray(o) for o in outputs if isinstance(o, np.ndarray)]


def _refuse_external_data(blob: bytes) -> None:
    """RedisAI's refusal of tensors kept in files: ONNX Runtime would read them from the working directory."""
    try:
        location = external_data_location(blob)
    except ValueError as exc:
        raise AIError("No graph was found in the protobuf.") from exc
    if location is not None:
        log.warning(
            "refused an ONNX model whose tensor names the file %r (external data): a model may not read "
            "files on the runtime's machine",
            location,
        )
        raise AIError("Initializer tensors with external data is not allowed.")


def load(device: str, blob: bytes, inputs: list[str], outputs: list[str], options: EngineOptions) -> OnnxModel:
    kind, index = parse_device(device)
    providers: list[Any] = ["CPUExecutionProvider"]
    if kind == "GPU":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise AIError(replies.gpu_missing("ONNX"))
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    _refuse_external_data(blob)
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    # The runtime shares its cores with Redis and the clients: idle ORT workers must sleep, not
    # spin (measured: ~10 % more throughput for batched EfficientNet-Lite0 on 2 cores).
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if options.intra_op_parallelism:
        session_options.intra_op_num_threads = options.intra_op_parallelism
    if options.inter_op_parallelism:
        session_options.inter_op_num_threads = options.inter_op_parallelism
    if options.backend_memory_limit_mb and kind == "CPU":
        _limit_memory(options.backend_memory_limit_mb, session_options)
    try:
        session = ort.InferenceSession(blob, session_options, providers=providers)
    except Exception as exc:
        text = _message(exc)
        if "protobuf parsing failed" in text or "INVALID_PROTOBUF" in str(exc):
            raise AIError("No graph was found in the protobuf.") from exc
        if text == MEMORY_LIMIT_EXCEEDED:
            raise AIError(f"Exception during initialization: {text}") from exc
        raise AIError(text) from exc
    return OnnxModel(session, options)
