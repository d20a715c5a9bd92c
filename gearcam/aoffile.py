"""An append-only file read as what it holds: an RDB snapshot it may begin with, then the commands since.

Redis 6 keeps one file, `appendonly.aof`: with `aof-use-rdb-preamble` (its default) the RDB of
the last rewrite, then every write since as RESP commands. Redis 7 keeps a directory,
`appendonlydir`, whose manifest names a base file (an RDB, or commands) and the incremental
files of commands after it, in order. A Redis that had RedisAI or RedisGears loaded wrote their
values into the RDB part and their commands (AI.TENSORSET, AI.MODELSTORE, RedisGears' internal
RG.INNERREGISTER) into the rest, and a Redis without the modules refuses to load any of it.
The import (gearcam/migrate.py) copies the RDB part key by key (gearcam/rdbfile.py) and replays
the commands, in order, through the runtime, which serves AI.* itself.
"""

from __future__ import annotations

import mmap
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gearcam.rdbformat import FormatError

__all__ = ["AofPart", "commands", "has_preamble", "parts"]


@dataclass(frozen=True)
class AofPart:
    """One file of an AOF: an RDB (a Redis 7 base), or commands that may begin with an RDB preamble."""

    path: Path
    rdb: bool


def parts(path: Path) -> list[AofPart]:
    """The files of the AOF at `path` (a file, or Redis 7's appendonlydir), in the order Redis loads them."""
    if path.is_dir():
        return _from_manifest(path)
    if not path.is_file():
        raise FormatError(f"{path} is neither an append-only file nor a directory of them")
    return [AofPart(path, rdb=False)]


def _from_manifest(directory: Path) -> list[AofPart]:
    manifests = sorted(directory.glob("*.manifest"))
    if len(manifests) != 1:
        found = ", ".join(m.name for m in manifests) or "none"
        raise FormatError(f"{directory} should hold one *.manifest (Redis 7's appendonlydir), found {found}")
    base: list[AofPart] = []
    incremental: list[AofPart] = []
    for number, line in enumerate(manifests[0].read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
            fields = dict(zip(words[0::2], words[1::2], strict=True))
            name, kind = fields["file"], fields["type"]
        except (ValueError, KeyError) as exc:
            raise FormatError(f"line {number} of {manifests[0]} is not 'file NAME seq N type b|h|i': {line!r}") from exc
        if kind == "b":
            base.append(AofPart(directory / name, rdb=name.endswith(".rdb")))
        elif kind == "i":
            incremental.append(AofPart(directory / name, rdb=False))
    missing = [part.path.name for part in base + incremental if not part.path.is_file()]
    if missing:
        raise FormatError(f"{manifests[0]} names files that are not in {directory}: {', '.join(missing)}")
    return base + incremental


def commands(path: Path, start: int = 0) -> Iterator[list[bytes]]:
    """The RESP commands of the file from byte `start`, in order, as Redis loads them: a line starting with
    `#` between commands is an annotation (Redis 7's `#TS:` with aof-timestamp-enabled) and is skipped; a
    last command cut short (Redis was writing it when it stopped) ends the iteration, as
    `aof-load-truncated yes` loads the file; anything else that is not a command is a FormatError."""
    with path.open("rb") as handle:
        if path.stat().st_size <= start:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            at, count = start, 0
            while at < len(mapped):
                if mapped[at : at + 1] == b"#":
                    ends = mapped.find(b"\n", at)
                    if ends < 0:
                        return
                    at = ends + 1
                    continue
                command, at = _command(mapped, at, path, count)
                if command is None:
                    return
                count += 1
                yield command


def _line(mapped: mmap.mmap, at: int) -> tuple[bytes | None, int]:
    """The line at `at` without its CRLF, and where the next begins; None where the file ends first."""
    ends = mapped.find(b"\r\n", at)
    return (None, at) if ends < 0 else (mapped[at:ends], ends + 2)


def _command(mapped: mmap.mmap, at: int, path: Path, count: int) -> tuple[list[bytes] | None, int]:
    """The command after the `count` before it, at `at` (a RESP array of bulk strings), and where the next
    begins; None if the file ends inside it."""
    entry = f"{path}: entry {count + 1}"
    head, at = _line(mapped, at)
    if head is None:
        return None, at
    if not head.startswith(b"*") or not head[1:].isdigit() or int(head[1:]) < 1:
        raise FormatError(f"{path} is not a list of commands after command {count} (then {head[:40]!r}); it is damaged")
    command: list[bytes] = []
    for _ in range(int(head[1:])):
        size, at = _line(mapped, at)
        if size is None:
            return None, at
        if not size.startswith(b"$") or not size[1:].isdigit():
            raise FormatError(f"{entry} is not a command (argument {len(command) + 1} is {size[:40]!r})")
        ends = at + int(size[1:])
        if ends + 2 > len(mapped):
            return None, at
        if mapped[ends : ends + 2] != b"\r\n":
            raise FormatError(f"{entry} is not a command (argument {len(command) + 1} is longer than its length)")
        command.append(mapped[at:ends])
        at = ends + 2
    return command, at


def has_preamble(path: Path) -> bool:
    """Whether the AOF file begins with an RDB (aof-use-rdb-preamble): its commands then follow the RDB."""
    with path.open("rb") as handle:
        return handle.read(5) == b"REDIS"
