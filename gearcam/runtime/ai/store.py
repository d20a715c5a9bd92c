"""How tensors, models and scripts live in the backing Redis.

Each is one Redis string: a 5-byte marker (NUL, "gcm", kind), a 4-byte header
length, a JSON header (dtype and shape; or backend, device, batching and a load id)
and the payload (tensor bytes, model blob, script source). Being plain strings,
they persist (RDB/AOF), replicate, expire and DEL like any key. Type checks run in
Lua on the server, so "is this key a tensor?" and the write are one atomic step
and a key of another type is refused with WRONGTYPE instead of being overwritten.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from gearcam.runtime import replies
from gearcam.runtime.ai.cache import TensorCache
from gearcam.runtime.ai.tensor import DTYPES, Tensor
from gearcam.runtime.relay import BackendLink, Script
from gearcam.runtime.resp import ErrorReply, bulk_payload

__all__ = [
    "KIND_MODEL",
    "KIND_SCRIPT",
    "KIND_TENSOR",
    "CorruptValue",
    "ModelMeta",
    "ScriptMeta",
    "delete_typed",
    "get_header",
    "get_model_meta",
    "get_typed",
    "meta_of",
    "pack",
    "set_typed",
    "type_of",
    "unpack",
]

KIND_TENSOR = b"\x00gcmT"
KIND_MODEL = b"\x00gcmM"
KIND_SCRIPT = b"\x00gcmS"
_KIND_NAMES = {KIND_TENSOR: "tensor", KIND_MODEL: "model", KIND_SCRIPT: "script"}
_HEADER_PEEK = 4096
_TENSOR_PEEK = 256
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

# Values are first written with a plain SET under temporary keys (no Lua copy of a large
# argument), then this script checks every destination and renames them all into place,
# so the write is atomic and a key of another type is never overwritten.
COMMIT_TYPED = Script(
    _CHECK
    + """
local n = #KEYS / 2
for i = 1, n do
  local ok = check(KEYS[i], ARGV[1])
  if type(ok) == 'table' then
    for j = n + 1, #KEYS do redis.call('DEL', KEYS[j]) end
    return ok
  end
end
for i = 1, n do
  redis.call('RENAME', KEYS[n + i], KEYS[i])
  redis.call('PERSIST', KEYS[i])
end
return redis.status_reply('OK')
"""
)
_TMP_TTL_MS = 60_000

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


_Meta = TypeVar("_Meta", "ModelMeta", "ScriptMeta")
Packed = tuple[bytes, bytes | memoryview]


def pack(kind: bytes, header: dict[str, Any], payload: bytes | memoryview) -> Packed:
    """The stored value as two parts (marker + header, payload), sent without joining them."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((kind, _LEN.pack(len(head)), head)), payload


class CorruptValue(Exception):
    """A value with the runtime's marker whose header or payload cannot be read (written by something else)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def reply(self, key: bytes, kind: str) -> ErrorReply:
        return ErrorReply(replies.corrupt_value(key, kind, self.reason))


def unpack(value: bytes | memoryview) -> tuple[bytes, dict[str, Any], memoryview]:
    """Marker, header and payload of a stored value; CorruptValue if the header is not readable."""
    view = memoryview(value)
    try:
        size = _LEN.unpack_from(view, 5)[0]
        if 9 + size > view.nbytes:
            raise ValueError(f"header of {size} bytes in a value of {view.nbytes}")
        header = json.loads(bytes(view[9 : 9 + size]))
    except (struct.error, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptValue(f"unreadable header: {exc}") from exc
    if not isinstance(header, dict):
        raise CorruptValue("the header is not a JSON object")
    return bytes(view[:5]), header, view[9 + size :]


def meta_of(cls: type[_Meta], header: dict[str, Any]) -> _Meta:
    """A ModelMeta/ScriptMeta from a stored header; CorruptValue if its fields do not fit."""
    try:
        return cls(**header)
    except TypeError as exc:
        raise CorruptValue(f"bad header: {exc}") from exc


def encode_tensor(tensor: Tensor, uid: str) -> Packed:
    return pack(KIND_TENSOR, {"dtype": tensor.dtype, "shape": list(tensor.shape), "uid": uid}, tensor.blob())


def decode_tensor(value: bytes | memoryview) -> tuple[str, Tensor]:
    _, header, payload = unpack(value)
    dtype, shape = header.get("dtype"), header.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise CorruptValue(f"bad shape {shape!r}")
    if dtype not in DTYPES:
        raise CorruptValue(f"bad data type {dtype!r}")
    try:
        return str(header.get("uid", "")), Tensor.from_blob(str(dtype), shape, payload)
    except ErrorReply as exc:
        raise CorruptValue(exc.message.removeprefix("ERR ")) from None


def start_set_typed(link: BackendLink, kind: bytes, items: Sequence[tuple[bytes, Packed]]) -> asyncio.Future[None]:
    """Send the whole write at once and return its completion (WRONGTYPE or OK).

    The commands are on the wire when this returns, so anything sent later on the
    same link is ordered after the write, whether or not the caller awaits it.
    """
    keys = [k for k, _ in items]
    temps = [b"gearcam:tmp:" + uuid.uuid4().hex.encode() for _ in items]
    futures: list[asyncio.Future[Any]] = []
    if COMMIT_TYPED.sha not in link.loaded_scripts:
        # Loaded ahead in the same pipeline, so the EVALSHA below cannot miss it.
        futures.append(link.send((b"SCRIPT", b"LOAD", COMMIT_TYPED.source), raw=False))
        link.loaded_scripts.add(COMMIT_TYPED.sha)
    futures += [link.send((b"SET", tmp, value, b"PX", _TMP_TTL_MS), raw=False)
               for tmp, (_, value) in zip(temps, items, strict=True)]  # fmt: skip
    futures.append(link.send((b"EVALSHA", COMMIT_TYPED.sha, 2 * len(items), *keys, *temps, kind), raw=False))

    async def finish() -> None:
        results = [await f for f in futures]
        for result in results[:-1]:
            if isinstance(result, ErrorReply) and result.message.startswith("NOSCRIPT"):
                continue
            if isinstance(result, ErrorReply):
                raise result
        committed = results[-1]
        if isinstance(committed, ErrorReply) and committed.message.startswith("NOSCRIPT"):
            committed = await link.eval(COMMIT_TYPED, [*keys, *temps], [kind])
        if isinstance(committed, ErrorReply):
            raise committed

    return asyncio.ensure_future(finish())


async def set_typed(link: BackendLink, kind: bytes, items: Sequence[tuple[bytes, Packed]]) -> None:
    """Write packed values; refuses (WRONGTYPE) without writing anything if one key has another type."""
    done = start_set_typed(link, kind, items)
    await link.drain()
    await done


async def get_typed(link: BackendLink, kind: bytes, keys: Sequence[bytes], limit: int = 0) -> list[bytes | None]:
    """Packed values (None where absent); `limit` > 0 reads only that many leading bytes.

    Plain GET/GETRANGE already answer WRONGTYPE for non-string keys; a string without
    the marker is refused here. No Lua: a script would copy every value once more.
    """
    commands = [(b"GETRANGE", k, 0, limit - 1) if limit > 0 else (b"GET", k) for k in keys]
    values: list[Any] = await link.pipeline(commands)
    out: list[bytes | None] = []
    for value in values:
        if isinstance(value, ErrorReply):
            raise value
        if value is None or (limit > 0 and value == b""):
            out.append(None)
        elif value[:5] != kind:
            raise ErrorReply(replies.WRONGTYPE)
        else:
            out.append(value)
    return out


async def delete_typed(link: BackendLink, kind: bytes, key: bytes) -> bool:
    deleted: int = await link.eval(DEL_TYPED, [key], [kind])
    return deleted == 1


async def type_of(link: BackendLink, key: bytes) -> str:
    name: str | bytes = await link.eval(TYPE_OF, [key], [KIND_TENSOR, KIND_MODEL, KIND_SCRIPT])
    return name.decode() if isinstance(name, bytes) else str(name)


def _peeked_uid(head: bytes) -> str:
    """The tensor id in the first bytes of a stored tensor; "" if it is not there (or not readable: decoded later)."""
    if len(head) < 9:
        return ""
    size = _LEN.unpack_from(head, 5)[0]
    if 9 + size > len(head):
        return ""
    try:
        header = json.loads(head[9 : 9 + size])
    except ValueError:
        return ""
    return str(header.get("uid", "")) if isinstance(header, dict) else ""


async def get_tensors(link: BackendLink, keys: Sequence[bytes], cache: TensorCache) -> list[Tensor]:
    """The tensors at `keys`; those this runtime wrote (or read) are taken from its cache.

    A small read of each header gives the stored tensor's id, so a tensor rewritten by
    anyone else (another runtime, a direct write) is never served from the cache.
    """
    heads = await get_typed(link, KIND_TENSOR, keys, _TENSOR_PEEK)
    found: dict[int, Tensor] = {}
    missing: list[int] = []
    for index, head in enumerate(heads):
        if head is None:
            raise ErrorReply(replies.TENSOR_EMPTY)
        cached = cache.get(_peeked_uid(head))
        if cached is None:
            missing.append(index)
        else:
            found[index] = cached
    if missing:
        frames = await link.pipeline([(b"GET", keys[i]) for i in missing], raw=True)
        for index, frame in zip(missing, frames, strict=True):
            value = bulk_payload(frame)
            if isinstance(value, ErrorReply):
                raise value
            if value is None:
                raise ErrorReply(replies.TENSOR_EMPTY)
            if bytes(value[:5]) != KIND_TENSOR:
                raise ErrorReply(replies.WRONGTYPE)
            try:
                uid, tensor = decode_tensor(value)
            except CorruptValue as exc:
                raise exc.reply(keys[index], "tensor") from None
            cache.put(uid, tensor)
            found[index] = tensor
    return [found[i] for i in range(len(keys))]


async def set_tensors(link: BackendLink, items: Sequence[tuple[bytes, Tensor]], cache: TensorCache) -> None:
    await set_tensors_nowait(link, items, cache)


def set_tensors_nowait(
    link: BackendLink, items: Sequence[tuple[bytes, Tensor]], cache: TensorCache
) -> asyncio.Future[None]:
    """Send the write now and return its completion, so later commands need not wait for it.

    Commands sent afterwards on the same link are ordered after the write by Redis itself.
    """
    packed = []
    for key, tensor in items:
        uid = uuid.uuid4().hex
        packed.append((key, encode_tensor(tensor, uid)))
        cache.put(uid, tensor)
    return start_set_typed(link, KIND_TENSOR, packed)


async def get_header(link: BackendLink, kind: bytes, key: bytes) -> dict[str, Any] | None:
    """A stored object's header without its payload (one small read per execution)."""
    (value,) = await get_typed(link, kind, [key], _HEADER_PEEK)
    if value is None:
        return None
    name = _KIND_NAMES.get(kind, "AI")
    try:
        size = _LEN.unpack_from(value, 5)[0] if len(value) >= 9 else 0
        if 9 + size > len(value) >= 9:
            (value,) = await get_typed(link, kind, [key], 9 + size)
            if value is None:
                return None
        return unpack(value)[1]
    except CorruptValue as exc:
        raise exc.reply(key, name) from None


async def get_model_meta(link: BackendLink, key: bytes) -> ModelMeta | None:
    header = await get_header(link, KIND_MODEL, key)
    try:
        return None if header is None else meta_of(ModelMeta, header)
    except CorruptValue as exc:
        raise exc.reply(key, "model") from None


def model_header(meta: ModelMeta) -> dict[str, Any]:
    return asdict(meta)
