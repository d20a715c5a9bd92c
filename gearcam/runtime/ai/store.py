"""How tensors, models and scripts live in the backing Redis, and what the runtime keeps of them.

Each is one Redis string: a 5-byte marker (NUL, "gcm", kind), a 4-byte header
length, a JSON header (dtype and shape; or backend, device, batching and a load id)
and the payload (tensor bytes, model blob, script source). Being plain strings,
they persist (RDB/AOF), replicate, expire and DEL like any key. Type checks run in
Lua on the server, so "is this key a tensor?" and the write are one atomic step
and a key of another type is refused with WRONGTYPE instead of being overwritten.
The runtime answers reads from memory where the keyspace events say nothing has
changed since it wrote or read the key (TensorStore, ai/coherence.py).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from gearcam.cancel import wait_for
from gearcam.errors import NetworkError
from gearcam.runtime import replies
from gearcam.runtime.ai import kinds
from gearcam.runtime.ai.cache import TensorCache
from gearcam.runtime.ai.coherence import Charged, Coherence, Trusted
from gearcam.runtime.ai.errors import AIError
from gearcam.runtime.ai.kinds import HEAD_BYTES, KIND_MODEL, KIND_SCRIPT, KIND_TENSOR, TYPE_NAMES, head_read
from gearcam.runtime.ai.tensor import DTYPES, Tensor
from gearcam.runtime.ai.write_ack import WriteAck
from gearcam.runtime.keyevents import PRIVATE_PREFIX, KeyEvents
from gearcam.runtime.relay import BackendLink, Script
from gearcam.runtime.resp import ErrorReply, bulk_payload

__all__ = [
    "STEP_COMMANDS",
    "CorruptValue",
    "IN_TRANSACTION",
    "KIND_MODEL",
    "KIND_SCRIPT",
    "KIND_TENSOR",
    "ModelMeta",
    "ScriptMeta",
    "TensorStore",
    "decode_model",
    "decode_script",
    "delete_typed",
    "get_header",
    "get_model_meta",
    "get_typed",
    "heads_of",
    "meta_of",
    "own_read",
    "pack",
    "queued_step",
    "queued_tensor_write",
    "queued_type",
    "step_rights",
    "stored_reply",
    "type_of",
    "unpack",
]

_KIND_NAMES = {KIND_TENSOR: "tensor", KIND_MODEL: "model", KIND_SCRIPT: "script"}
_HEADER_PEEK = 4096
# The runtime reads stored values with GETRANGE only, from 0 to -1 (whole) or to an end one short of a
# multiple of 256 (a head): SLOWLOG tells these reads from a client's by their shape (runtime/slowlog.py).
_WHOLE = -1


def own_read(argv: list[bytes]) -> bool:
    """Whether a GETRANGE has the shape of the runtime's reads of stored AI values."""
    if len(argv) != 4 or argv[2] != b"0":
        return False
    end = argv[3]
    return end == b"-1" or (end.isdigit() and (int(end) + 1) % HEAD_BYTES == 0)


_LEN = struct.Struct("<I")

# A key is usable as `kind` when it is absent or a string starting with that marker. Absence is
# asked with OBJECT ENCODING, which causes no `keymiss` event (TYPE does): RedisAI opens the key
# for writing, which causes none, and a Gears keymiss hook must not run on an AI write.
_CHECK = """
local function check(key, marker)
  if not redis.call('OBJECT', 'ENCODING', key) then return 0 end
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'string' or redis.call('GETRANGE', key, 0, 4) ~= marker then
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
  end
  return 1
end
"""


# What the scripts below call inside Redis (commandstats.OwnCalls), as their arguments and replies tell it.
def _committed(args: Sequence[Any], frame: bytes) -> tuple[bytes, ...]:
    """COMMIT_TYPED: each key checked and renamed into place (taken as new: a key there is read too), or, refused,
    a key read and the temporary keys deleted."""
    pairs = int(args[2]) // 2
    if frame[:1] == b"-":
        return (b"object|encoding", b"type", *[b"del"] * pairs)
    return (b"object|encoding", b"rename", b"persist") * pairs


def _deleted(args: Sequence[Any], frame: bytes) -> tuple[bytes, ...]:
    """DEL_TYPED: absent (0), deleted (1), or of another type."""
    if frame == b":0\r\n":
        return (b"object|encoding",)
    return (b"object|encoding", b"type", b"getrange", b"del") if frame[:1] == b":" else (b"object|encoding", b"type")


_TRANSACTION_STEPS = {b"set": (b"set",), b"get": (b"type", b"getrange", b"get"), b"del": (b"type", b"getrange", b"del")}


def _typed(args: Sequence[Any], frame: bytes) -> tuple[bytes, ...]:
    """TYPE_OF: as the client's TYPE (`loud`) its TYPE is the client's command; the runtime's own check asks for
    absence first. A string (or an AI object) is read for its marker."""
    name, loud = frame[1:-2], args[-1] == b"loud"
    if not loud and name == b"none":
        return (b"object|encoding",)
    read = (b"getrange",) if name in (b"string", b"AI_TENSOR", b"AI__MODEL", b"AI_SCRIPT") else ()
    return read if loud else (b"object|encoding", b"type", *read)


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
""",
    _committed,
)
_TMP_TTL_MS = 60_000

DEL_TYPED = Script(
    _CHECK
    + """
local ok = check(KEYS[1], ARGV[1])
if type(ok) == 'table' then return ok end
if ok == 0 then return 0 end
return redis.call('DEL', KEYS[1])
""",
    _deleted,
)

# AI.TENSORSET/TENSORGET and the model and script stores, reads and deletes sent inside a client's MULTI are
# queued in its transaction as this script, so they apply at EXEC in their place, atomically with the rest, as
# RedisAI's commands do (the commit above cannot be queued: its temporary keys would be written before the
# transaction runs). ARGV[2] says what to do once the key passed the type check: 'set' writes ARGV[3]; 'get'
# reads the key and 'del' deletes it, each answering the error ARGV[3] if it is absent; 'refuse' answers the
# error ARGV[3] (arguments RedisAI refuses after opening the key: WRONGTYPE comes first). A 'set' or 'del'
# announces its key event as the runtime's own when EXEC is sent (TensorStore.announce, Queued.writes).
IN_TRANSACTION = Script(
    _CHECK
    + """
local ok = check(KEYS[1], ARGV[1])
if type(ok) == 'table' then return ok end
if ARGV[2] == 'set' then
  redis.call('SET', KEYS[1], ARGV[3])
  return redis.status_reply('OK')
end
if ARGV[2] == 'get' and ok == 1 then return redis.call('GET', KEYS[1]) end
if ARGV[2] == 'del' and ok == 1 then
  redis.call('DEL', KEYS[1])
  return redis.status_reply('OK')
end
return redis.error_reply(ARGV[3])
""",
    lambda args, frame: (b"object|encoding", *_TRANSACTION_STEPS.get(args[5], ())),  # queued: taken as new
)

TYPE_OF = Script(kinds.TYPE_OF_SOURCE, _typed)  # TYPE with RedisAI's type names (ai/kinds.py)


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

    def reply(self, key: bytes, kind: str) -> AIError:
        return AIError(replies.corrupt_value(key, kind, self.reason))


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
    """As `pack`, without json.dumps: every tensor write pays for it, and its fields are a name and numbers.

    The bytes are those json.dumps writes with the same separators (tests/unit/runtime/test_store_format.py).
    """
    dims = ",".join(map(str, tensor.array.shape))
    head = f'{{"dtype":"{tensor.dtype}","shape":[{dims}],"uid":"{uid}"}}'.encode()
    return b"".join((KIND_TENSOR, _LEN.pack(len(head)), head)), tensor.blob()


def decode_model(value: bytes | memoryview) -> tuple[ModelMeta, memoryview]:
    _, header, blob = unpack(value)
    return meta_of(ModelMeta, header), blob


def decode_script(value: bytes | memoryview) -> tuple[ScriptMeta, str]:
    _, header, source = unpack(value)
    try:
        text = bytes(source).decode()
    except UnicodeDecodeError as exc:
        raise CorruptValue(f"source: {exc}") from None
    return meta_of(ScriptMeta, header), text


def decode_tensor(value: bytes | memoryview) -> tuple[str, Tensor]:
    _, header, payload = unpack(value)
    dtype, shape = header.get("dtype"), header.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise CorruptValue(f"bad shape {shape!r}")
    if dtype not in DTYPES:
        raise CorruptValue(f"bad data type {dtype!r}")
    try:
        return str(header.get("uid", "")), Tensor.from_blob(str(dtype), shape, payload)
    except AIError as exc:
        raise CorruptValue(exc.message.removeprefix("ERR ")) from None


_Decoded = TypeVar("_Decoded")


def stored_reply(
    key: bytes, kind: str, decode: Callable[[bytes], _Decoded], render: Callable[[_Decoded], Any]
) -> Callable[[Any], Any]:
    """How a queued read's reply in EXEC's becomes the command's: Redis' refusal (WRONGTYPE, the empty key) as
    it is, else the stored value decoded and rendered; a value that does not decode is RedisAI's corrupt-value
    error for `kind` ("tensor", "model", "script")."""

    def reply(value: Any) -> Any:
        if isinstance(value, ErrorReply):
            return value
        try:
            decoded = decode(value)
        except CorruptValue as exc:
            raise exc.reply(key, kind) from None
        return render(decoded)

    return reply


def queued_step(mode: bytes, key: bytes, kind: bytes, argument: bytes) -> tuple[bytes, ...]:
    """What an owned command queues in a client's transaction (see IN_TRANSACTION): `mode` set, get, del or
    refuse on `key` if it holds `kind` (or nothing); `argument` the value to set, or the error to answer."""
    return (b"EVAL", IN_TRANSACTION.source, b"1", key, kind, mode, argument)


def queued_tensor_write(key: bytes, tensor: Tensor) -> tuple[bytes, ...]:
    """What AI.TENSORSET queues: EXEC answers OK or WRONGTYPE."""
    return queued_step(b"set", key, KIND_TENSOR, b"".join(encode_tensor(tensor, _tensor_id())))


def queued_type(key: bytes) -> tuple[bytes, ...]:
    """What TYPE queues inside a client's MULTI: the answer of TYPE_OF (RedisAI's type names), at EXEC."""
    return kinds.type_of_call(key, loud=True)


STEP_COMMANDS = "EVAL, OBJECT ENCODING, TYPE and GETRANGE"  # step_rights' commands, for an operator to grant


def step_rights(args: Sequence[bytes]) -> list[tuple[bytes, ...]]:
    """The plain commands a step queued in a client's transaction (queued_step, queued_type) runs as the
    client's user: the EVAL with its key, and the type check's reads (_CHECK, TYPE_OF). Redis checks the
    EVAL when it is queued and each call inside it at EXEC; the write, read or delete itself is what the
    owned command is checked as (acl.probes_for). Nothing for a command queued as it is."""
    if not args or args[0] != b"EVAL":
        return []
    keys = args[3 : 3 + int(args[2])]
    rights: list[tuple[bytes, ...]] = [(b"EVAL", b"return 0", args[2], *keys)]
    for key in keys:
        rights += [(b"OBJECT", b"ENCODING", key), (b"TYPE", key), (b"GETRANGE", key, b"0", b"4")]
    return rights


async def get_typed(link: BackendLink, kind: bytes, keys: Sequence[bytes], limit: int = 0) -> list[bytes | None]:
    """Packed values (None where absent); `limit` > 0 reads only that many leading bytes.

    GETRANGE already answers WRONGTYPE for non-string keys; a string without the marker
    is refused here. No Lua: a script would copy every value once more. GETRANGE answers
    an absent key and an empty string alike: only then is the key's type asked (one that
    holds this kind by then was written after the read, which found it absent).
    """
    values: list[Any] = await link.pipeline([(b"GETRANGE", k, 0, limit - 1 if limit > 0 else _WHOLE) for k in keys])
    out: list[bytes | None] = []
    for key, value in zip(keys, values, strict=True):
        if isinstance(value, ErrorReply):
            raise value
        if value == b"":
            if await type_of(link, key) not in ("none", TYPE_NAMES[kind]):
                raise AIError(replies.WRONGTYPE)
            out.append(None)
        elif value[:5] != kind:
            raise AIError(replies.WRONGTYPE)
        else:
            out.append(value)
    return out


async def heads_of(link: BackendLink, keys: Sequence[bytes]) -> list[Any]:
    """The first bytes of each key's value (kinds.head_read), an error in place for a key of another type: one
    small read each, pipelined."""
    return await link.pipeline([head_read(key) for key in keys]) if keys else []


async def delete_typed(link: BackendLink, kind: bytes, key: bytes) -> bool:
    deleted: int = await link.eval(DEL_TYPED, [key], [kind])
    return deleted == 1


async def type_of(link: BackendLink, key: bytes, quiet: bool = True) -> str:
    """The key's type as TYPE answers on RedisAI; `quiet=False` is TYPE itself (a `keymiss` event if absent)."""
    name: str | bytes = await link.eval(
        TYPE_OF, [key], [KIND_TENSOR, KIND_MODEL, KIND_SCRIPT, b"quiet" if quiet else b"loud"]
    )
    return name.decode() if isinstance(name, bytes) else str(name)


def _header_size(head: bytes | memoryview) -> int | None:
    """Bytes of marker + length + JSON header at the start of a stored value, if the length is there."""
    if len(head) < 9:
        return None
    return 9 + int(_LEN.unpack_from(head, 5)[0])


def _peeked_uid(head: bytes) -> str:
    """The object id in the first bytes of a stored value; "" if it is not there (or not readable: decoded later)."""
    size = _header_size(head)
    if size is None or size > len(head):
        return ""
    try:
        header = json.loads(head[9:size])
    except ValueError:
        return ""
    return str(header.get("uid", "")) if isinstance(header, dict) else ""


async def get_header(link: BackendLink, kind: bytes, key: bytes) -> dict[str, Any] | None:
    """A stored object's header without its payload (one small read per execution)."""
    (value,) = await get_typed(link, kind, [key], _HEADER_PEEK)
    if value is None:
        return None
    name = _KIND_NAMES.get(kind, "AI")
    try:
        size = _header_size(value)
        if size is not None and size > len(value):
            whole_pages = -(-size // _HEADER_PEEK) * _HEADER_PEEK  # a head's length, as own_read knows it
            (value,) = await get_typed(link, kind, [key], whole_pages)
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


# Key events each write causes on its destination key (see Coherence): a plain SET causes
# "set"; the checked commit renames a temporary key onto it ("rename_to") and drops the
# temporary key's expiry ("persist").
_EVENTS_SET = 1
_EVENTS_COMMIT = 2
_EVENTS_DEL = 1  # AI.MODELDEL / AI.SCRIPTDEL: "del"
# Key events memory need not count: those of commands that act only on a key already holding a
# list, hash, set, sorted set or stream (or create one where there was no key), never on a stored
# AI object (a string, which such a command refuses with WRONGTYPE) nor from the runtime's own
# writes. A camera's XADD is the commonest write. Commands that store a result over a key of any type
# (SUNIONSTORE, ZRANGESTORE, SORT ... STORE) are not among them.
_UNCOUNTED = frozenset({
    "xadd", "xtrim", "xdel", "xsetid", "xgroup-create", "xgroup-createconsumer", "xgroup-delconsumer",
    "xgroup-destroy", "xgroup-setid",
    "lpush", "rpush", "lpop", "rpop", "linsert", "lset", "lrem", "ltrim",
    "hset", "hdel", "hincrby", "hincrbyfloat",
    "sadd", "srem", "spop",
    "zadd", "zincr", "zrem", "zremrangebyscore", "zremrangebyrank", "zremrangebylex",
    # Events that change no value, on whatever key: a read's miss (class `m`, which Gears' keymiss
    # hooks turn on; the runtime's reads of absent keys cause them too) and a key's creation (class
    # `n`, always with the creating write's own event). Counted, they would take an own write's place.
    "keymiss", "new",
})  # fmt: skip
Item = tuple[bytes, Packed, str]  # key, stored value, object id
Token = tuple[int, tuple[int, int]]  # the DB and the key's epoch when a read was sent


class TensorStore:
    """Stored AI objects: their format in the backing Redis, and what the runtime keeps of them in memory.

    Reads are answered from memory when the key is trusted (see Coherence) and the tensor
    is still cached; writes go to Redis at once, on the client's own link, so that the
    client's later commands are ordered after them. A tensor already known to be a tensor
    is overwritten with a plain SET; any other key goes through the checked commit, which
    refuses (WRONGTYPE) to overwrite a key of another type.
    """

    def __init__(self, cache_bytes: int, fence_timeout: float = 1.0, write_ack: str = "auto") -> None:
        self.cache = TensorCache(cache_bytes)
        self.acks = WriteAck(write_ack)
        self.coherence = Coherence()
        self.coherence.on_forget = self._forget
        self.events: KeyEvents | None = None
        self._fence_timeout = fence_timeout

    # Coherence ---------------------------------------------------------------------------

    def on_key_event(self, event: str, db: int, key: bytes) -> Charged:
        """Whose the event is: FOREIGN ones withdrew what memory knew of the key."""
        if event in _UNCOUNTED:  # (events of the temporary keys never come here: keyevents.PRIVATE_PREFIX)
            return Charged.UNCOUNTED
        return self.coherence.on_event(db, key)

    def withdraw_all(self) -> None:
        """Forget what memory knows (events were missed, or a FLUSHALL/FLUSHDB/SWAPDB went by)."""
        self.coherence.withdraw_all()
        self.cache.clear()

    def release_cached(self, db: int, key: bytes) -> None:
        """Drop the cached copy of the tensor at `key`, which a write on its way will replace.

        What memory knows of the key stays (it is a tensor, so the write is a plain SET); a
        read before the write lands asks Redis. At batch 32 of an image model, this keeps
        the runtime from holding the old and the new 18 MiB tensor at once.
        """
        entry = self.coherence.get(db, key)
        if entry is not None and entry.kind == KIND_TENSOR:
            self.cache.drop(entry.uid)

    def _forget(self, entry: Trusted) -> None:
        """A tensor no key holds any more leaves the cache at once: memory keeps the live tensors, not their history."""
        if entry.kind == KIND_TENSOR:
            self.cache.drop(entry.uid)

    def _may_trust(self, link: BackendLink) -> bool:
        return link.db is not None and link.trusts_memory and self.events is not None and self.events.ready.is_set()

    async def trusted(self, link: BackendLink, key: bytes) -> Trusted | None:
        """What memory knows `key` holds, after this client's own relayed writes have been seen; None to ask Redis."""
        for _ in range(2):  # a fence already on its way may predate the latest relayed command
            if not self._may_trust(link):
                return None
            if link.relayed == link.fenced:
                assert link.db is not None
                return self.coherence.get(link.db, key)
            # The client relayed commands since the last fence: their key events must arrive first.
            self._start_fence(link)
            if link.fencing is None:
                return None
            try:
                await wait_for(asyncio.shield(link.fencing), self._fence_timeout)
            except (TimeoutError, NetworkError):
                return None
        return None

    def _trusted_now(self, link: BackendLink, key: bytes) -> Trusted | None:
        """As `trusted`, for writers that cannot wait: None (ask Redis) while a fence is due, which starts one."""
        if not self._may_trust(link):
            return None
        if link.relayed != link.fenced:
            self._start_fence(link)
            return None
        assert link.db is not None
        return self.coherence.get(link.db, key)

    def _start_fence(self, link: BackendLink) -> None:
        """Publish a fence behind the commands relayed so far; when it comes back, they no longer stand in the way."""
        if link.fencing is not None or self.events is None:
            return
        future = self.events.fence_soon(link)
        if future is None:
            return
        sent = link.relayed
        link.fencing = future

        def arrived(done: asyncio.Future[None]) -> None:
            link.fencing = None
            if not done.cancelled() and done.exception() is None:
                link.fenced = max(link.fenced, sent)

        future.add_done_callback(arrived)

    def token(self, link: BackendLink, key: bytes) -> Token | None:
        """Taken before a read from Redis; pass it to `learn` with what the read found."""
        return None if link.db is None else (link.db, self.coherence.epoch(link.db, key))

    def learn(self, key: bytes, kind: bytes, uid: str, token: Token | None) -> None:
        if token is not None and uid:
            db, epoch = token
            self.coherence.learn(db, key, Trusted(kind, uid), epoch)

    # Tensors -----------------------------------------------------------------------------

    async def get_tensors(self, link: BackendLink, keys: Sequence[bytes]) -> list[Tensor]:
        """The tensors at `keys`: from memory where trusted and cached, else from Redis (one or two reads)."""
        found: dict[int, Tensor] = {}
        for index, key in enumerate(keys):
            entry = await self.trusted(link, key)
            if entry is not None and entry.kind == KIND_TENSOR:
                cached = self.cache.get(entry.uid)
                if cached is not None:
                    found[index] = cached
        missing = [i for i in range(len(keys)) if i not in found]
        if missing:
            read = await self._read_tensors(link, [keys[i] for i in missing])
            found.update(zip(missing, read, strict=True))
        return [found[i] for i in range(len(keys))]

    async def _read_tensors(self, link: BackendLink, keys: Sequence[bytes]) -> list[Tensor]:
        """A small read of each header gives the stored tensor's id; only tensors not in the cache are read whole."""
        tokens = [self.token(link, key) for key in keys]
        heads = await get_typed(link, KIND_TENSOR, keys, HEAD_BYTES)
        found: dict[int, Tensor] = {}
        missing: list[int] = []
        for index, head in enumerate(heads):
            if head is None:
                raise AIError(replies.TENSOR_EMPTY)
            uid = _peeked_uid(head)
            cached = self.cache.get(uid)
            if cached is None:
                missing.append(index)
            else:
                found[index] = cached
                self.learn(keys[index], KIND_TENSOR, uid, tokens[index])
        if missing:
            frames = await link.pipeline([(b"GETRANGE", keys[i], 0, _WHOLE) for i in missing], raw=True)
            for index, frame in zip(missing, frames, strict=True):
                value = bulk_payload(frame)
                if isinstance(value, ErrorReply):
                    raise value
                if not value:  # deleted since its head was read
                    raise AIError(replies.TENSOR_EMPTY)
                if bytes(value[:5]) != KIND_TENSOR:
                    raise AIError(replies.WRONGTYPE)
                try:
                    uid, tensor = decode_tensor(value)
                except CorruptValue as exc:
                    raise exc.reply(keys[index], "tensor") from None
                self.cache.put(uid, tensor)
                self.learn(keys[index], KIND_TENSOR, uid, tokens[index])
                found[index] = tensor
        return [found[i] for i in range(len(keys))]

    def set_tensors(self, link: BackendLink, items: Sequence[tuple[bytes, Tensor]]) -> asyncio.Future[None]:
        """Send the write now and return its completion (Redis has it), so later commands need not wait for it."""
        fast: list[Item] = []
        checked: list[Item] = []
        for key, tensor in items:
            uid = _tensor_id()
            self.cache.put(uid, tensor)
            entry = self._trusted_now(link, key)
            (fast if entry is not None and entry.kind == KIND_TENSOR else checked).append(
                (key, encode_tensor(tensor, uid), uid)
            )
        futures: list[asyncio.Future[None]] = []
        if fast:
            futures.append(self._set_plain(link, fast))
        if checked:
            futures.append(self.set_typed(link, KIND_TENSOR, checked))
        return futures[0] if len(futures) == 1 else asyncio.ensure_future(_all(futures))

    def _set_plain(self, link: BackendLink, items: Sequence[Item]) -> asyncio.Future[None]:
        """Overwrite keys memory knows to hold tensors: one plain SET each, no Lua, no temporary key.

        The replies complete one future through callbacks: a task per write would cost more
        than a small tensor's SET. In write-behind (write_ack.py) it completes sooner, once the
        writes are in the kernel's socket buffer to Redis; a refusal that comes later withdraws
        the key and stops write-behind.
        """
        db = link.db
        behind = self.acks.behind
        done: asyncio.Future[None] = link.loop.create_future()
        left = len(items)
        failed: list[BaseException] = []

        def answered(key: bytes, reply: asyncio.Future[Any]) -> None:
            nonlocal left
            error: BaseException | None
            if reply.cancelled():
                error = NetworkError("the write to the backing Redis was cancelled")
            else:
                error = reply.exception()
            if behind:
                link.unconfirmed -= 1
            if error is None and isinstance(reply.result(), ErrorReply):
                error = reply.result()
                if behind:
                    self.acks.refused_write(key, error)
            if error is not None:  # refused, or the link was lost with it: the key may not hold it
                if db is not None:
                    self.coherence.write_failed(db, key, _EVENTS_SET)
                failed.append(error)
            left -= 1
            if left == 0 and not done.done():
                if failed:
                    done.set_exception(failed[0])
                else:
                    done.set_result(None)

        for key, value, uid in items:
            if db is not None:
                self.coherence.wrote(db, key, Trusted(KIND_TENSOR, uid), _EVENTS_SET)
            link.send((b"SET", key, value), raw=False).add_done_callback(functools.partial(answered, key))
        if behind:
            link.unconfirmed += len(items)
            link.when_handed(done)
        return done

    # Any kind: the checked commit ---------------------------------------------------------

    def set_typed(self, link: BackendLink, kind: bytes, items: Sequence[Item]) -> asyncio.Future[None]:
        """Send the checked write of `items` (key, packed value, id) at once and return its completion.

        Values are first written with a plain SET under temporary keys (no Lua copy of a large
        argument); the commit script then checks every destination and renames them all into
        place, so the write is atomic and a key of another type is refused, never overwritten.
        """
        keys = [k for k, _, _ in items]
        temps = [PRIVATE_PREFIX + uuid.uuid4().hex.encode() for _ in items]
        futures: list[asyncio.Future[Any]] = []
        if COMMIT_TYPED.sha not in link.loaded_scripts:
            # Loaded ahead in the same pipeline, so the EVALSHA below cannot miss it.
            futures.append(link.send((b"SCRIPT", b"LOAD", COMMIT_TYPED.source), raw=False))
            link.loaded_scripts.add(COMMIT_TYPED.sha)
        futures += [link.send((b"SET", tmp, value, b"PX", _TMP_TTL_MS), raw=False)
                   for tmp, (_, value, _) in zip(temps, items, strict=True)]  # fmt: skip
        db = link.db  # a SELECT pipelined behind this write must not move what it learns
        tokens = [None if db is None else self.coherence.expect(db, key, _EVENTS_COMMIT) for key in keys]
        futures.append(link.send((b"EVALSHA", COMMIT_TYPED.sha, 2 * len(items), *keys, *temps, kind), raw=False))

        async def finish() -> None:
            try:
                # Every reply is collected, so a lost link's error is not left unretrieved on the others. An error
                # reply is a value here (an ErrorReply is an exception too): a NOSCRIPT is answered below.
                results = await asyncio.gather(*futures, return_exceptions=True)
                lost = next(
                    (r for r in results if isinstance(r, BaseException) and not isinstance(r, ErrorReply)), None
                )
                if lost is not None:
                    raise lost
                for result in results[:-1]:
                    if isinstance(result, ErrorReply) and not result.message.startswith("NOSCRIPT"):
                        raise result
                committed = results[-1]
                if isinstance(committed, ErrorReply) and committed.message.startswith("NOSCRIPT"):  # a SCRIPT FLUSH
                    committed = await link.call(b"EVAL", COMMIT_TYPED.source, 2 * len(items), *keys, *temps, kind)
                if isinstance(committed, ErrorReply):
                    raise committed
            except BaseException:
                for key, _, uid in items:
                    if db is not None:
                        self.coherence.write_failed(db, key, _EVENTS_COMMIT)
                    if kind == KIND_TENSOR:
                        self.cache.drop(uid)  # refused: no key holds it
                raise
            for (key, _, uid), token in zip(items, tokens, strict=True):
                if db is not None and token is not None:
                    self.coherence.learn(db, key, Trusted(kind, uid), token)

        return asyncio.ensure_future(finish())

    async def delete(self, link: BackendLink, kind: bytes, key: bytes) -> bool:
        """Delete the model or script at `key` if it is one (AI.MODELDEL, AI.SCRIPTDEL); False if it was not.

        Its `del` event is announced like a write's, so it is not taken for someone else's
        delete: arriving after the next store of the key, it would release the new session.
        """
        db = link.db
        if db is not None:
            self.coherence.expect(db, key, _EVENTS_DEL)
        deleted = False
        try:
            deleted = await delete_typed(link, kind, key)
        finally:
            if db is not None and not deleted:
                self.coherence.write_failed(db, key, _EVENTS_DEL)
        return deleted

    def announce(self, db: int, key: bytes) -> None:
        """A write or delete queued in a client's transaction is about to apply (EXEC sent): its one key event
        is the runtime's own, like a plain AI write's (RedisAI's cause none, so no KeysReader runs on it)."""
        self.coherence.expect(db, key, _EVENTS_SET)

    def unannounce(self, db: int, key: bytes) -> None:
        """An announced queued write did not apply (refused, or its transaction did not run): no event comes."""
        self.coherence.write_failed(db, key, _EVENTS_SET)

    async def write(self, link: BackendLink, kind: bytes, key: bytes, value: Packed, uid: str) -> None:
        """Store one model or script (or tensor) with the checked commit and wait for Redis to have it."""
        done = self.set_typed(link, kind, [(key, value, uid)])
        await link.drain()
        await done


_ID_PREFIX = uuid.uuid4().hex[:16]  # this process's; ids of tensors must never repeat across runtimes
_id_counter = itertools.count(1)


def _tensor_id() -> str:
    """A fresh tensor id without a system call per tensor (uuid4 reads os.urandom)."""
    return f"{_ID_PREFIX}{next(_id_counter):x}"


async def _all(futures: Sequence[asyncio.Future[None]]) -> None:
    for future in futures:
        await future
