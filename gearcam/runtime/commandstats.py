"""INFO commandstats and errorstats for the commands the runtime serves itself (AI.*, RG.*).

Redis counts every command it runs, module commands included, in `INFO commandstats`
(`cmdstat_ai.tensorset:calls=...`) and `total_commands_processed`, and every error reply by its
code in `INFO errorstats` (`errorstat_WRONGTYPE:count=...`) and `total_error_replies`; monitoring
reads them (Prometheus' redis_exporter turns each line into rates and times). The backing Redis never sees the runtime's
own commands, so the runtime counts them and `INFO` gets their counts in those sections, in
Redis' form; `CONFIG RESETSTAT` through the runtime zeroes them with Redis' own.
"""

from __future__ import annotations

from gearcam.runtime.resp import ErrorReply

__all__ = ["CommandStats", "error_code"]


def error_code(error: ErrorReply) -> str:
    """The code Redis files an error reply under: its first word, if a space comes within 31 characters; else ERR."""
    space = error.message.find(" ", 0, 31)
    return error.message[:space] if space > 0 else "ERR"


class CommandStats:
    def __init__(self) -> None:
        # name (lower case, as Redis prints it) -> [calls, µs, rejected, failed]
        self._counts: dict[str, list[int]] = {}
        self.errors: dict[str, int] = {}  # error code -> replies

    def ran(self, name: str, duration_us: int, error: ErrorReply | None) -> None:
        """A command ran (`error`: the error it answered, Redis' failed_calls)."""
        counts = self._counts.get(name)
        if counts is None:
            counts = self._counts[name] = [0, 0, 0, 0]
        counts[0] += 1
        counts[1] += duration_us
        if error is not None:
            counts[3] += 1
            self._count(error)

    def rejected(self, name: str, refusal: ErrorReply) -> None:
        """A command refused before it ran (NOAUTH, an ACL rule): Redis' rejected_calls, not a call."""
        counts = self._counts.setdefault(name, [0, 0, 0, 0])
        counts[2] += 1
        self._count(refusal)

    def _count(self, error: ErrorReply) -> None:
        code = error_code(error)
        self.errors[code] = self.errors.get(code, 0) + 1

    def calls(self) -> int:
        """Calls of every command (Redis' total_commands_processed counts them with its own)."""
        return sum(counts[0] for counts in self._counts.values())

    def reset(self) -> None:
        self._counts.clear()
        self.errors.clear()

    def lines(self) -> str:
        """The commandstats section's lines, as Redis 7 writes them."""
        return "".join(
            f"cmdstat_{name.lower()}:calls={calls},usec={usec},usec_per_call={usec / calls if calls else 0:.2f},"
            f"rejected_calls={rejected},failed_calls={failed}\r\n"
            for name, (calls, usec, rejected, failed) in self._counts.items()
        )
