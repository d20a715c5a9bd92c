"""How Redis data looks to Gears code, as in RedisGears 1.2.

Strings that are valid UTF-8 arrive as `str`, anything else (a JPEG) as `bytearray`,
integers as `int`, nil as `None`; arrays become lists. Arguments of `execute` may be
`str` (or anything `str()` accepts), `bytes` or `bytearray`, and binary ones are sent
as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gearcam.runtime.resp import Arg

__all__ = ["SHARD_ID", "SHARD_RECORD", "command_args", "from_redis", "plain", "stream_records"]

# A single shard: RedisGears' id of a node outside a cluster (execution ids, RG.GETEXECUTION's shard_id).
SHARD_ID = "0" * 40
# What GB('ShardsIDReader') reads there: RedisGears' GearsBuilder reads it with a PythonReader whose callback
# (shardReaderCallback) yields '1' when RG.INFOCLUSTER answers 'no cluster mode', not the id above.
SHARD_RECORD = "1"


def from_redis(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return bytearray(value)
    if isinstance(value, list):
        return [from_redis(v) for v in value]
    if isinstance(value, Exception):  # an error inside an array (EXEC): its text, as RedisGears gives it
        return str(value)
    return value


def command_args(args: tuple[Any, ...]) -> list[Arg]:
    out: list[Arg] = []
    for arg in args:
        if isinstance(arg, bytes):
            out.append(arg)
        elif isinstance(arg, bytearray | memoryview):
            out.append(bytes(arg))
        else:
            out.append(str(arg))
    return out


def command_keys(spec: tuple[int, int, int], args: Sequence[Any]) -> list[bytes] | None:
    """The keys a command names (`args` without the command's name), from its COMMAND entry's first key, last
    key and step; None where they move with the arguments (first key 0: EVAL, XREAD...)."""
    first, last, step = spec
    if first <= 0 or step <= 0:
        return None
    end = last if last > 0 else len(args) + 1 + last
    return [a if isinstance(a, bytes) else str(a).encode() for a in command_args(tuple(args[first - 1 : end : step]))]


def stream_records(key: str, entries: list[Any]) -> list[dict[str, Any]]:
    """XREAD/XREADGROUP entries as StreamReader records: {'key', 'id', 'value': {field: value}}."""
    records: list[dict[str, Any]] = []
    for entry_id, fields in entries:
        value: dict[str, Any] = {}
        for i in range(0, len(fields or []), 2):
            value[fields[i].decode("utf-8", "replace")] = from_redis(fields[i + 1])
        records.append({"key": key, "id": entry_id.decode(), "value": value})
    return records


def plain(value: Any) -> Any:
    """A result record as plain data, shaped as RedisGears replies it: dicts flattened, other objects as str()."""
    if value is None or isinstance(value, str | bytes | int | float):
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return [plain(x) for pair in value.items() for x in pair]
    return str(value)
