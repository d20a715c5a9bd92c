"""What marks a Redis string as a stored tensor, model or script, and the type names RedisAI gives them.

The bottom of the AI store (ai/store.py): the runtime's commands and the Gears workers both read
these keys, the workers over blocking links of their own, and both must show them as Redis with
RedisAI shows them, keys of the module's types (`TYPE` answers `AI_TENSOR`, a KeysReader record
says `module`), not the strings the backing Redis holds. Only the commands to send and what their
replies mean live here, no I/O, so a worker imports it without the runtime's asyncio store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "HEAD_BYTES", "KIND_MODEL", "KIND_SCRIPT", "KIND_TENSOR", "TYPE_NAMES", "TYPE_OF_SOURCE", "head_kind", "head_read",
    "kind_named", "of_kind", "type_of_call", "typed_scan",
]  # fmt: skip

KIND_TENSOR = b"\x00gcmT"
KIND_MODEL = b"\x00gcmM"
KIND_SCRIPT = b"\x00gcmS"
TYPE_NAMES = {KIND_TENSOR: "AI_TENSOR", KIND_MODEL: "AI__MODEL", KIND_SCRIPT: "AI_SCRIPT"}  # TYPE, as RedisAI names
# The first bytes of a value read to learn its kind: a length one short of a multiple of 256 is the shape
# SLOWLOG tells the runtime's own reads by (store.own_read).
HEAD_BYTES = 256

# TYPE with RedisAI's type names; ARGV[4] "quiet" asks for absence first with OBJECT ENCODING, which
# causes no `keymiss` event: for the runtime's own checks, where RedisAI reads nothing.
TYPE_OF_SOURCE = """
if ARGV[4] == 'quiet' and not redis.call('OBJECT', 'ENCODING', KEYS[1]) then return redis.status_reply('none') end
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'string' then
  local marker = redis.call('GETRANGE', KEYS[1], 0, 4)
  if marker == ARGV[1] then return redis.status_reply('AI_TENSOR') end
  if marker == ARGV[2] then return redis.status_reply('AI__MODEL') end
  if marker == ARGV[3] then return redis.status_reply('AI_SCRIPT') end
end
return redis.status_reply(t)
"""


_TYPE_OF = TYPE_OF_SOURCE.encode()


def type_of_call(key: Any, loud: bool) -> tuple[Any, ...]:
    """The EVAL that answers `key`'s TYPE with RedisAI's names; `loud`: a missing key causes `keymiss`, as TYPE."""
    return (b"EVAL", _TYPE_OF, b"1", key, KIND_TENSOR, KIND_MODEL, KIND_SCRIPT, b"loud" if loud else b"quiet")


def kind_named(type_name: bytes) -> bytes | None:
    """The marker of the AI type TYPE names `type_name` (any case, as SCAN's TYPE compares), else None."""
    wanted = type_name.lower()
    return next((kind for kind, name in TYPE_NAMES.items() if name.lower().encode() == wanted), None)


def head_read(key: Any) -> tuple[Any, ...]:
    """The read of a value's first bytes that head_kind looks at."""
    return (b"GETRANGE", key, 0, HEAD_BYTES - 1)


def head_kind(head: Any) -> bytes | None:
    """The AI marker a value starting with `head` carries (a GETRANGE's reply, an error in place), else None."""
    return head[:5] if isinstance(head, bytes) and head[:5] in TYPE_NAMES else None


def typed_scan(args: Sequence[bytes]) -> tuple[list[bytes], bytes | None] | None:
    """A SCAN whose TYPE option names an AI type or `string` (SCAN cursor [MATCH p] [COUNT n] [TYPE t], the last
    TYPE counting): the SCAN to send instead (TYPE string) and the AI marker its keys must carry (None: none may,
    they are strings). None for any other SCAN, sent as it is."""
    position = next((i + 1 for i in range(len(args) - 2, 1, -2) if args[i].lower() == b"type"), 0)
    if not position:
        return None
    kind = kind_named(args[position])
    if kind is None and args[position].lower() != b"string":
        return None
    relayed = list(args)
    relayed[position] = b"string"
    return relayed, kind


def of_kind(keys: Sequence[Any], heads: Sequence[Any], kind: bytes | None) -> list[Any]:
    """The keys whose value's head (head_read's reply) carries the AI marker `kind` (None: no marker)."""
    return [key for key, head in zip(keys, heads, strict=True) if head_kind(head) == kind]
