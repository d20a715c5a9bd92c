"""gearcam's one exception tree, split by who must act.

    GearcamError
     ├── CallerError      the request was wrong: fix the arguments or the input
     ├── OperatorError    the installation was wrong: install, configure or start something
     │    ├── ConfigError       a configuration key has a bad value
     │    └── EngineMissing     an inference engine is not installed
     └── NetworkError     a peer (Redis, a camera) could not be reached in time

Messages say what failed, the value, and the fix.
"""

from __future__ import annotations

import sys

__all__ = [
    "CallerError",
    "ConfigError",
    "EngineMissing",
    "GearcamError",
    "NetworkError",
    "OperatorError",
    "exit_with",
    "module_missing",
]


class GearcamError(Exception):
    """Base of every error gearcam raises on purpose."""


class CallerError(GearcamError):
    """The caller sent something wrong; the message says what to send instead."""


class OperatorError(GearcamError):
    """The machine or configuration is wrong; the message says what to install or set."""


class ConfigError(OperatorError):
    """A configuration value is invalid."""


class EngineMissing(OperatorError):
    """An inference engine's Python package is not installed."""

    def __init__(self, backend: str, package: str) -> None:
        self.backend = backend
        self.package = package
        super().__init__(f"backend {backend} needs the Python package '{package}'; pip install {package}")


class NetworkError(GearcamError):
    """A peer could not be reached or stopped answering."""


def module_missing(commands: str, module: str) -> OperatorError:
    """The server answered "unknown command" to AI.* or RG.*: it is neither the runtime nor a Redis with the module."""
    return OperatorError(
        f"the server has no {commands} commands; start the gearcam runtime (`invoke up`) "
        f"or a Redis with {module} loaded"
    )


def exit_with(exc: GearcamError) -> int:
    """What a command-line program does with an error: say it on stderr; exit 2 for the caller's mistake, else 1."""
    print(f"error: {exc}", file=sys.stderr)
    return 2 if isinstance(exc, CallerError) else 1
