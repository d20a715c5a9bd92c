"""How tensors, models and scripts live in the backing Redis.

Each is one Redis string: a 5-byte marker (NUL, "gcm", kind), a 4-byte header
length, a JSON header (dtype and shape; or backend, device, batching and a load id)
and the payload (tensor bytes, model blob, script source). Being plain strings,
they persist (RDB/AOF), replicate, expire and DEL like any key. Type checks run in
Lua on the server, so "is this key a tensor?" and the write are one atomic step
and a key of another type is refused with WRONGTYPE instead of being overwritten.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gearcam.runtime import replies
from gearcam.runtime.ai.tensor import Tensor
from gearcam.runtime.relay import BackendLink, Script
from gearcam.runtime.resp import ErrorReply

__all__ = [
    "KIND_MODEL",
    "KIND_SCRIPT",
    "KIND_TENSOR",
    "ModelMeta",
    "ScriptMeta",
    "delete_typed",
    "get_header",
    "get_model_meta",
    "get_typed",
    "pack",
    "set_typed",
    "type_of",
    "unpack",
]

KIND_TENSOR = b"\x00gcmT"
KIND_MODEL = b"\x00gcmM"
KIND_SCRIPT = b"\x00gcmS"
_HEADER_PEEK = 4096
_LEN = struct.Struct("<I")

# A key is usable as `kind` when it is absent or a string starting with that marker.
_CHECK = """
local function check(key, marker)
  local t = redis.call('TYPE', key)['ok']
  if t == 'none' then return 0 end
  if t ~= 'string' or redis.call('GETRANGE', key, 0, 4) ~= marker then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
  return 1
end
"""

SET_TYPED = Script(
    _CHECK
    + """
for i, key in ipairs(KEYS) do
  local ok = check(key, ARGV[1])
  if type(ok) == 'table' then return ok end
end
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1]) end
return redis.status_reply('OK')
"""
)

GET_TYPED = Script(
    _CHECK
    + """
local out = {}
local limit = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local ok = check(key, ARGV[1])
  if type(ok) == 'table' then return ok end
  if ok == 0 then out[i] = false
  elseif limit > 0 then out[i] = redis.call('GETRANGE', key, 0, limit - 1)
  else out[i] = redis.call('GET', key) end
end
return out
"""
)

DEL_TYPED = Script(
    _CHECK
    + """
local ok = check(KEYS[1], ARGV[1])
if type(ok) == 'table' then return ok end
if ok == 0 then return 0 end
return redis.call('DEL', KEYS[1])
"""
)

TYPE_OF = Script(
    """
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'string' then
  local marker = redis.call('GETRANGE', KEYS[1], 0, 4)
  if marker == ARGV[1] then return redis.status_reply('AI_TENSOR') end
  if marker == ARGV[2] then return redis.status_reply('AI__MODEL') end
  if marker == ARGV[3] then return redis.status_reply('AI_SCRIPT') end
end
return redis.status_reply(t)
"""
)


@dataclass
class ModelMeta:
    backend: str
    device: str
    tag: str = ""
    batchsize: int = 0
    minbatchsize: int = 0
    minbatchtimeout: int = 0
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class ScriptMeta:
    device: str
    tag: str = ""
    entry_points: list[str] = field(default_factory=list)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)


def pack(kind: bytes, header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((kind, _LEN.pack(len(head)), head, payload))


def unpack(value: bytes) -> tuple[bytes, dict[str, Any], memoryview]:
    size = _LEN.unpack_from(value, 5)[0]
    header = json.loads(value[9 : 9 + size])
    return value[:5], header, memoryview(value)[9 + size :]


def encode_tensor(tensor: Tensor) -> bytes:
    return pack(KIND_TENSOR, {"dtype": tensor.dtype, "shape": list(tensor.shape)}, tensor.blob())


def decode_tensor(value: bytes) -> Tensor:
    _, header, payload = unpack(value)
    return Tensor.from_blob(header["dtype"], header["shape"], bytes(payload))


async def set_typed(link: BackendLink, kind: bytes, items: Sequence[tuple[bytes, bytes]]) -> None:
    """Write packed values; refuses (WRONGTYPE) without writing anything if one key has another type."""
    await link.eval(SET_TYPED, [k for k, _ in items], [kind, *[v for _, v in items]])


async def get_typed(link: BackendLink, kind: bytes, keys: Sequence[bytes], limit: int = 0) -> list[bytes | None]:
    """Packed values (None where absent); `limit` > 0 reads only that many leading bytes."""
    values: list[bytes | None] = await link.eval(GET_TYPED, keys, [kind, limit])
    return values


async def delete_typed(link: BackendLink, kind: bytes, key: bytes) -> bool:
    deleted: int = await link.eval(DEL_TYPED, [key], [kind])
    return deleted == 1


async def type_of(link: BackendLink, key: bytes) -> str:
    name: str | bytes = await link.eval(TYPE_OF, [key], [KIND_TENSOR, KIND_MODEL, KIND_SCRIPT])
    return name.decode() if isinstance(name, bytes) else str(name)


async def get_tensors(link: BackendLink, keys: Sequence[bytes]) -> list[Tensor]:
    values = await get_typed(link, KIND_TENSOR, keys)
    out = []
    for value in values:
        if value is None:
            raise ErrorReply(replies.TENSOR_EMPTY)
        out.append(decode_tensor(value))
    return out


async def set_tensors(link: BackendLink, items: Sequence[tuple[bytes, Tensor]]) -> None:
    await set_typed(link, KIND_TENSOR, [(k, encode_tensor(t)) for k, t in items])


async def get_header(link: BackendLink, kind: bytes, key: bytes) -> dict[str, Any] | None:
    """A stored object's header without its payload (one small read per execution)."""
    (value,) = await get_typed(link, kind, [key], _HEADER_PEEK)
    if value is None:
        return None
    size = _LEN.unpack_from(value, 5)[0]
    if 9 + size > len(value):
        (value,) = await get_typed(link, kind, [key], 9 + size)
        if value is None:
            return None
    header: dict[str, Any] = json.loads(value[9 : 9 + size])
    return header


async def get_model_meta(link: BackendLink, key: bytes) -> ModelMeta | None:
    header = await get_header(link, KIND_MODEL, key)
    return None if header is None else ModelMeta(**header)


def model_header(meta: ModelMeta) -> dict[str, Any]:
    return asdict(meta)
