"""The AI layer's errors: only the connection layer turns them into RESP replies."""

from __future__ import annotations

__all__ = ["AIError", "RunTimedOut"]


class RunTimedOut(Exception):
    """A run waited in its queue past its TIMEOUT; RedisAI answers the command with the status TIMEDOUT."""


class AIError(Exception):
    """A refusal in RedisAI's words, prefix included ("ERR ...", "WRONGTYPE ..."): sent to the client as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
