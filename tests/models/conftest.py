"""The models suites use the runtime suites' real redis-server + runtime fixtures."""

from tests.runtime.conftest import backing, r, runtime, server_url  # noqa: F401
