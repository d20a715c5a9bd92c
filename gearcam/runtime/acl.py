"""ACL rules for the commands the runtime serves itself (AI.*, RG.* and the few it amends).

The backing Redis does not know `AI.*` or `RG.*`, so its ACLs cannot name them. Each such
command is mapped instead to the plain Redis commands that stand for what it does, and the
backing Redis is asked (`ACL DRYRUN user <command> <key>`) whether the client's user may run
those: a tensor read is a `GET` of its key, a write a `SET`, a delete a `DEL`; running code
on the server (Gears functions, TorchScript) is an `EVAL`; reading Gears' state is a
`FUNCTION LIST`, changing it a `FUNCTION DELETE`; runtime settings are a `CONFIG SET`. So
`ACL SETUSER u -@scripting` (or `-eval`) keeps `u` from running Gears code, and `~u:*`
limits `u`'s AI.* commands to its own keys. A refusal is Redis' NOPERM text with the
client's command and key in it, never the stand-in's name. The mapping is in docs/runtime.md;
each entry also says in words what its command is checked as, for the operator who tries to
name the command in an ACL rule (`explain_refused_rule`), and `ACL DRYRUN` of such a command
is answered with the same checks (`AclChecker.dryrun`).

Users with every command and every key (`+@all ~*`, no selectors: the default user unless
it was restricted) are not asked about: their commands run as before, on their own link.
Answers are cached per user until an `ACL` command passes through the runtime, and for at
most a second (changes made directly on the backing Redis).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gearcam.redis_text import text
from gearcam.runtime.relay import Address, OwnLink
from gearcam.runtime.resp import ErrorReply

__all__ = [
    "READ",
    "WRITE",
    "AclChecker",
    "AclRefused",
    "Probe",
    "dryrun_answer",
    "explain_refused_rule",
    "is_stood_for",
    "probes_for",
    "rule_tokens",
    "user_fields",
]

logger = logging.getLogger(__name__)

READ = b"GET"
WRITE = b"SET"
_RUN_CODE = (b"EVAL", b"return 0", b"0")
_GEARS_READ = (b"FUNCTION", b"LIST")
_GEARS_WRITE = (b"FUNCTION", b"DELETE", b"gearcam")
_SETTINGS = (b"CONFIG", b"SET", b"maxmemory-clients", b"0")
_SEPARATOR = b"|>"
_TTL = 1.0
_CACHE_MAX = 4096


@dataclass(frozen=True)
class Probe:
    """One question for ACL DRYRUN: a plain command that stands for part of the client's command."""

    args: tuple[bytes, ...]
    key: bytes | None = None  # the client's key it checks, named in the refusal


def _key(kind: bytes, key: bytes) -> Probe:
    if kind == WRITE:
        return Probe((b"SET", key, b"v"), key)
    if kind == b"DEL":
        return Probe((b"DEL", key), key)
    return Probe((b"GET", key), key)


def _counted(args: list[bytes], position: int) -> tuple[list[bytes], int]:
    """`count k1 k2 ...` at `position`; what is there when the count is bad (the handler refuses it)."""
    try:
        count = max(int(args[position]), 0)
    except (IndexError, ValueError):
        return [], len(args)
    return args[position + 1 : position + 1 + count], position + 1 + count


def _modelexecute(args: list[bytes]) -> list[Probe]:
    probes = [_key(READ, args[1])] if len(args) > 1 else []
    inputs, position = _counted(args, 3)
    outputs, _ = _counted(args, position + 1)
    return probes + [_key(READ, k) for k in inputs] + [_key(WRITE, k) for k in outputs]


def _split_run(args: list[bytes]) -> list[Probe]:
    """The deprecated forms (AI.MODELRUN, AI.SCRIPTRUN): `INPUTS in... OUTPUTS out...` without counts."""
    words = [a.upper() for a in args]
    probes = [_key(READ, args[1])] if len(args) > 1 else []
    start = words.index(b"INPUTS") + 1 if b"INPUTS" in words else len(args)
    end = words.index(b"OUTPUTS") if b"OUTPUTS" in words else len(args)
    probes += [_key(READ, k) for k in args[start:end]]
    return probes + [_key(WRITE, k) for k in args[end + 1 :]]


def _scriptexecute(args: list[bytes]) -> list[Probe]:
    probes = [Probe(_RUN_CODE)] + ([_key(READ, args[1])] if len(args) > 1 else [])
    position = 3
    while position < len(args):
        word = args[position].upper()
        keys, position = _counted(args, position + 1)
        if word in (b"KEYS", b"INPUTS"):
            probes += [_key(READ, k) for k in keys]
        elif word == b"OUTPUTS":
            probes += [_key(WRITE, k) for k in keys]
        elif word != b"ARGS":
            break
    return probes


def _dag(args: list[bytes]) -> list[Probe]:
    probes: list[Probe] = []
    position = 1
    while position < len(args) and args[position] != _SEPARATOR:
        word = args[position].upper()
        if word in (b"LOAD", b"PERSIST"):
            keys, position = _counted(args, position + 1)
            probes += [_key(READ if word == b"LOAD" else WRITE, k) for k in keys]
        else:
            position += 2  # ROUTING k, TIMEOUT t
    group: list[bytes] = []
    for item in [*args[position:], _SEPARATOR]:
        if item != _SEPARATOR:
            group.append(item)
            continue
        name = group[0].upper() if group else b""
        if name in (b"AI.MODELEXECUTE", b"AI.MODELRUN", b"AI.SCRIPTEXECUTE", b"AI.SCRIPTRUN") and len(group) > 1:
            probes.append(_key(READ, group[1]))
            if name.startswith(b"AI.SCRIPT"):
                probes.append(Probe(_RUN_CODE))
        group = []
    return probes


def _first_key(kind: bytes) -> Callable[[list[bytes]], list[Probe]]:
    return lambda args: [_key(kind, args[1])] if len(args) > 1 else []


def _fixed(*args: bytes) -> Callable[[list[bytes]], list[Probe]]:
    return lambda _: [Probe(args)]


@dataclass(frozen=True)
class _Rule:
    """How one owned command is checked: its probes, and the same in words for the operator."""

    probes: Callable[[list[bytes]], list[Probe]]
    checked_as: str


def _on_key(kind: bytes) -> _Rule:
    return _Rule(_first_key(kind), f"'{kind.decode().lower()}' on its key")


def _as(*args: bytes) -> _Rule:
    name = args[0].decode().lower() + (f"|{args[1].decode().lower()}" if args[0] in (b"CONFIG", b"FUNCTION") else "")
    return _Rule(_fixed(*args), f"'{name}'")


_WRITE_CODE = _Rule(lambda args: [Probe(_RUN_CODE), *_first_key(WRITE)(args)], "'eval', and 'set' on its key")
_EXECUTE = "'get' on the model and each input, 'set' on each output"
_SCRIPT = "'eval', 'get' on the script, its keys and inputs, 'set' on each output"
_DAG = _Rule(
    _dag, "'get' on each LOAD key and each model or script it runs, 'set' on each PERSIST key, 'eval' for a script"
)

# What each owned command is checked as; the command's own arguments for those the runtime relays amended.
_RULES: dict[str, _Rule] = {
    "AI.TENSORSET": _on_key(WRITE),
    "AI.TENSORGET": _on_key(READ),
    "AI.MODELSTORE": _on_key(WRITE),
    "AI.MODELSET": _on_key(WRITE),
    "AI.MODELGET": _on_key(READ),
    "AI.MODELDEL": _on_key(b"DEL"),
    "AI.MODELEXECUTE": _Rule(_modelexecute, _EXECUTE),
    "AI.MODELRUN": _Rule(_split_run, _EXECUTE),
    "AI.SCRIPTSTORE": _WRITE_CODE,
    "AI.SCRIPTSET": _WRITE_CODE,
    "AI.SCRIPTGET": _on_key(READ),
    "AI.SCRIPTDEL": _on_key(b"DEL"),
    "AI.SCRIPTEXECUTE": _Rule(_scriptexecute, _SCRIPT),
    "AI.SCRIPTRUN": _Rule(lambda args: [Probe(_RUN_CODE), *_split_run(args)], _SCRIPT),
    "AI.DAGEXECUTE": _DAG,
    "AI.DAGEXECUTE_RO": _DAG,
    "AI.DAGRUN": _DAG,
    "AI.DAGRUN_RO": _DAG,
    "AI.INFO": _on_key(READ),
    "AI.CONFIG": _as(*_SETTINGS),
    "AI._MODELSCAN": _as(b"SCAN", b"0"),
    "AI._SCRIPTSCAN": _as(b"SCAN", b"0"),
    "RG.PYEXECUTE": _as(*_RUN_CODE),
    "RG.TRIGGER": _as(*_RUN_CODE),
    # A module's key (RedisGears registers the trigger's first argument as one): Redis checks it for reading
    # and writing.
    "RG.TRIGGERONKEY": _Rule(
        lambda args: [Probe(_RUN_CODE), *([_key(READ, args[2]), _key(WRITE, args[2])] if len(args) > 2 else [])],
        "'eval', and 'get' and 'set' on its key",
    ),
    "RG.PYIMPORTREQ": _as(*_RUN_CODE),
    "RG.UNREGISTER": _as(*_GEARS_WRITE),
    "RG.PAUSEREGISTRATIONS": _as(*_GEARS_WRITE),
    "RG.UNPAUSEREGISTRATIONS": _as(*_GEARS_WRITE),
    "RG.CLEARREGISTRATIONSSTATS": _as(*_GEARS_WRITE),
    "RG.DROPEXECUTION": _as(*_GEARS_WRITE),
    "RG.ABORTEXECUTION": _as(*_GEARS_WRITE),
    "RG.DUMPREGISTRATIONS": _as(*_GEARS_READ),
    "RG.DUMPEXECUTIONS": _as(*_GEARS_READ),
    "RG.GETEXECUTION": _as(*_GEARS_READ),
    "RG.GETRESULTS": _as(*_GEARS_READ),
    "RG.GETRESULTSBLOCKING": _as(*_GEARS_READ),
    "RG.PYDUMPREQS": _as(*_GEARS_READ),
    "RG.PYEXPORTREQ": _as(*_GEARS_READ),
    "RG.PYDUMPSESSIONS": _as(*_GEARS_READ),
    "RG.PYSTATS": _as(*_GEARS_READ),
    "RG.INFOCLUSTER": _as(*_GEARS_READ),
    "RG.NETWORKTEST": _as(*_GEARS_READ),
    "RG.DUMPPLUGINS": _as(*_GEARS_READ),
    "RG.CONFIGGET": _as(*_GEARS_READ),
    "RG.CONFIGSET": _as(*_SETTINGS),
    "RG.PYPROFILE": _as(*_SETTINGS),
    "RG.REFRESHCLUSTER": _as(*_SETTINGS),
    # The shards' own commands: a topology or a message changes what this shard talks to, as CLUSTER does.
    "RG.CLUSTERSET": _as(*_SETTINGS),
    "RG.CLUSTERSETFROMSHARD": _as(*_SETTINGS),
    "RG.INNERMSGCOMMAND": _as(*_SETTINGS),
    "RG.HELLO": _as(*_GEARS_READ),
    # Retired: each answers that it is no longer supported and does nothing.
    "RG.PYEXECUTEREMOTE": _as(*_GEARS_READ),
    "RG.PYFREEINTERPRETER": _as(*_GEARS_READ),
}


def probes_for(name: str, args: list[bytes]) -> list[Probe]:
    """The plain commands `args` (an owned command named `name`) is checked as; the command itself if unmapped."""
    rule = _RULES.get(name)
    if rule is None:
        return [Probe(tuple(args), args[1] if name == "TYPE" and len(args) > 1 else None)]
    return rule.probes(args)


def is_stood_for(name: str) -> bool:
    """Whether `name` (upper case) is one of the modules' commands the runtime checks through stand-ins."""
    return name in _RULES


# Redis 7.0's refusal of a rule naming a command it does not have (the modifier as the client wrote it).
_UNKNOWN_RULE = re.compile(
    r"^-ERR Error in ACL SETUSER modifier '(.*)': Unknown command or category name in ACL\r\n$", re.S
)


def explain_refused_rule(frame: bytes) -> bytes:
    """`ACL SETUSER`'s reply, its refusal of a rule that names a command the runtime serves explained.

    Redis refuses such a rule ("Unknown command or category name in ACL", applying none of the
    command's rules) without saying why: the modules are not loaded there. The reply then says
    what the command is checked as, so the rule can be written against that. A selector's rules
    (`(+ai.tensorset ~k)`) are looked at too. Every other reply is returned as it is.
    """
    found = _UNKNOWN_RULE.match(frame.decode("utf-8", "replace")) if frame[:1] == b"-" else None
    if found is None:
        return frame
    modifier = found.group(1)
    words = modifier[1:-1].split() if modifier.startswith("(") and modifier.endswith(")") else [modifier]
    for word in words:
        name = word[1:].split("|", 1)[0].upper() if word[:1] in ("+", "-") else ""
        if name in _RULES:
            return (
                f"-ERR Error in ACL SETUSER modifier '{modifier}': '{name.lower()}' is served by the gearcam "
                f"runtime, not by a module this Redis has loaded, so no ACL rule can name it; it is checked as "
                f"{_RULES[name].checked_as}: allow or deny that instead "
                f'(docs/runtime.md, "ACLs and the runtime\'s own commands")\r\n'
            ).encode()
    return frame


def dryrun_answer(refused: ErrorReply) -> str:
    """ACL DRYRUN's answer for a refusal (NOPERM text): Redis 7.0's words, which name no command for a key."""
    words = refused.message.removeprefix("NOPERM ").split(" used by '", 1)[0]
    return words[:1].upper() + words[1:]


class AclRefused(ErrorReply):
    """Redis' NOPERM refusal of an owned command, with what Redis' ACL LOG records of it (see acllog.py)."""

    def __init__(self, message: str, command: str, reason: str, denied: bytes) -> None:
        super().__init__(message)
        self.command = command  # the refused command's name, lower case (its `fullname`)
        self.reason = reason  # "command" or "key", as ACL LOG names them
        self.denied = denied  # ACL LOG's `object`: the command's name or the key


_NAMED = re.compile(r"to run the '([^']+)' command")


def refusal(name: str, probe: Probe, answer: str) -> AclRefused:
    """Redis' NOPERM text for `answer` (ACL DRYRUN's), naming the client's command and key, not the probe's."""
    command = name.lower()
    named = _NAMED.search(answer)
    if named is not None and named.group(1).split("|")[0] == command:
        command = named.group(1)  # a command checked as itself names its subcommand, as Redis does: 'config|set'
    if "to access the" in answer and (probe.key is not None or answer.count("'") >= 2):
        # A plain command checked as itself (a TorchScript script's redis.execute): DRYRUN's answer names the key.
        key = probe.key.decode("utf-8", "replace") if probe.key is not None else answer.split("'")[1]
        message = f"NOPERM this user has no permissions to access the '{key}' key used by '{command}'"
        return AclRefused(message, command, "key", probe.key if probe.key is not None else key.encode())
    if answer.startswith("ERR User"):
        message = f"NOPERM this user has no permissions to run the '{command}' command (it no longer exists)"
        return AclRefused(message, command, "command", command.encode())
    message = f"NOPERM this user has no permissions to run the '{command}' command"
    return AclRefused(message, command, "command", command.encode())


def user_fields(reply: Any) -> dict[str, Any]:
    """`ACL GETUSER`'s reply (RESP2 pairs or a RESP3 map) by field name."""
    if isinstance(reply, dict):
        return {text(k): v for k, v in reply.items()}
    return {text(reply[i]): reply[i + 1] for i in range(0, len(reply), 2)}


def rule_tokens(value: Any, prefix: str) -> list[str]:
    """A GETUSER field's rules as ACL SETUSER takes them: Redis 7 gives one string ('~a:* %R~b'),
    6.2 a list of bare patterns (prefixed here with `prefix`, '~' for keys, '&' for channels)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [prefix + text(v) for v in value]
    return text(value).split()


def _every_right(info: Any) -> bool:
    """Whether `ACL GETUSER`'s reply gives every command on every key, with no selectors."""
    if not isinstance(info, (list, dict)):
        return False
    fields = user_fields(info)
    return (
        text(fields.get("commands", b"")) == "+@all"
        and rule_tokens(fields.get("keys"), "~") in (["~*"], ["%RW~*"])
        and not fields.get("selectors")
    )


def _dryrun_unavailable(message: str) -> bool:
    """Whether ACL DRYRUN's error is about DRYRUN itself, not the probe's answer.

    Redis 6.2 has no DRYRUN ("ERR Unknown subcommand or wrong number of arguments for 'DRYRUN'..."),
    and a runtime's user without +acl|dryrun gets NOPERM; the probe's own refusals are replies, not errors.
    """
    return message.startswith("NOPERM") or "subcommand" in message.lower()


@dataclass
class _Entry:
    value: object
    at: float


@dataclass
class AclChecker:
    """Asks the backing Redis, over the runtime's own link, what a user may do; remembers the answers."""

    address: Address
    timeout: float
    _users: dict[str, _Entry] = field(default_factory=dict)
    _answers: dict[tuple[str, tuple[bytes, ...]], _Entry] = field(default_factory=dict)
    _warned: bool = False
    _dryrun_warned: bool = False
    _link: OwnLink = field(init=False)

    def __post_init__(self) -> None:
        self._link = OwnLink(self.address, self.timeout)

    async def close(self) -> None:
        await self._link.close()

    def forget(self) -> None:
        """An ACL command went through the runtime: ask again."""
        self._users.clear()
        self._answers.clear()

    async def unrestricted(self, user: str) -> bool:
        """True if `user` may run every command on every key (nothing to check, nothing to work around)."""
        entry = self._users.get(user)
        if entry is None or time.monotonic() - entry.at > _TTL:
            try:
                info = await (await self._link.get()).call(b"ACL", b"GETUSER", user)
            except ErrorReply as exc:
                if not exc.message.startswith("NOPERM"):
                    raise
                # The runtime's own user may not read ACLs: Redis alone checks what owned commands do.
                if not self._warned:
                    logger.warning(
                        "the runtime's user on the backing Redis may not run ACL GETUSER/DRYRUN (%s): AI.* and RG.* "
                        "are not checked against clients' ACL rules; give it +acl or use the default user",
                        exc.message,
                    )
                    self._warned = True
                info = [b"commands", b"+@all", b"keys", b"~*", b"selectors", []]
            entry = self._users[user] = _Entry(_every_right(info), time.monotonic())
        return bool(entry.value)

    def _unchecked(self, name: str, answer: str) -> ErrorReply:
        """The refusal for a restricted user whose rights this Redis will not let the runtime check.

        Running the command anyway would run it with the runtime's own rights (a user limited to
        `~u:*` could write any key), so it is refused, naming the fix.
        """
        if not self._dryrun_warned:
            logger.warning(
                "the backing Redis answers ACL DRYRUN with %r: AI.* and RG.* commands of ACL-restricted users are "
                "refused until it can (Redis >= 7.0, and +acl|dryrun for the runtime's user)",
                answer,
            )
            self._dryrun_warned = True
        return ErrorReply(
            f"NOPERM this user's rights to run '{name.lower()}' cannot be checked: the backing Redis does not answer "
            "ACL DRYRUN to the runtime (it needs Redis >= 7.0 and +acl|dryrun for the runtime's user); "
            "fix that, or give this user +@all ~*"
        )

    async def dryrun(self, user: str, name: str, args: list[bytes]) -> str:
        """`ACL DRYRUN user <owned command> ...`'s answer for an existing `user`: "OK", or why it may not run it.

        The backing Redis would answer "Command not found" (the modules are not loaded there), so
        the runtime answers with the checks the command meets when `user` sends it.
        """
        if await self.unrestricted(user):
            return "OK"
        try:
            await self.check(user, name, args)
        except ErrorReply as refused:
            if not refused.message.startswith("NOPERM this user has no permissions"):
                raise  # its rights cannot be checked (_unchecked): an error, as the command itself would get
            return dryrun_answer(refused)
        return "OK"

    async def check(self, user: str, name: str, args: list[bytes]) -> None:
        """Raise Redis' NOPERM reply if `user` may not run the owned command `args`."""
        probes = probes_for(name, args)
        for probe, refused in zip(probes, await self._answered(user, name, probes), strict=True):
            if refused is not None:
                raise refusal(name, probe, refused)

    async def refused_plain(self, user: str, name: str, commands: Sequence[tuple[bytes, ...]]) -> str | None:
        """ACL DRYRUN's answer for the first of the plain `commands` that `user` may not run, or None.

        For the plain commands the runtime sends as the client's user on its behalf (an owned
        command queued in the client's transaction as a script step, see store.step_rights).
        """
        probes = [Probe(tuple(command)) for command in commands]
        return next((r for r in await self._answered(user, name, probes) if r is not None), None)

    async def _answered(self, user: str, name: str, probes: Sequence[Probe]) -> list[str | None]:
        """DRYRUN's refusal of each probe (None: allowed), asked once per user and probe for up to _TTL."""
        now = time.monotonic()
        missing = [p for p in probes if (e := self._answers.get((user, p.args))) is None or now - e.at > _TTL]
        if missing:
            link = await self._link.get()
            answers = await link.pipeline([(b"ACL", b"DRYRUN", user, *p.args) for p in missing])
            if len(self._answers) > _CACHE_MAX:
                self._answers.clear()
            for probe, answer in zip(missing, answers, strict=True):
                if isinstance(answer, ErrorReply) and _dryrun_unavailable(answer.message):
                    raise self._unchecked(name, answer.message)
                text = answer.message if isinstance(answer, ErrorReply) else answer.decode("utf-8", "replace")
                # "ERR wrong number of arguments" and the like: the command's own checks answer that.
                allowed = text == "OK" or (text.startswith("ERR") and not text.startswith("ERR User"))
                self._answers[(user, probe.args)] = _Entry(None if allowed else text, now)
        answered = [self._answers[(user, probe.args)].value for probe in probes]
        return [value if isinstance(value, str) else None for value in answered]
