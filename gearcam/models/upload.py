"""Store a verified artifact with AI.MODELSTORE, on RedisAI 1.2 or the gearcam runtime alike.

Everything that can be checked locally is checked before anything is sent: the
manifest entry exists, the file's sha256 matches, the backend is one RedisAI knows
and the batching options are consistent. AI.MODELSTORE itself replaces the key only
when the server could load the model, so a refusal leaves what Redis held untouched.

The blob goes out in ``MODEL_CHUNK_SIZE`` pieces (``BLOB chunk1 chunk2 ...``), as
redisai-py does: the server's value from ``AI.CONFIG GET MODEL_CHUNK_SIZE``, else the
configured default. The pieces are memoryviews, so the model is not copied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gearcam.config import ModelsSettings
from gearcam.errors import ConfigError, NetworkError, OperatorError, module_missing
from gearcam.models.engines import ENGINE_PACKAGES
from gearcam.models.manifest import Artifact, check_backend

__all__ = ["StoreOptions", "chunks", "modelstore_args", "server_chunk_size", "store_model"]

logger = logging.getLogger(__name__)

Arg = str | int | memoryview


@dataclass(frozen=True)
class StoreOptions:
    """AI.MODELSTORE's options other than the blob (from the ``models`` configuration section)."""

    key: str
    device: str = "CPU"
    tag: str | None = None
    batchsize: int = 0
    minbatchsize: int = 0
    minbatchtimeout: int = 0

    @classmethod
    def from_settings(cls, settings: ModelsSettings, artifact: Artifact) -> StoreOptions:
        tag = settings.tag if settings.tag is not None else f"{artifact.name}@{artifact.sha256[:12]}"
        return cls(
            settings.key, settings.device, tag, settings.batchsize, settings.minbatchsize, settings.minbatchtimeout
        )


def chunks(blob: bytes, size: int) -> list[memoryview]:
    """``blob`` cut into views of at most ``size`` bytes (one view when it fits)."""
    if size <= 0:
        raise ConfigError(f"MODEL_CHUNK_SIZE must be positive, got {size}; set gearcam.runtime.model_chunk_size")
    view = memoryview(blob)
    return [view[start : start + size] for start in range(0, len(blob), size)] or [view]


def modelstore_args(artifact: Artifact, blob: bytes, options: StoreOptions, chunk_size: int) -> list[Arg]:
    """The AI.MODELSTORE command for one artifact, in RedisAI 1.2's fixed argument order."""
    backend = check_backend(artifact.backend, f"manifest entry {artifact.name!r}")
    if options.minbatchsize and not options.batchsize:
        raise ConfigError(
            f"models.minbatchsize={options.minbatchsize} needs models.batchsize > 0 "
            "(RedisAI: MINBATCHSIZE specified without BATCHSIZE)"
        )
    if options.minbatchtimeout and not options.minbatchsize:
        raise ConfigError(
            f"models.minbatchtimeout={options.minbatchtimeout} needs models.minbatchsize > 0 "
            "(RedisAI: MINBATCHTIMEOUT specified without MINBATCHSIZE)"
        )
    args: list[Arg] = ["AI.MODELSTORE", options.key, backend, options.device]
    if options.tag:
        args += ["TAG", options.tag]
    if options.batchsize:
        args += ["BATCHSIZE", options.batchsize]
        if options.minbatchsize:
            args += ["MINBATCHSIZE", options.minbatchsize]
            if options.minbatchtimeout:
                args += ["MINBATCHTIMEOUT", options.minbatchtimeout]
    if backend == "TF":  # mandatory for TF, refused for the other backends
        args += ["INPUTS", len(artifact.inputs), *artifact.input_names]
        args += ["OUTPUTS", len(artifact.outputs), *artifact.output_names]
    args += ["BLOB", *chunks(blob, chunk_size)]
    return args


def server_chunk_size(client: redis.Redis, default: int) -> int:
    """The server's MODEL_CHUNK_SIZE (``AI.CONFIG GET``), or ``default`` when it does not say."""
    try:
        reply: Any = client.execute_command("AI.CONFIG", "GET", "MODEL_CHUNK_SIZE")  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        if "unknown command" in str(exc).lower():
            raise module_missing("AI.*", "redisai.so") from exc
        return default
    try:
        size = int(reply)
    except (TypeError, ValueError):
        return default
    return size if size > 0 else default


def _refused(artifact: Artifact, key: str, message: str) -> OperatorError:
    if "could not load backend" in message.lower() and "pip install" not in message:
        package = ENGINE_PACKAGES[artifact.backend]
        return OperatorError(
            f"the server could not load its {artifact.backend} backend for {artifact.file} ({message}); "
            f"on RedisAI load the backend (AI.CONFIG LOADBACKEND), on the gearcam runtime pip install {package}"
        )
    return OperatorError(f"AI.MODELSTORE {key} refused {artifact.file} ({artifact.name}): {message}")


def store_model(client: redis.Redis, artifact: Artifact, blob: bytes, options: StoreOptions, chunk_size: int) -> None:
    """Send AI.MODELSTORE; server refusals and network failures become gearcam errors that name the fix."""
    args = modelstore_args(artifact, blob, options, chunk_size)
    pieces = len(args) - args.index("BLOB") - 1
    logger.info(
        "storing %s (%s, %d bytes in %d chunk(s)) at %s on %s",
        artifact.name,
        artifact.backend,
        len(blob),
        pieces,
        options.key,
        options.device,
    )
    try:
        client.execute_command(*args)  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        raise _refused(artifact, options.key, str(exc)) from exc
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise NetworkError(f"AI.MODELSTORE of {artifact.name} failed: {exc}; is Redis up (`invoke up`)?") from exc
