"""What each reader produces in batch mode (`run()`), and how a registration matches a key.

Runs on a Gears pool thread with a blocking link. Record shapes are RedisGears 1.2's:
KeysReader gives {'event', 'key', 'type', 'value'}, KeysOnlyReader the key name,
StreamReader {'key', 'id', 'value'}, PythonReader what its generator yields,
ShardsIDReader '1' outside a cluster (records.SHARD_RECORD).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from gearcam.runtime.gears import ai_keys
from gearcam.runtime.gears.builder import GearsError
from gearcam.runtime.gears.link import LinkPool
from gearcam.runtime.gears.records import SHARD_RECORD, from_redis, stream_records
from gearcam.runtime.gears.sessions import SESSIONS_KEY

__all__ = ["KEY_TYPES", "event_matches", "key_matches", "key_record", "key_type", "read_batch"]

_INTERNAL_KEY = SESSIONS_KEY.encode()
KEY_TYPES = ("string", "hash", "list", "set", "zset", "stream", "module")


def key_matches(prefix: str, key: str) -> bool:
    """RedisGears' rule: a trailing '*' makes a prefix match, anything else must equal the key."""
    if prefix.endswith("*"):
        return key.startswith(prefix[:-1])
    return key == prefix


def event_matches(types: list[str] | None, event: str) -> bool:
    """RedisGears' rule for `eventTypes`: none given matches every event; names compare case-insensitively."""
    return types is None or event.lower() in (t.lower() for t in types)


def _scan(links: LinkPool, pattern: str, count: Any = 1000) -> Iterator[bytes]:
    """The keys matching `pattern`, without the runtime's own session store (not the user's data)."""
    cursor: Any = 0
    while True:
        cursor, keys = links.call("SCAN", cursor, "MATCH", pattern, "COUNT", count)
        yield from (k for k in keys if k != _INTERNAL_KEY)
        if int(cursor) == 0:
            return


def key_type(links: LinkPool, key: bytes) -> str:
    """The key's type as KeysReader records name it ('empty' for a missing key, 'module' for a stored tensor,
    model or script, as RedisGears names RedisAI's keys).

    A reader's reads trigger no KeysReader (`unheard`): a missing key's `keymiss` event would
    trigger registrations on every event again, as RedisGears' own reads (ignoreKeysEvents) do not."""
    return ai_keys.reader_type(ai_keys.type_of(functools.partial(links.transaction, unheard=True), key, loud=False))


def key_record(
    links: LinkPool, key: bytes, event: str | None, read_value: bool = True, kind: str | None = None
) -> dict[str, Any]:
    """The KeysReader record of `key` now, as RedisGears 1.2 makes it: {'key', 'event'}, and with
    `read_value` also 'type' and 'value' (strings, lists and hashes read, other types' value None: a stored
    AI object's too, of type 'module').
    `kind`: its type, when the caller has just read it (a registration's keyTypes)."""
    if not read_value:
        return {"key": from_redis(key), "event": event}
    kind = kind or key_type(links, key)
    value: Any = None
    if kind == "string":
        value = from_redis(links.transaction("GET", key, unheard=True))
    elif kind == "hash":
        flat = links.transaction("HGETALL", key, unheard=True)
        value = {from_redis(flat[i]): from_redis(flat[i + 1]) for i in range(0, len(flat), 2)}
    elif kind == "list":
        value = [from_redis(item) for item in links.transaction("LRANGE", key, 0, -1, unheard=True)]
    return {"key": from_redis(key), "value": value, "type": kind, "event": event}


def _keys_only(links: LinkPool, pattern: str, reader_args: dict[str, Any]) -> list[Any]:
    """KeysOnlyReader's run(pattern, count=, noScan=, patternGenerator=), as RedisGears' createKeysOnlyReader:
    SCAN's COUNT as given (Redis refuses a bad one), the patterns from the generator when there is one."""
    generator = reader_args.get("patternGenerator")
    patterns = generator() if generator is not None else [pattern]
    keys: list[Any] = []
    for current in patterns:
        if reader_args.get("noScan"):
            keys.append(current)
        else:
            keys.extend(from_redis(k) for k in _scan(links, current, reader_args.get("count", 1000)))
    return keys


def read_batch(links: LinkPool, reader: str, arg: Any, reader_args: dict[str, Any]) -> list[Any]:
    if reader in ("KeysReader", "KeysOnlyReader"):
        if not isinstance(arg, str):
            raise GearsError("regex argument must be a string")
        if reader == "KeysOnlyReader":
            return _keys_only(links, arg, reader_args)
        keys = [arg.encode()] if reader_args.get("noScan") else list(_scan(links, arg))
        read_value = bool(reader_args.get("readValue", True))
        records = [key_record(links, k, None, read_value) for k in keys]
        if reader_args.get("noScan"):
            return records  # the one key asked for, 'empty' when it does not exist
        return [r for r in records if r.get("type") != "empty"]  # deleted while scanning
    if reader == "StreamReader":
        if not isinstance(arg, str):
            raise GearsError("stream key name argument must be a string")
        from_id = reader_args.get("fromId", "0-0")
        if not isinstance(from_id, str):
            raise GearsError("fromId argument must be a string")
        reply = links.call("XREAD", "STREAMS", arg, from_id)
        return stream_records(arg, reply[0][1]) if reply else []
    if reader == "PythonReader":
        if not callable(arg):
            raise GearsError("pyreader argument must be a function")
        return list(arg())
    if reader == "ShardsIDReader":
        return [SHARD_RECORD]
    raise GearsError("Given reader do not support run or not exists")
