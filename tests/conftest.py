"""Helpers every suite may use: free loopback ports and one embedded Redis per session.

Suite-specific fixtures live in the suite's own conftest.py (tests/runtime/conftest.py).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gearcam.redis_server import EmbeddedRedis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-url", default=None, help="run the conformance suites against this server (e.g. one with the modules)"
    )


@pytest.fixture(scope="session")
def embedded_redis() -> Iterator[EmbeddedRedis]:
    """One real redis-server for the session, on a free loopback port; tests must not depend on its keys."""
    with EmbeddedRedis() as server:
        yield server
