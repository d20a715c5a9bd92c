"""INFO commandstats and errorstats for the commands the runtime serves itself (AI.*, RG.*).

Redis counts every command it runs, module commands included, in `INFO commandstats`
(`cmdstat_ai.tensorset:calls=...`) and `total_commands_processed`, and every error reply by its
code in `INFO errorstats` (`errorstat_WRONGTYPE:count=...`) and `total_error_replies`; monitoring
reads them (Prometheus' redis_exporter turns each line into rates and times). The backing Redis never sees the runtime's
own commands, so the runtime counts them and `INFO` gets their counts in those sections, in
Redis' form; `CONFIG RESETSTAT` through the runtime zeroes them with Redis' own.

The other way round, the backing Redis counts commands the runtime sends for itself: each AI
write's `SET`, the checked commit's `EVALSHA` and the calls its Lua script makes, fences'
`PUBLISH`, the 5-second `INFO` and `CONFIG GET` looks, each link's `CLIENT SETNAME`. RedisAI and
RedisGears store and read through the module API, which Redis does not count, so 100
`AI.TENSORSET`s would show as 100 `set` calls besides. `OWN` tallies those commands as they are
sent (and their error replies) and `INFO` takes them out of Redis' figures. The commands of
Gears code (`execute()`) and of a Gears StreamReader's reads stay counted: RedisGears runs them
with `RM_Call`, which Redis counts; what the Gears service reads through the module API there
(a KeysReader record's key) and its looks at a stream between batches are the runtime's
(gears/link.py's `own`).
"""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gearcam.runtime.resp import ErrorReply

__all__ = ["CONTAINERS", "OWN", "SAMPLE_S", "CommandStats", "Inner", "OwnCalls", "error_code", "stat_name"]

# Redis' commands with subcommands, which it counts and lists by both (`cmdstat_config|get`, CLIENT LIST's
# `cmd=config|get`).
CONTAINERS = frozenset(
    "ACL CLIENT CLUSTER COMMAND CONFIG FUNCTION LATENCY MEMORY MODULE OBJECT PUBSUB SCRIPT SLOWLOG XGROUP XINFO".split()
)
_CONTAINERS = frozenset(name.encode() for name in CONTAINERS)
# Error codes Redis answers before it runs a command (rejected_calls); any other error reply is a failed call.
_REJECTING = frozenset("NOPERM NOAUTH OOM READONLY MISCONF NOREPLICAS LOADING BUSY MASTERDOWN".split())
_NOT_RUN = _REJECTING | {"NOSCRIPT"}  # a script answered with one of these never ran its calls
SAMPLE_S = 0.1  # how often the calls are sampled for INFO's instantaneous_ops_per_sec, as Redis' serverCron does
# A script's calls inside Redis, from its EVALSHA's arguments and its reply frame.
Inner = Callable[[Sequence[Any], bytes], Iterable[bytes]]
_LINE = re.compile(
    r"^cmdstat_([^:]+):calls=(\d+),usec=(\d+),usec_per_call=[\d.]+,rejected_calls=(\d+),failed_calls=(\d+)"
)


def error_code(error: ErrorReply) -> str:
    """The code Redis files an error reply under: its first word, if a space comes within 31 characters; else ERR."""
    return _code(error.message)


def _code(message: str) -> str:
    space = message.find(" ", 0, 31)
    return message[:space] if space > 0 else "ERR"


def stat_name(args: Sequence[Any]) -> bytes:
    """The name Redis counts a command under, as sent (case kept; `CONFIG|GET` for a subcommand)."""
    name = args[0] if isinstance(args[0], bytes) else str(args[0]).encode()
    if len(args) > 1 and name.upper() in _CONTAINERS:
        sub = args[1] if isinstance(args[1], bytes) else str(args[1]).encode()
        return name + b"|" + sub
    return name


def _text(name: bytes) -> str:
    return name.decode("utf-8", "replace").lower()


class OwnCalls:
    """The commands the runtime sent the backing Redis for itself, by the name Redis counts them under.

    A Lua script of the runtime's is declared with the commands it calls inside Redis (`script`), as
    far as its arguments and reply tell them; where they do not (whether the key a commit checks was
    there), its usual path is taken, and another path leaves a call or two in Redis' figures.
    Links on the Gears loop's thread count here too, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[bytes] = Counter()
        self.rejected: Counter[bytes] = Counter()
        self.failed: Counter[bytes] = Counter()
        self.errors: Counter[str] = Counter()  # error code -> replies
        self._scripts: dict[bytes, Inner] = {}

    def script(self, sha: bytes, source: bytes, inner: Inner) -> None:
        """Declare a script's inner calls, a function of its EVALSHA/EVAL arguments and its reply (both name it)."""
        self._scripts[sha] = self._scripts[source] = inner

    def sent(self, args: Sequence[Any]) -> Any:
        """Count one command sent; what to hand `answered` with its reply: its name, or for a script of the
        runtime's, its name and arguments (its calls inside Redis are counted once it answered)."""
        name = stat_name(args)
        with self._lock:
            self.calls[name] += 1
        if name in (b"EVALSHA", b"EVAL") and len(args) > 1 and args[1] in self._scripts:
            return name, args
        return name

    def answered(self, sent: Any, frame: bytes) -> None:
        """A counted command's reply came (its RESP frame): a script's inner calls count unless it never ran,
        an error reply is a failed call, or a rejected one (not a call, as Redis counts it)."""
        name, args = sent if isinstance(sent, tuple) else (sent, None)
        code = _code(frame[1 : frame.find(b"\r")].decode("utf-8", "replace")) if frame[:1] == b"-" else None
        if args is not None and code not in _NOT_RUN:
            inner = self._scripts[args[1]](args, frame)
            with self._lock:
                self.calls.update(inner)
        if code is not None:
            self.failed_call(name, code)

    def failed_call(self, name: bytes, code: str) -> None:
        """A counted command failed with the error `code` (at its reply, or at EXEC for one queued in MULTI)."""
        with self._lock:
            self.errors[code] += 1
            if code in _REJECTING:
                self.rejected[name] += 1
                self.calls[name] -= 1
            else:
                self.failed[name] += 1

    def total_calls(self) -> int:
        with self._lock:
            return sum(max(count, 0) for count in self.calls.values())

    def total_errors(self) -> int:
        with self._lock:
            return sum(self.errors.values())

    def reset(self) -> None:
        with self._lock:
            for counter in (self.calls, self.rejected, self.failed, self.errors):
                counter.clear()

    def taken_from(self, lines: str) -> str:
        """Redis' commandstats lines less these commands (a line left with nothing is dropped); a command's
        time is its calls' share of Redis' figure, which does not tell them apart."""
        own: dict[str, list[int]] = {}
        with self._lock:  # (a count below 0: a refusal answered after a reset, of a command counted before it)
            for counter, at in ((self.calls, 0), (self.rejected, 1), (self.failed, 2)):
                for name, count in counter.items():
                    own.setdefault(_text(name), [0, 0, 0])[at] += max(count, 0)
        out = []
        for line in lines.splitlines(keepends=True):
            match = _LINE.match(line)
            if match is None or match[1] not in own:
                out.append(line)
                continue
            less = own[match[1]]
            calls, usec, rejected, failed = (int(match[i]) for i in range(2, 6))
            left = max(calls - less[0], 0)
            usec = usec * left // calls if calls else 0
            rejected, failed = max(rejected - less[1], 0), max(failed - less[2], 0)
            if left or rejected or failed:
                out.append(
                    f"cmdstat_{match[1]}:calls={left},usec={usec},usec_per_call={usec / left if left else 0:.2f},"
                    f"rejected_calls={rejected},failed_calls={failed}\r\n"
                )
        return "".join(out)


OWN = OwnCalls()  # one runtime a process, one backing Redis: every link of the process counts here


class CommandStats:
    def __init__(self) -> None:
        # name (lower case, as Redis prints it) -> [calls, µs, rejected, failed]
        self._counts: dict[str, list[int]] = {}
        self.errors: dict[str, int] = {}  # error code -> replies
        # (when, the owned calls less the runtime's own traffic) every SAMPLE_S, the last 16 as Redis keeps them
        self._samples: deque[tuple[float, int]] = deque(maxlen=16)

    def sample(self, now: float) -> None:
        """Note the calls so far (SAMPLE_S apart): instantaneous_ops_per_sec is their rate over the last 1.6 s."""
        self._samples.append((now, self.calls() - OWN.total_calls()))

    def ops_per_sec(self) -> float:
        """What the runtime adds to the backing Redis' instantaneous_ops_per_sec: its owned commands' rate, less
        the rate of what it sent the backing Redis for itself (which Redis' figure holds)."""
        if len(self._samples) < 2:
            return 0.0
        (then, before), (now, after) = self._samples[0], self._samples[-1]
        return (after - before) / (now - then) if now > then else 0.0

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
        """CONFIG RESETSTAT: the owned commands' counts, and the runtime's own traffic's, start again with Redis'
        (its instantaneous metrics too)."""
        self._counts.clear()
        self.errors.clear()
        OWN.reset()
        self._samples.clear()

    def lines(self) -> str:
        """The commandstats section's lines, as Redis 7 writes them."""
        return "".join(
            f"cmdstat_{name.lower()}:calls={calls},usec={usec},usec_per_call={usec / calls if calls else 0:.2f},"
            f"rejected_calls={rejected},failed_calls={failed}\r\n"
            for name, (calls, usec, rejected, failed) in self._counts.items()
        )
