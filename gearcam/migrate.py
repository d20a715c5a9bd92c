"""Copy a RedisAI server's tensors, models and scripts into gearcam: SCAN, TYPE and DUMP there, RESTORE here.

Users leaving the end-of-life RedisAI module have their objects in its own format; the
runtime's RESTORE reads that format (gearcam/runtime/ai/rdb.py), so the copy needs no
file access to the old server, only a connection. Keys of other types are left alone
(copy them with Redis' own tools); the TTL of each key is kept. A key that cannot be
copied (an engine that refuses the model, a key that already exists here) is reported
with Redis' or RedisAI's reason and the copy goes on.

    python -m gearcam.migrate --from redis://old-redisai:6379 [--to URL] [--replace]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import redis

from gearcam.config import load_settings, redact_url
from gearcam.errors import CallerError, GearcamError, NetworkError, exit_with

__all__ = ["KINDS", "Summary", "main", "migrate"]

KINDS = {b"AI_TENSOR": "tensors", b"AI__MODEL": "models", b"AI_SCRIPT": "scripts"}


@dataclass
class Summary:
    copied: Counter[str] = field(default_factory=Counter)
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    other: int = 0  # keys of other types, left where they are

    def render(self) -> str:
        counts = ", ".join(f"{self.copied[kind]} {kind}" for kind in KINDS.values())
        lines = [f"copied {counts}; {len(self.failed)} failed; {self.other} other keys left alone"]
        lines += [f"  {key.decode('utf-8', 'replace')}: {reason}" for key, reason in self.failed]
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


def _client(url: str, timeout: float) -> redis.Redis:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=300, protocol=2)
    except ValueError as exc:
        raise CallerError(f"bad Redis URL {redact_url(url)!r} ({exc}); write redis://host:port[/db]") from exc


def run(source_url: str, target_url: str | None, replace: bool) -> Summary:
    settings = load_settings()
    target_url = target_url or settings.redis_url
    source = _client(source_url, settings.runtime.connect_timeout)
    target = _client(target_url, settings.runtime.connect_timeout)
    try:
        return migrate(source, target, replace)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise NetworkError(
            f"lost {redact_url(source_url)} or {redact_url(target_url)} ({exc}); check both are up "
            "(the target is the gearcam runtime: `invoke up`), then run the copy again (add --replace)"
        ) from exc
    finally:
        source.close()
        target.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gearcam.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", required=True, metavar="URL", help="the Redis with RedisAI")
    parser.add_argument("--to", dest="target", metavar="URL", help="the gearcam runtime (default: the configured one)")
    parser.add_argument("--replace", action="store_true", help="overwrite keys that already exist in the target")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = run(args.source, args.target, args.replace)
    except GearcamError as exc:
        return exit_with(exc)
    print(summary.render())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
