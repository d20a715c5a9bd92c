"""Copy a RedisAI server's tensors, models and scripts into gearcam, from the server or from its data files.

Users leaving the end-of-life RedisAI module have their objects in its own format; the
runtime's RESTORE reads that format (gearcam/runtime/ai/rdb.py). From a running server
(`--from`) the copy needs only a connection: SCAN, TYPE and DUMP there, RESTORE here; keys
of other types are left alone (copy them with Redis' own tools). From its files (`--rdb`
dump.rdb, `--aof` its append-only file: a node's data directory, which no Redis without
the modules can load) everything is copied, since nothing else can read those files: each
key's bytes become a RESTORE (gearcam/rdbfile.py) into the database it was in, and an AOF's
commands are replayed in order (gearcam/aoffile.py). Either way the TTL of each key is kept;
a key that cannot be copied (an engine that refuses the model, a key that already exists
here) is reported with Redis' or RedisAI's reason and the copy goes on.

    python -m gearcam.migrate --from redis://old-redisai:6379 [--to URL] [--replace]
    python -m gearcam.migrate --rdb /old-node/data/dump.rdb [--to URL] [--replace]
    python -m gearcam.migrate --aof /old-node/data/appendonly.aof [--to URL] [--replace]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from gearcam import aoffile
from gearcam.config import load_settings, redact_url
from gearcam.errors import CallerError, GearcamError, NetworkError, exit_with
from gearcam.rdbfile import Key, RdbFile
from gearcam.rdbformat import FormatError

__all__ = ["GEARS_INTERNAL", "KINDS", "Summary", "import_aof", "import_file", "main", "migrate"]

KINDS = {b"AI_TENSOR": "tensors", b"AI__MODEL": "models", b"AI_SCRIPT": "scripts"}
# RedisGears 1.x keeps its registrations as module aux data of this type (its REDISGEARS_DATATYPE_NAME).
GEARS_AUX = "GEARS_DT0"


@dataclass
class Summary:
    copied: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    other: int = 0  # keys of other types, left where they are (copying from a server)
    plain: Counter[str] = field(default_factory=Counter)  # keys of other types copied, by type (from a file)
    expired: int = 0  # keys whose time had passed in the file: not copied, as Redis would not load them
    functions: int = 0  # function libraries loaded (from a Redis 7 file)
    replayed: int = 0  # commands of an append-only file Redis accepted
    gears_commands: int = 0  # RedisGears' replication commands in it, not replayed (GEARS_INTERNAL)
    notes: list[str] = field(default_factory=list)  # what the file held that is not a key and was not copied

    def render(self) -> str:
        counts = ", ".join(f"{self.copied[kind]} {kind}" for kind in KINDS.values())
        if self.plain:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.plain.items()))
            others = f"{sum(self.plain.values())} other keys copied ({kinds})"
        else:
            others = f"{self.other} other keys left alone"
        lines = [f"copied {counts}; {len(self.failed)} failed; {others}"]
        if self.expired:
            lines[0] += f"; {self.expired} expired in the file, not copied"
        if self.functions:
            lines[0] += f"; {self.functions} function libraries loaded"
        if self.replayed or self.gears_commands:
            lines[0] += f"; {self.replayed} commands replayed"
        lines += [f"  {key.decode('utf-8', 'replace')}: {reason}" for key, reason in self.failed]
        lines += [f"note: {note}" for note in self.notes]
        if self.gears_commands:
            lines.append(
                f"note: {self.gears_commands} RedisGears registration commands (RG.INNERREGISTER and the like) were "
                "not replayed: they carry pickles of RedisGears' own Python; register your scripts again"
            )
        return "\n".join(lines)


def migrate(source: redis.Redis, target: redis.Redis, replace: bool = False, batch: int = 100) -> Summary:
    """Copy every RedisAI key of `source`'s database into `target`, `batch` keys per round trip."""
    summary = Summary()
    for keys in _batches(source, batch):
        with source.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            types = pipe.execute()
        wanted = [(key, KINDS[kind]) for key, kind in zip(keys, types, strict=True) if kind in KINDS]
        summary.other += len(keys) - len(wanted)
        with source.pipeline(transaction=False) as pipe:
            for key, _ in wanted:
                pipe.dump(key)
                pipe.pttl(key)
            found = pipe.execute()
        for (key, kind), payload, ttl in zip(wanted, found[::2], found[1::2], strict=True):
            if payload is None:  # deleted or expired since SCAN saw it
                continue
            try:
                target.restore(key, max(int(ttl), 0), payload, replace=replace)
            except redis.ResponseError as exc:
                summary.failed.append((key, str(exc)))
            else:
                summary.copied[kind] += 1
    return summary


def _batches(source: redis.Redis, batch: int) -> Iterator[list[bytes]]:
    """SCAN's keys, one reply at a time (a key SCAN returns twice is copied once)."""
    seen: set[bytes] = set()
    cursor = 0
    while True:
        cursor, keys = source.scan(cursor, count=batch)
        names = [k if isinstance(k, bytes) else k.encode() for k in keys]  # bytes: the client does not decode
        fresh = [k for k in names if k not in seen]
        seen.update(fresh)
        if fresh:
            yield fresh
        if int(cursor) == 0:
            return


def import_file(rdb: RdbFile, target: redis.Redis, replace: bool = False, batch: int = 100) -> Summary:
    """Copy every key of an RDB file into `target`'s server, each into the database it was in.

    The whole file is checked first (its checksum and a walk over every record), so a damaged
    file copies nothing rather than half of itself.
    """
    try:
        rdb.check()
    except FormatError as exc:
        raise CallerError(f"{exc}; nothing was copied") from exc
    summary = Summary()
    _copy_keys(rdb, target, replace, batch, summary)
    return summary


def import_aof(path: Path, target: redis.Redis, replace: bool = False, batch: int = 100) -> Summary:
    """Copy an append-only file (a file, or Redis 7's appendonlydir) into `target`'s server: the keys of
    its RDB part as `import_file` does, then its commands replayed in order on one connection.

    Every file is checked first (RDB parts whole, commands parsed to the end), so a damaged AOF
    copies nothing. RedisGears' own replication commands are not replayed (see GEARS_INTERNAL).
    """
    plan: list[tuple[RdbFile | None, Path, int]] = []  # (its RDB part, the file, where its commands begin: -1 none)
    opened: list[RdbFile] = []
    try:
        try:
            for part in aoffile.parts(path):
                rdb = RdbFile(part.path, preamble=not part.rdb) if part.rdb or aoffile.has_preamble(part.path) else None
                start = -1
                if rdb is not None:
                    opened.append(rdb)
                    rdb.check()
                if not part.rdb:
                    start = rdb.end if rdb is not None else 0
                    sum(1 for _ in aoffile.commands(part.path, start))  # every command parses, before any is sent
                plan.append((rdb, part.path, start))
        except FormatError as exc:
            raise CallerError(f"{exc}; nothing was copied") from exc
        summary = Summary()
        for rdb, file, start in plan:
            if rdb is not None:
                _copy_keys(rdb, target, replace, batch, summary)
            if start >= 0:
                _replay(file, start, target, summary)
    finally:
        for rdb in opened:
            rdb.close()
    return summary


# RedisGears' commands that replicate its registrations (RG.INNERREGISTER, ...) carry them as
# pickles of its own Python: not replayed, counted (the scripts are registered again instead).
GEARS_INTERNAL = frozenset((b"RG.INNERREGISTER", b"RG.INNERUNREGISTER", b"RG.PYIMPORTRETINTERNAL"))


def _replay(path: Path, start: int, target: redis.Redis, summary: Summary, batch: int = 500) -> None:
    """The file's commands from `start`, in order, on one connection (SELECT and MULTI carry from one
    command to the next, as when Redis loads the file), `batch` per round trip."""
    pool = target.connection_pool
    # A connection of its own: the file's SELECTs must not leave a pooled one in another database.
    connection: Any = pool.connection_class(**pool.connection_kwargs)
    try:
        connection.send_command("SELECT", 0)  # Redis loads an AOF from database 0
        connection.read_response()
        pending: list[tuple[int, list[bytes]]] = []
        for number, command in enumerate(aoffile.commands(path, start), 1):
            if command[0].upper() in GEARS_INTERNAL:
                summary.gears_commands += 1
                continue
            pending.append((number, command))
            if len(pending) >= batch:
                _send(connection, pending, path, summary)
        _send(connection, pending, path, summary)
    finally:
        connection.disconnect()


def _send(connection: Any, pending: list[tuple[int, list[bytes]]], path: Path, summary: Summary) -> None:
    connection.send_packed_command(connection.pack_commands([command for _, command in pending]))
    for number, command in pending:
        where = f"command {number} of {path.name} ({command[0].decode('utf-8', 'replace').upper()})".encode()
        try:
            reply = connection.read_response()
        except redis.ResponseError as exc:
            summary.failed.append((where, str(exc)))
            continue
        summary.replayed += 1
        if isinstance(reply, list) and command[0].upper() == b"EXEC":
            summary.failed += [(where, str(r)) for r in reply if isinstance(r, redis.ResponseError)]
    pending.clear()


# A batch of RESTOREs is also cut at this many bytes of values: a node's streams of camera frames hold tens
# of MB per key, and the import may run on the 4 GB device itself.
_BATCH_BYTES = 32 << 20


def _copy_keys(rdb: RdbFile, target: redis.Redis, replace: bool, batch: int, summary: Summary) -> None:
    now_ms = int(time.time() * 1000)
    pending: list[Key] = []
    size = 0
    clients: dict[int, redis.Redis] = {}
    try:
        for key in rdb.keys():
            if key.expires_at_ms is not None and key.expires_at_ms <= now_ms:
                summary.expired += 1
            elif key.module is not None and key.module.encode() not in KINDS:
                reason = f"a value of module type {key.module!r}, which gearcam does not have"
                summary.failed.append((key.name, reason))
            else:
                pending.append(key)
                size += key.size
            if len(pending) >= batch or size >= _BATCH_BYTES:
                _restore(pending, clients, target, replace, summary)
                size = 0
        _restore(pending, clients, target, replace, summary)
    finally:
        for client in clients.values():
            client.close()
    for library in rdb.contents.functions:
        try:
            target.function_load(library.decode("utf-8", "replace"), replace=replace)
        except redis.ResponseError as exc:
            summary.failed.append((b"(function library)", str(exc)))
        else:
            summary.functions += 1
    gears = rdb.contents.module_aux.pop(GEARS_AUX, 0)
    if gears:
        summary.notes.append(
            f"{rdb.path.name} holds RedisGears registrations (its module aux data, saved even when there are "
            "none), which were not copied: RedisGears saved their steps as pickles of its own Python; register your "
            "scripts again (`invoke upload`, or RG.PYEXECUTE with their source)"
        )
    for module in sorted(rdb.contents.module_aux):
        summary.notes.append(f"{rdb.path.name} holds aux data of module type {module!r}, which gearcam does not have")


def _restore(
    keys: list[Key], clients: dict[int, redis.Redis], target: redis.Redis, replace: bool, summary: Summary
) -> None:
    """RESTORE `keys` (emptied after), one pipeline per database, as the file had them: absolute TTL, LRU, LFU."""
    for db in sorted({key.db for key in keys}):
        client = clients.get(db)
        if client is None:
            client = clients[db] = _in_db(target, db)
        batch = [key for key in keys if key.db == db]
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                ttl = key.expires_at_ms or 0
                pipe.restore(
                    key.name, ttl, key.payload(), replace=replace, absttl=bool(ttl), idletime=key.idle_s,
                    frequency=key.freq,
                )  # fmt: skip
            replies = pipe.execute(raise_on_error=False)
        for key, reply in zip(batch, replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                summary.failed.append((key.name, str(reply)))
            elif key.module is not None:
                summary.copied[KINDS[key.module.encode()]] += 1
            else:
                summary.plain[key.type] += 1
    keys.clear()


def _in_db(target: redis.Redis, db: int) -> redis.Redis:
    """A client of `target`'s server on database `db` (the file's numbering, not the URL's)."""
    pool = target.connection_pool
    kwargs = {**pool.connection_kwargs, "db": db}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _client(url: str, timeout: float) -> redis.Redis:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=300, protocol=2)
    except ValueError as exc:
        raise CallerError(f"bad Redis URL {redact_url(url)!r} ({exc}); write redis://host:port[/db]") from exc


def run(
    source_url: str | None,
    target_url: str | None,
    replace: bool,
    rdb_path: Path | None = None,
    aof_path: Path | None = None,
) -> Summary:
    """Copy from the server at `source_url`, or from the RDB file or append-only file given, into the runtime."""
    settings = load_settings()
    target_url = target_url or settings.redis_url
    target = _client(target_url, settings.runtime.connect_timeout)
    peers = redact_url(target_url)
    try:
        if aof_path is not None:
            return import_aof(aof_path, target, replace)
        if rdb_path is not None:
            return _run_file(rdb_path, target, replace)
        assert source_url is not None
        peers = f"{redact_url(source_url)} or {peers}"
        source = _client(source_url, settings.runtime.connect_timeout)
        try:
            return migrate(source, target, replace)
        finally:
            source.close()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise NetworkError(
            f"lost {peers} ({exc}); check it is up (the target is the gearcam runtime: `invoke up`), then run the "
            "copy again (add --replace)"
        ) from exc
    finally:
        target.close()


def _run_file(path: Path, target: redis.Redis, replace: bool) -> Summary:
    try:
        rdb = RdbFile(path)
    except FormatError as exc:
        raise CallerError(f"{exc}; pass the dump.rdb of the old node's data directory") from exc
    with rdb:
        return import_file(rdb, target, replace)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gearcam.migrate", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", metavar="URL", help="the Redis with RedisAI")
    source.add_argument("--rdb", type=Path, metavar="FILE", help="an RDB file a Redis with RedisAI or RedisGears wrote")
    source.add_argument(
        "--aof", type=Path, metavar="PATH", help="or its append-only file (appendonly.aof, or Redis 7's appendonlydir)"
    )
    parser.add_argument("--to", dest="target", metavar="URL", help="the gearcam runtime (default: the configured one)")
    parser.add_argument("--replace", action="store_true", help="overwrite keys that already exist in the target")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run(args.source, args.target, args.replace, args.rdb, args.aof)
    except GearcamError as exc:
        return exit_with(exc)
    print(summary.render())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
