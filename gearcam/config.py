"""One source of configuration for every gearcam process.

Tiers, lowest first: the typed defaults below, the ``gearcam:`` section of
``invoke.yaml``, then environment variables, then command-line flags (applied by
each ``main()``). Only declared keys can be overridden, so a typo fails loudly
with the key and the value instead of being silently ignored.

Environment variables: the well-known names of ARCHITECTURE.md (``REDIS_URL``,
``STREAM``, ``PORT``) plus ``GEARCAM_<SECTION>__<KEY>`` for anything else, e.g.
``GEARCAM_RUNTIME__THREADS_PER_QUEUE=2``.

The names shared by all parts (streams, keys, ports) are defined here once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gearcam.errors import ConfigError

__all__ = [
    "BACKING_PORT",
    "CAMERA_PREFIX",
    "CONFIG_KEY",
    "MODEL_KEY",
    "REDIS_PORT",
    "STATS_PREFIX",
    "STREAM_ALL",
    "STREAM_CATS",
    "WEB_ALL_PORT",
    "WEB_CATS_PORT",
    "RuntimeSettings",
    "Settings",
    "load_settings",
    "redact_url",
]

# ARCHITECTURE.md §2: the contract between the parts.
REDIS_PORT = 6379
BACKING_PORT = 6380
WEB_ALL_PORT = 3000
WEB_CATS_PORT = 3001
CAMERA_PREFIX = "camera:"
STREAM_ALL = "all"
STREAM_CATS = "cats"
MODEL_KEY = "models:classifier"
CONFIG_KEY = "gearcam:config"
STATS_PREFIX = "gearcam:stats:"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RuntimeSettings(_Section):
    """The RESP server that serves AI.* and RG.* in front of a stock redis-server."""

    host: str = Field("127.0.0.1", description="address the runtime listens on")
    port: int = Field(REDIS_PORT, ge=0, le=65535, description="public RESP port (0 picks a free one)")
    unixsocket: str | None = Field(None, description="also listen on this unix socket")
    backing_url: str | None = Field(
        None, description="redis:// or unix:// URL of the backing redis-server; unset means start an embedded one"
    )
    backing_port: int = Field(BACKING_PORT, ge=0, le=65535, description="port of the embedded backing redis-server")
    threads_per_queue: int = Field(1, ge=1, le=64, description="RedisAI THREADS_PER_QUEUE: workers per device queue")
    intra_op_parallelism: int = Field(0, ge=0, description="RedisAI INTRA_OP_PARALLELISM (0: engine default)")
    inter_op_parallelism: int = Field(0, ge=0, description="RedisAI INTER_OP_PARALLELISM (0: engine default)")
    model_execution_timeout: int = Field(
        5000, ge=1000, description="RedisAI MODEL_EXECUTION_TIMEOUT in ms (ONNX runs are stopped after it)"
    )
    model_chunk_size: int = Field(511 * 1024 * 1024, gt=0, description="RedisAI MODEL_CHUNK_SIZE in bytes")
    backend_memory_limit: int = Field(0, ge=0, description="RedisAI BACKEND_MEMORY_LIMIT in MB (0: none)")
    tensor_cache_mb: int = Field(
        256, ge=0, description="memory for tensors the runtime just wrote or read, so a pipeline does not re-read them"
    )
    max_request_size: int = Field(
        1024 * 1024 * 1024, gt=0, description="largest request a client may send, in bytes (Redis' query buffer limit)"
    )
    connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for the backing redis-server")
    shutdown_grace: float = Field(5.0, ge=0, description="seconds in-flight commands get on shutdown")


class Settings(_Section):
    redis_url: str = Field(f"redis://localhost:{REDIS_PORT}", description="where clients reach Redis (or the runtime)")
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)


# Well-known environment variables (ARCHITECTURE.md §2) and the key each one sets.
_ALIASES = {"REDIS_URL": ("redis_url",)}
_PREFIX = "GEARCAM_"


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, path in _ALIASES.items():
        if name in environ:
            _set_path(found, path, environ[name])
    for name, value in environ.items():
        if name.startswith(_PREFIX) and len(name) > len(_PREFIX):
            _set_path(found, tuple(name[len(_PREFIX) :].lower().split("__")), value)
    return found


def _from_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; fix the file or remove it") from exc
    section = data.get("gearcam", {}) if isinstance(data, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'gearcam' must be a mapping, got {type(section).__name__}")
    return section


def load_settings(
    yaml_path: Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings from every tier; ``overrides`` are the CLI-flag tier."""
    tree: dict[str, Any] = {}
    path = yaml_path if yaml_path is not None else PROJECT_ROOT / "invoke.yaml"
    if path.exists():
        tree = _merge(tree, _from_yaml(path))
    tree = _merge(tree, _from_environ(os.environ if environ is None else environ))
    tree = _merge(tree, overrides)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid gearcam configuration: {problems}") from exc


def redact_url(url: str) -> str:
    """The URL with its password replaced, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
