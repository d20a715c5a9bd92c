"""Stored AI objects as Gears code sees them: keys of RedisAI's types, as inside Redis, not strings.

The backing Redis holds each tensor, model and script as a string with a marker (ai/kinds.py).
Inside Redis with RedisAI they are keys of a module type, and RedisGears' KeysReader names them
`module` with no value; `execute('TYPE', k)` answers `AI_TENSOR`, and `SCAN ... TYPE string`
leaves them out. A Gears worker reads them over its own links, as its owner: these helpers make
its answers the ones clients of the runtime get (commands/core.py `type_`, `scan`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gearcam.runtime.ai.kinds import TYPE_NAMES, head_read, of_kind, type_of_call, typed_scan
from gearcam.runtime.gears.link import CommandError, LinkPool

__all__ = ["MODULE_TYPE", "reader_type", "scan", "type_of"]

MODULE_TYPE = "module"  # what a KeysReader record's 'type' says of a key of a module's type (RedisGears 1.2)
_AI_TYPES = frozenset(TYPE_NAMES.values())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def type_of(send: Callable[..., Any], key: Any, loud: bool) -> str:
    """`key`'s TYPE with RedisAI's names for AI objects, sent with `send` (a link's call, or a transaction);
    `loud`: a missing key causes `keymiss`, as TYPE does.

    The names come from a Lua script naming the key. A key the owner's ACL rules refuse gets the refusal TYPE
    would get (Redis words both alike); where they refuse EVAL itself, TYPE is sent as it is.
    """
    try:
        return _text(send(*type_of_call(key, loud)))
    except CommandError as exc:
        if not str(exc).startswith("NOPERM") or "'eval'" not in str(exc):
            raise
    return _text(send(b"TYPE", key))


def reader_type(type_name: str) -> str:
    """A TYPE answer as a KeysReader record names the key's type: `module` for AI objects, `empty` for none."""
    if type_name in _AI_TYPES:
        return MODULE_TYPE
    return "empty" if type_name == "none" else type_name


def scan(links: LinkPool, args: Sequence[Any]) -> Any:
    """SCAN from Gears code: with `TYPE AI_TENSOR` (AI__MODEL, AI_SCRIPT) it finds those objects, and with
    `TYPE string` it leaves them out, as on RedisAI (the backing Redis is asked for strings and the head of
    each is read, one pipelined round trip a page). Without TYPE it is sent as it is."""
    wire = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    typed = typed_scan(wire)
    if typed is None:
        return links.call(*wire)
    relayed, kind = typed
    cursor, keys = links.call(*relayed)
    return [cursor, of_kind(keys, links.pipeline([head_read(key) for key in keys]) if keys else [], kind)]
