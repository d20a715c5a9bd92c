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

import hiredis

from gearcam.rdbformat import FormatError

__all__ = ["AofPart", "commands", "has_preamble", "parts"]

_CHUNK = 1 << 20


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
    """The RESP commands of the file from byte `start`, in order. A last command cut short (Redis was
    writing it when it stopped) ends the iteration, as `aof-load-truncated yes` loads the file; anything
    else that is not RESP is a FormatError."""
    with path.open("rb") as handle:
        if path.stat().st_size <= start:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            reader = hiredis.Reader()
            count = 0
            for offset in range(start, len(mapped), _CHUNK):
                reader.feed(mapped[offset : offset + _CHUNK])
                while True:
                    try:
                        command = reader.gets()
                    except hiredis.ProtocolError as exc:
                        why = "it is damaged"
                        if mapped.find(b"#TS:", start) >= 0:  # Redis 7's annotations (aof-timestamp-enabled yes)
                            why = (
                                "it holds timestamp annotations (aof-timestamp-enabled), which the import does not read"
                            )
                        raise FormatError(
                            f"{path} is not a list of commands after command {count} ({exc}); {why}"
                        ) from None
                    if command is False:
                        break
                    if not isinstance(command, list) or not command or not all(isinstance(a, bytes) for a in command):
                        raise FormatError(f"{path}: entry {count + 1} is not a command ({command!r:.60})")
                    count += 1
                    yield command


def has_preamble(path: Path) -> bool:
    """Whether the AOF file begins with an RDB (aof-use-rdb-preamble): its commands then follow the RDB."""
    with path.open("rb") as handle:
        return handle.read(5) == b"REDIS"
