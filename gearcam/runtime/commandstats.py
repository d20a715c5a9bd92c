"""INFO commandstats for the commands the runtime serves itself (AI.*, RG.*).

Redis counts every command it runs, module commands included, in `INFO commandstats`
(`cmdstat_ai.tensorset:calls=...`), and monitoring reads it (Prometheus' redis_exporter turns
each line into per-command rates and times). The backing Redis never sees the runtime's own
commands, so the runtime counts them and `INFO` gets their lines in that section, in Redis'
form; `CONFIG RESETSTAT` through the runtime zeroes them with Redis' own.
"""

from __future__ import annotations

__all__ = ["CommandStats"]


class CommandStats:
    def __init__(self) -> None:
        # name (lower case, as Redis prints it) -> [calls, µs, rejected, failed]
        self._counts: dict[str, list[int]] = {}

    def ran(self, name: str, duration_us: int, failed: bool) -> None:
        """A command ran (`failed`: it answered an error, Redis' failed_calls)."""
        counts = self._counts.get(name)
        if counts is None:
            counts = self._counts[name] = [0, 0, 0, 0]
        counts[0] += 1
        counts[1] += duration_us
        counts[3] += failed

    def rejected(self, name: str) -> None:
        """A command refused before it ran (NOAUTH, an ACL rule): Redis' rejected_calls, not a call."""
        counts = self._counts.setdefault(name, [0, 0, 0, 0])
        counts[2] += 1

    def reset(self) -> None:
        self._counts.clear()

    def lines(self) -> str:
        """The section's lines, as Redis 7 writes them."""
        return "".join(
            f"cmdstat_{name.lower()}:calls={calls},usec={usec},usec_per_call={usec / calls if calls else 0:.2f},"
            f"rejected_calls={rejected},failed_calls={failed}\r\n"
            for name, (calls, usec, rejected, failed) in self._counts.items()
        )
