"""Fixtures for the pipeline suite: a real redis-server, the runtime in front of it, and a loaded pipeline.

The loader stores the ONNX classifier (ONNX Runtime serves it), the labels, the config
hash and the Gears script, exactly as `python -m gearcam.loader` does. `--redis-url URL`
runs the suite against another server instead (a Redis with RedisGears + RedisAI).
Every test feeds its own camera stream (`camera:t<n>`) and looks only at entries whose
`source` is that stream, so tests do not see each other's frames.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gearcam.config import CONFIG_KEY, Settings, load_settings
from gearcam.loader import load
from tests.conftest import data_file, free_port
from tests.runtime.conftest import Backing, Runtime

MODEL = "lite0-onnx"
_streams = itertools.count(1)


def picture(name: str) -> bytes:
    """A test picture: ../shared/data, or the copy shipped with the camera samples."""
    return data_file(name).read_bytes()


def pipeline_settings(**pipeline: Any) -> Settings:
    return load_settings(yaml_path=Path("/nonexistent.yaml"), environ={}, models={"name": MODEL}, pipeline=pipeline)


@pytest.fixture(scope="module")
def server_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url: str | None = request.config.getoption("--redis-url")
    if url:
        yield url
        return
    backing = Backing(free_port(), tmp_path_factory.mktemp("pipeline-redis"))
    backing.start()
    runtime = Runtime(free_port(), backing.url)
    try:
        runtime.start()
        yield runtime.url
    finally:
        runtime.stop()
        backing.stop()


@pytest.fixture(scope="module")
def loaded(server_url: str) -> Iterator[redis.Redis]:
    """A client of a server the loader has loaded (model, labels, config, Gears script)."""
    client = redis.Redis.from_url(server_url, socket_timeout=60)
    client.flushall()
    try:
        load(client, pipeline_settings())
    except Exception as exc:
        if "no RG.* commands" in str(exc):
            pytest.skip(f"the server at {server_url} answers RG.PYEXECUTE with an unknown-command error: "
                        "the runtime's RedisGears part (gearcam/runtime/gears) is not serving RG.* yet")  # fmt: skip
        raise
    yield client
    client.close()


@pytest.fixture
def r(loaded: redis.Redis) -> Iterator[redis.Redis]:
    """The loaded server with the default parameters restored before each test."""
    settings = pipeline_settings()
    loaded.hset(CONFIG_KEY, mapping={"sample_every": 1, "threshold": settings.pipeline.threshold,
                                     "target_classes": "281-285", "model_key": settings.models.key})  # fmt: skip
    yield loaded


@pytest.fixture
def camera() -> str:
    """A camera stream no other test writes to."""
    return f"camera:t{next(_streams)}-{int(time.time() * 1000) % 100000}"
