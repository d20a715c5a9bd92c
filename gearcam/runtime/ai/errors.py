"""What the AI layer raises besides RedisAI's own error replies."""

from __future__ import annotations

__all__ = ["RunTimedOut"]


class RunTimedOut(Exception):
    """A run waited in its queue past its TIMEOUT; RedisAI answers the command with the status TIMEDOUT."""
