"""COMMAND and its subcommands, with the runtime's AI.* and RG.* commands in them as the modules register them.

On Redis with RedisAI and RedisGears loaded, COMMAND, COMMAND INFO, COUNT, LIST and DOCS show
their commands, and COMMAND GETKEYS finds their keys: cluster clients route by these, tools list
them. The backing Redis knows none of them. Each answer here is the backing Redis' own (relayed,
so its ACL rules and argument checks apply, and it counts and logs the command) with the owned
commands put in as Redis 7.0 shows a module command: the name as registered (lower case), arity
-1, the declared flags plus `module` (and `movablekeys` where the module reports its keys itself),
the key range as the one key spec RM_CreateCommand makes of it, no ACL categories, group `module`.
Their entries come after the backing Redis' own, whose order is its hash table's anyway.

Key positions are RedisAI 1.2.7's: its reporters for AI.MODELEXECUTE, AI.SCRIPTEXECUTE, the DAG
commands and the deprecated run commands, quirks included (AI.SCRIPTEXECUTE leaves out the keys
of its last group when they end the command). RedisGears' RG.TRIGGER reports keys only inside a
command hook, so COMMAND GETKEYS finds none, as on RedisGears.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gearcam.runtime.commands.base import Command, Context, Registration, upper
from gearcam.runtime.resp import Encoded, ErrorReply, SetReply, SimpleString, encode, reply_end

if TYPE_CHECKING:
    from gearcam.runtime.gears.service import CommandShape

__all__ = [
    "command",
    "dag_keys",
    "hook_info",
    "modelexecute_keys",
    "modelrun_keys",
    "scriptexecute_keys",
    "scriptrun_keys",
]

# Redis' names for the flags modules declare (commandFlagsFromString), in the order COMMAND shows them.
_SHOWN_FLAGS = {"write": "write", "readonly": "readonly", "deny-oom": "denyoom", "admin": "admin"}
_SHOWN_ORDER = ("write", "readonly", "denyoom", "module", "admin", "movablekeys")
_KEY_FLAGS = SetReply([SimpleString("RW"), SimpleString("access"), SimpleString("update")])  # full access
_NOT_FOUND = "Invalid command specified"


# RedisAI 1.2.7's key reporters (RedisModule_KeyAtPos). Each returns the positions it reported
# before it stopped: Redis ignores the reporter's error and keeps the keys already reported.


_INTEGER = re.compile(rb"-?[0-9]+")


def _int(value: bytes) -> int | None:
    """RedisModule_StringToLongLong: digits with an optional minus, nothing else."""
    return int(value) if _INTEGER.fullmatch(value) else None


def modelexecute_keys(argv: list[bytes]) -> list[int]:
    """AI.MODELEXECUTE key INPUTS n in... OUTPUTS m out... [TIMEOUT t]."""
    if len(argv) < 4:
        return []
    keys = [1]
    inputs = _int(argv[3])
    if inputs is None or len(argv) <= 3 + inputs + 2:
        return keys
    outputs = _int(argv[3 + inputs + 2])
    if outputs is None or len(argv) <= 3 + inputs + 2 + outputs:
        return keys
    first_output = 4 + inputs + 2
    return keys + list(range(4, 4 + inputs)) + list(range(first_output, first_output + outputs))


def _split_keys(argv: list[bytes], start: int, skipped: tuple[bytes, ...]) -> list[int]:
    """The deprecated run commands: after an optional TIMEOUT t and the INPUTS word, every argument but `skipped`."""
    keys = [1]
    if start >= len(argv):
        return keys
    if upper(argv[start]) == "TIMEOUT":
        start += 2
    start += 1
    if start >= len(argv):
        return keys
    return keys + [i for i in range(start, len(argv)) if argv[i].upper() not in skipped]


def modelrun_keys(argv: list[bytes]) -> list[int]:
    """AI.MODELRUN key [TIMEOUT t] INPUTS in... OUTPUTS out..."""
    return _split_keys(argv, 2, (b"OUTPUTS",))


def scriptrun_keys(argv: list[bytes]) -> list[int]:
    """AI.SCRIPTRUN key fn [TIMEOUT t] INPUTS in... [$ ...] OUTPUTS out..."""
    return _split_keys(argv, 3, (b"OUTPUTS", b"$"))


def scriptexecute_keys(argv: list[bytes]) -> list[int]:
    """AI.SCRIPTEXECUTE key fn [KEYS n k...] [INPUTS n in...] [OUTPUTS n out...] [TIMEOUT t]."""
    if len(argv) < 6:
        return []
    keys = [1]
    position = 3
    while position < len(argv):
        word = upper(argv[position])
        position += 1
        if word in ("INPUTS", "OUTPUTS", "KEYS"):
            count = _int(argv[position]) if position < len(argv) else None
            position += 1
            if count is None or count <= 0 or position + count >= len(argv):
                return keys
            keys += range(position, position + count)
            position += count
        else:
            return keys  # TIMEOUT ends the command; anything else is an error
    return keys


def dag_keys(argv: list[bytes]) -> list[int]:
    """AI.DAGEXECUTE and the rest: LOAD/PERSIST keys, the ROUTING key, and each op's model or script key."""
    keys: list[int] = []
    position = 1
    while position < len(argv):
        word = upper(argv[position])
        position += 1
        if word in ("LOAD", "PERSIST"):
            count = _int(argv[position]) if position < len(argv) else None
            position += 1
            if count is None:
                return keys
            if count + position >= len(argv):
                return keys
            keys += range(position, position + count)
            position = max(position, position + count)
        elif word in ("ROUTING", "AI.MODELEXECUTE", "AI.SCRIPTEXECUTE"):
            if position >= len(argv):
                return keys
            keys.append(position)
            position += 1
    return keys


# What COMMAND shows of an owned command -----------------------------------------------------------


def _name_of(command: Command) -> bytes:
    return command.name.lower().encode()  # as the module registered it


def _module_of(command: Command) -> bytes:
    return command.name.split(".", 1)[0].lower().encode()  # "ai", "rg": RedisModule_Init's names


def _owned(ctx: Context, name: bytes) -> Command | None:
    command = ctx.state.commands.get(upper(name))
    return command if command is not None and command.registration is not None else None


def _flags(registration: Registration) -> SetReply:
    declared = {_SHOWN_FLAGS[f] for f in registration.flags.split() if f in _SHOWN_FLAGS} | {"module"}
    if registration.keys is not None:
        declared.add("movablekeys")
    return SetReply([SimpleString(f) for f in _SHOWN_ORDER if f in declared])


def _key_specs(registration: Registration) -> SetReply:
    if registration.first_key == 0:
        return SetReply()
    flags = SetReply(_KEY_FLAGS)
    if registration.keys is not None:
        flags.append(SimpleString("variable_flags"))
    last = registration.last_key
    return SetReply([{
        b"flags": flags,
        b"begin_search": {b"type": b"index", b"spec": {b"index": registration.first_key}},
        b"find_keys": {
            b"type": b"range",
            b"spec": {b"lastkey": last if last < 0 else last - registration.first_key,
                      b"keystep": registration.key_step, b"limit": 0},
        },
    }])  # fmt: skip


def hook_info(command: Command) -> CommandShape:
    """What RedisGears' command hooks read of an owned command's COMMAND INFO: its flags and key range."""
    registration = command.registration
    assert registration is not None
    return {str(f) for f in _flags(registration)}, registration.first_key, registration.last_key, registration.key_step


def _info_of(command: Command) -> list[Any]:
    """COMMAND INFO's entry for an owned command."""
    registration = command.registration
    assert registration is not None
    return [
        _name_of(command),
        -1,
        _flags(registration),
        registration.first_key,
        registration.last_key,
        registration.key_step,
        SetReply(),  # ACL categories: none for a module's command on Redis 7.0
        SetReply(),  # tips
        _key_specs(registration),
        SetReply(),  # subcommands
    ]


def _doc_of(command: Command) -> dict[bytes, bytes]:
    """COMMAND DOCS' entry: a module command without documentation has its group and module only."""
    return {b"group": b"module", b"module": _module_of(command)}


def _keys_of(command: Command, argv: list[bytes]) -> list[int]:
    """Key positions in `argv` (the owned command and its arguments), as Redis 7.0 finds them."""
    registration = command.registration
    assert registration is not None
    if registration.keys is not None:
        return registration.keys(argv)
    first, last, step = registration.first_key, registration.last_key, registration.key_step
    last = last if last >= 0 else len(argv) + last
    if first >= len(argv) or last >= len(argv) or last < first:
        return []
    return list(range(first, last + 1, step))


# The handler ----------------------------------------------------------------------------------------


def _elements(frame: bytes) -> tuple[bytes, list[bytes]]:
    """An aggregate reply frame's type byte and its elements' frames."""
    start = frame.index(b"\r\n") + 2
    items: list[bytes] = []
    while start < len(frame):
        end = reply_end(frame, start)
        items.append(frame[start:end])
        start = end
    return frame[:1], items


def _aggregate(kind: bytes, items: list[bytes], pairs: bool = False) -> Encoded:
    count = len(items) // 2 if pairs and kind == b"%" else len(items)
    return Encoded(b"%s%d\r\n" % (kind, count) + b"".join(items))


def _encoded(ctx: Context, values: Iterable[Any]) -> list[bytes]:
    return [b"".join(encode(value, ctx.protocol)) for value in values]


def _glob(pattern: bytes) -> re.Pattern[bytes]:
    """Redis' stringmatch (nocase) as a regular expression: *, ?, [set], [^set], ranges, backslash escapes."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i : i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i : i + 1]))
        elif c == b"[":
            end = pattern.find(b"]", i + 2 if pattern[i + 1 : i + 2] == b"^" else i + 1)
            if end < 0:
                out.append(re.escape(pattern[i:]))  # Redis reads an unclosed set to the pattern's end
                break
            body = pattern[i + 1 : end]
            negate = body.startswith(b"^")
            members = re.sub(rb"([\]\\\[])", rb"\\\1", body[1:] if negate else body)
            out.append(b"[" + (b"^" if negate else b"") + members + b"]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(b"".join(out), re.IGNORECASE | re.DOTALL)


def _listed(args: list[bytes], owned: list[Command]) -> list[Command]:
    """The owned commands COMMAND LIST [FILTERBY MODULE m | ACLCAT c | PATTERN p] adds (its syntax the backing's)."""
    if len(args) < 5:
        return owned
    kind, value = upper(args[3]), args[4]
    if kind == "MODULE":
        return [c for c in owned if _module_of(c) == value]
    if kind == "PATTERN":
        pattern = _glob(value)
        return [c for c in owned if pattern.fullmatch(_name_of(c))]
    return []  # ACLCAT: a module's commands are in no category on Redis 7.0


async def command(ctx: Context, args: list[bytes]) -> Any:
    """COMMAND [INFO|COUNT|LIST|DOCS|GETKEYS|GETKEYSANDFLAGS ...], relayed, with the owned commands put in."""
    sub = upper(args[1]) if len(args) > 1 else ""
    found = _owned(ctx, args[2]) if sub in ("GETKEYS", "GETKEYSANDFLAGS") and len(args) > 2 else None
    if found is not None:
        return await _getkeys(ctx, args, found, sub == "GETKEYSANDFLAGS")
    frame = await ctx.link.call_raw(args, own=False)
    if frame[:1] == b"-":
        return Encoded(frame)
    owned = sorted((c for c in ctx.state.commands.values() if c.registration is not None), key=lambda c: c.name)
    if sub == "COUNT":
        return int(frame[1:-2]) + len(owned)
    if sub not in ("", "INFO", "LIST", "DOCS"):
        return Encoded(frame)  # HELP
    kind, items = _elements(frame)
    if sub in ("", "INFO") and len(args) <= 2:
        return _aggregate(kind, items + _encoded(ctx, (_info_of(c) for c in owned)))
    if sub == "INFO":
        for index, name in enumerate(args[2:]):
            found = _owned(ctx, name)
            if found is not None:
                items[index] = _encoded(ctx, [_info_of(found)])[0]
        return _aggregate(kind, items)
    if sub == "LIST":
        return _aggregate(kind, items + _encoded(ctx, (_name_of(c) for c in _listed(args, owned))))
    return _aggregate(kind, _docs(ctx, args, items, owned), pairs=True)


def _docs(ctx: Context, args: list[bytes], items: list[bytes], owned: list[Command]) -> list[bytes]:
    """COMMAND DOCS' name/doc pairs: the backing Redis' and the owned commands', in the order asked for."""
    if len(args) <= 2:
        return items + [e for c in owned for e in _encoded(ctx, (_name_of(c), _doc_of(c)))]
    theirs = {}
    for position in range(0, len(items) - 1, 2):
        name = items[position]
        theirs[name[name.index(b"\r\n") + 2 : -2].lower()] = items[position : position + 2]
    out: list[bytes] = []
    for name in args[2:]:
        found = _owned(ctx, name)
        if found is not None:
            out += _encoded(ctx, (_name_of(found), _doc_of(found)))
        else:
            out += theirs.get(name.lower(), [])
    return out


async def _getkeys(ctx: Context, args: list[bytes], found: Command, with_flags: bool) -> Any:
    """COMMAND GETKEYS of an owned command; relayed first, so a user refused COMMAND is refused here too."""
    frame = await ctx.link.call_raw(args, own=False)
    if frame[:1] != b"-" or _NOT_FOUND not in frame.decode("utf-8", "replace"):
        return Encoded(frame)  # NOPERM, or the backing Redis answered it: theirs
    registration = found.registration
    assert registration is not None
    if registration.first_key == 0 and registration.keys is None:
        raise ErrorReply("ERR The command has no key arguments")
    argv = args[2:]
    positions = _keys_of(found, argv)
    if not positions:
        raise ErrorReply("ERR Invalid arguments specified for command")
    if with_flags:
        return [[argv[p], SetReply(_KEY_FLAGS)] for p in positions]
    return [argv[p] for p in positions]
